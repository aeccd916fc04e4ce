"""An allow-listing unpickler for the plain parameters a class exchanges after a textbook numpy lab.

Allowed: numpy arrays and scalars of plain numeric dtypes (bool, signed and unsigned integers, floats,
complex), dicts, lists, tuples, sets, numbers, strings and bytes. Any other global is never imported: the
unpickler hands the pickle an inert stand-in class instead. Calling a stand-in (what a malicious `__reduce__`
does with `os.system`, `subprocess.Popen` or `builtins.eval`) raises UnsafePickle naming the global before
anything runs. A stand-in may only be the top-level object (a pickled `Network` instance whose attributes are
restored, never its code) or the textbook network2 cost class referenced by name; anywhere else it is refused.

Why a subclass of the pure-Python `pickle._Unpickler`: its opcodes are a table, so the few that act on
objects already on the stack can be replaced. A refused file must leave the process as it was, so:
- BUILD (setattr / `__setstate__` on whatever is on the stack) applies only to objects this unpickler made
  itself: stand-in instances, arrays it reconstructed (once each), and pending dtypes; never to a class or a
  function. numpy's `dtype.__setstate__` is never called with team data (it accepts structured dtypes whose
  fields lie outside the item, and arrays of those read and write out of bounds): labclient.models.pickle_numpy builds
  the dtype from a validated type code and byte order.
- REDUCE, NEWOBJ, INST and OBJ call only the callables of the allow-list; APPEND(S), SETITEM(S) and ADDITEMS
  fill only the plain containers the pickle built; the extension registry and persistent ids are refused.
- Everything an allowed callable copies is charged to budgets sized by the file, so a small file cannot
  expand into gigabytes by rebuilding one memoised buffer or list many times.
"""

from __future__ import annotations

import _compat_pickle
import io
import pickle
from typing import Any

import numpy as np

from labclient.errors import UnsafePickle, WeightsFormatError
from labclient.models.pickle_numpy import (
    PendingDtype,
    array_shape,
    as_dtype,
    element_count,
    is_plain_dtype,
    plain_type_code,
    set_dtype_state,
)

MAX_ARRAY_BYTES_OVER_FILE = 1 << 20  # array data the unpickler may rebuild beyond the file's own size
MAX_ITEMS_OVER_FILE = 1 << 20  # container items allowed callables may copy beyond the file's size in bytes
MAX_NODES = 1_000_000
MAX_STAND_INS = 64  # distinct classes outside the allow-list one pickle may name: a network names one or two
TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_NO = "do not load this file"


class _StandIn:
    """Stands in for a class a pickle names; the real one is never imported and its code never runs."""

    lab_global = "?"

    def __new__(cls, *args, **kwargs):  # NEWOBJ: make an empty instance, as pickle does for plain objects
        instance = object.__new__(cls)
        instance.__dict__["lab_state"] = None
        return instance

    def __init__(self, *args, **kwargs):  # only a call (REDUCE, or INST with arguments) gets here
        raise UnsafePickle(self.lab_global)


class _ArrayType:
    """`numpy.ndarray` as a pickle sees it: fine as _reconstruct's subtype, refused when called directly."""

    def __init__(self, *args, **kwargs):
        raise UnsafePickle(
            "numpy.ndarray", "refused to load a pickle that calls numpy.ndarray directly (a memory bomb?)"
        )


def _stand_in(module: str, name: str) -> type:
    return type(
        name, (_StandIn,), {"lab_global": f"{module}.{name}", "__module__": "labclient.models.safe_pickle.standin"}
    )


def _is_stand_in_class(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, _StandIn)


def _refused(global_name: str, reason: str) -> UnsafePickle:
    return UnsafePickle(global_name, f"refused to load a pickle that {reason}")


def _malformed(what: str) -> WeightsFormatError:
    return WeightsFormatError(f"the pickle {what} (a malformed or hostile file)")


def _what(value: Any) -> str:
    if _is_stand_in_class(value):
        return f"the class {value.lab_global}"
    if isinstance(value, type):
        return f"the class {value.__qualname__}"
    if callable(value):
        return f"the function {getattr(value, '__qualname__', type(value).__name__)}"
    return f"a {type(value).__name__}"


class SafeUnpickler(pickle._Unpickler):
    dispatch = dict(pickle._Unpickler.dispatch)  # a copy: the handlers below never change pickle's own table

    def __init__(self, handle, file_size: int):
        super().__init__(handle)
        self.array_bytes_left = file_size + MAX_ARRAY_BYTES_OVER_FILE
        self.items_left = file_size + MAX_ITEMS_OVER_FILE
        self.unbuilt_arrays: dict[int, np.ndarray] = {}  # arrays from _reconstruct that await their one BUILD
        self.raw_used: dict[int, bytes] = {}  # data an array BUILD took; held so that ids stay unique
        # one class per name: a class costs a kilobyte, a GLOBAL ten bytes
        self.stand_ins: dict[tuple[str, str], type] = {}
        self.allowed = {
            ("numpy", "ndarray"): _ArrayType,
            ("numpy", "dtype"): self._dtype,
            ("collections", "OrderedDict"): self._dict,
            ("builtins", "set"): self._set,
            ("builtins", "frozenset"): self._frozenset,
            ("builtins", "complex"): _complex,
            ("builtins", "object"): object,  # only as copyreg._reconstructor's base; calling it is refused
            ("_codecs", "encode"): self._latin1_bytes,
            ("copyreg", "_reconstructor"): _reconstructor,
        }
        for core in ("numpy.core", "numpy._core"):
            self.allowed[(f"{core}.multiarray", "_reconstruct")] = self._reconstruct
            self.allowed[(f"{core}.multiarray", "scalar")] = self._scalar
            self.allowed[(f"{core}.numeric", "_frombuffer")] = self._frombuffer
        self.callables = {id(value) for value in self.allowed.values() if value is not object}

    # --- names --------------------------------------------------------------------------------------
    def find_class(self, module: str, name: str):
        # Python 2 names (copy_reg, __builtin__) that protocol 0-2 pickles use, mapped as pickle itself does
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) in self.allowed:
            return self.allowed[(module, name)]
        if (module, name) not in self.stand_ins:
            if len(self.stand_ins) >= MAX_STAND_INS:
                raise _refused(f"{module}.{name}", f"names more than {MAX_STAND_INS} classes outside the allow-list")
            self.stand_ins[(module, name)] = _stand_in(module, name)
        return self.stand_ins[(module, name)]

    def persistent_load(self, pid):
        raise _refused("persistent_load", "uses persistent ids (not plain parameters)")

    def load_extension(self):
        # copyreg's extension cache can hold real classes registered by other code: never consult it
        raise _refused("copyreg extension", "names globals through the extension registry")

    for _opcode in (pickle.EXT1, pickle.EXT2, pickle.EXT4):
        dispatch[_opcode[0]] = load_extension
    del _opcode

    # --- calls: REDUCE, NEWOBJ, NEWOBJ_EX, INST, OBJ --------------------------------------------------------
    def call(self, func: Any, args: Any) -> Any:
        if type(args) is not tuple:
            raise _malformed("calls a function with arguments that are not a tuple")
        if _is_stand_in_class(func) or func is _ArrayType or id(func) in self.callables:
            return func(*args)  # a stand-in or numpy.ndarray raises UnsafePickle here, before anything runs
        if func is object:
            raise _refused("builtins.object", "calls builtins.object (not plain parameters)")
        raise _malformed(f"calls {_what(func)}, which is not a function of the allow-list")

    def load_reduce(self):
        args = self.stack.pop()
        self.stack[-1] = self.call(self.stack[-1], args)

    def new_object(self, cls: Any, args: Any, kwargs: Any) -> Any:
        if type(kwargs) is not dict:
            raise WeightsFormatError("the pickle creates an object with keyword arguments that are not a dict")
        if _is_stand_in_class(cls):
            return cls.__new__(cls)
        if cls is _complex and not kwargs:
            return self.call(cls, args)
        raise _refused(_what(cls), f"creates an instance of {_what(cls)} (not plain parameters)")

    def load_newobj(self):
        args = self.stack.pop()
        self.stack[-1] = self.new_object(self.stack[-1], args, {})

    def load_newobj_ex(self):
        kwargs = self.stack.pop()
        args = self.stack.pop()
        self.stack[-1] = self.new_object(self.stack[-1], args, kwargs)

    def _instantiate(self, klass, args):  # INST and OBJ
        self.append(klass.__new__(klass) if _is_stand_in_class(klass) and not args else self.call(klass, tuple(args)))

    dispatch[pickle.REDUCE[0]] = load_reduce
    dispatch[pickle.NEWOBJ[0]] = load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex

    # --- filling containers: only the plain ones the pickle built ----------------------------------------
    def _target(self, kind: type, opcode: str) -> Any:
        target = self.stack[-1]
        if type(target) is not kind:
            raise _malformed(f"applies {opcode} to {_what(target)}")
        return target

    def load_append(self):
        value = self.stack.pop()
        self._target(list, "APPEND").append(value)

    def load_appends(self):
        items = self.pop_mark()
        self._target(list, "APPENDS").extend(items)

    def load_setitem(self):
        value = self.stack.pop()
        key = self.stack.pop()
        self._target(dict, "SETITEM")[key] = value

    def load_setitems(self):
        items = self.pop_mark()
        target = self._target(dict, "SETITEMS")
        for index in range(0, len(items), 2):
            target[items[index]] = items[index + 1]

    def load_additems(self):
        items = self.pop_mark()
        self._target(set, "ADDITEMS").update(items)

    dispatch[pickle.APPEND[0]] = load_append
    dispatch[pickle.APPENDS[0]] = load_appends
    dispatch[pickle.SETITEM[0]] = load_setitem
    dispatch[pickle.SETITEMS[0]] = load_setitems
    dispatch[pickle.ADDITEMS[0]] = load_additems

    # --- BUILD: state only for objects this unpickler made ----------------------------------------------
    def load_build(self):
        state = self.stack.pop()
        target = self.stack[-1]
        if type(target) is PendingDtype:
            set_dtype_state(target, state)
        elif isinstance(target, _StandIn):
            target.__dict__["lab_state"] = state  # attributes of a pickled object, checked by _check_plain
        elif type(target) is np.ndarray and self.unbuilt_arrays.get(id(target)) is target:
            self._set_array_state(target, state)
        else:
            raise _refused(_what(target), f"sets the state of {_what(target)}: only objects it describes may get state")

    dispatch[pickle.BUILD[0]] = load_build

    def _set_array_state(self, array: np.ndarray, state: Any) -> None:
        if type(state) is not tuple or len(state) not in (4, 5) or (len(state) == 5 and type(state[0]) is not int):
            raise WeightsFormatError("the pickle gives an array a malformed state")
        shape, dtype, fortran, raw = state[-4:]
        shape, dtype = array_shape(shape), as_dtype(dtype)
        if type(raw) is not bytes or type(fortran) not in (bool, int):
            raise WeightsFormatError("the pickle gives an array data that is not bytes (not a plain numeric array)")
        _check_data_size(shape, dtype, len(raw))
        if id(raw) in self.raw_used:  # the file holds these bytes once: a second array built from them costs memory
            self._charge_bytes(len(raw))
        self.raw_used[id(raw)] = raw
        del self.unbuilt_arrays[id(array)]
        array.__setstate__((1, shape, dtype, bool(fortran), raw))  # validated: plain dtype, exact length

    # --- the allow-listed callables -----------------------------------------------------------------------
    def _charge_bytes(self, count: int) -> None:
        self.array_bytes_left -= count
        if self.array_bytes_left < 0:
            raise WeightsFormatError("the pickle rebuilds more array data than the file holds (a memory bomb?)", _NO)

    def _charge_items(self, items: Any) -> Any:
        if type(items) not in (list, tuple, dict, set, frozenset):
            raise _malformed(f"builds a container from {_what(items)}")
        self.items_left -= len(items)
        if self.items_left < 0:
            raise WeightsFormatError("the pickle copies more items than the file holds (a memory bomb?)", _NO)
        return items

    def _dict(self, items=()):
        return dict(self._charge_items(items))

    def _set(self, items=()):
        return set(self._charge_items(items))

    def _frozenset(self, items=()):
        return frozenset(self._charge_items(items))

    def _dtype(self, spec, align=False, copy=False):
        # numpy pickles call dtype(code, align, copy) and then BUILD its byte order; nothing else is accepted
        pending = PendingDtype(spec.code if isinstance(spec, PendingDtype) else plain_type_code(spec))
        if isinstance(spec, PendingDtype):
            pending.byteorder = spec.byteorder
        return pending

    def _reconstruct(self, subtype, shape, dtype):
        if subtype is not _ArrayType:
            raise UnsafePickle(getattr(subtype, "lab_global", type(subtype).__name__))
        shape, dtype = array_shape(shape), as_dtype(dtype)
        if element_count(shape) * dtype.itemsize > self.array_bytes_left:
            raise WeightsFormatError(
                "the pickle asks for an array larger than the file itself (a memory bomb?)", "do not load this file"
            )
        self.array_bytes_left -= element_count(shape) * dtype.itemsize
        array = np.zeros(shape, dtype)  # zeros, never uninitialised memory: an array that gets no BUILD leaks nothing
        self.unbuilt_arrays[id(array)] = array
        return array

    def _scalar(self, dtype, payload=None):
        dtype = as_dtype(dtype)
        if type(payload) is not bytes or len(payload) != dtype.itemsize:
            raise WeightsFormatError("the pickle holds a malformed numpy scalar")
        self._charge_bytes(dtype.itemsize)
        return np.frombuffer(payload, dtype=dtype)[0]

    def _frombuffer(self, buffer, dtype, shape, order):
        dtype, shape = as_dtype(dtype), array_shape(shape)
        if type(buffer) not in (bytes, bytearray, memoryview) or order not in ("C", "F"):
            raise WeightsFormatError("the pickle rebuilds an array from something that is not a byte buffer")
        size = memoryview(buffer).nbytes
        _check_data_size(shape, dtype, size)
        self._charge_bytes(size)
        return np.frombuffer(buffer, dtype=dtype).reshape(shape, order=order).copy()

    def _latin1_bytes(self, text, encoding="latin1"):
        # protocol 0-2 pickles spell bytes as _codecs.encode(str, 'latin1'); nothing else is accepted
        if type(text) is not str or encoding not in ("latin1", "latin-1"):
            raise UnsafePickle("_codecs.encode")
        self._charge_bytes(len(text))
        return text.encode("latin1")


def _check_data_size(shape: tuple[int, ...], dtype: np.dtype, size: int) -> None:
    expected = element_count(shape) * dtype.itemsize
    if size != expected:
        raise _malformed(f"gives an array of shape {shape} {size:,} bytes of data, not {expected:,}")


def _complex(real=0.0, imag=0.0):
    if not all(type(part) in (int, float) for part in (real, imag)):
        raise WeightsFormatError("the pickle builds a complex number from something that is not a number")
    return complex(real, imag)


def _reconstructor(cls, base, state):
    if base is not object or state is not None or not _is_stand_in_class(cls):
        raise UnsafePickle("copyreg._reconstructor", "refused to load a pickle that rebuilds a built-in type subclass")
    return cls.__new__(cls)


def load(data: bytes) -> Any:
    """Unpickle through the allow-list, then check the result holds only plain data."""
    try:
        value = SafeUnpickler(io.BytesIO(data), len(data)).load()
    except (UnsafePickle, WeightsFormatError):
        raise
    except RecursionError:
        raise WeightsFormatError(
            "the pickle is nested too deeply", "exchange plain parameters or safetensors"
        ) from None
    except Exception as err:  # EOFError, UnpicklingError, TypeError, MemoryError ... from a broken or hostile file
        detail = " ".join(f"{type(err).__name__}: {err}".split())[:200]
        raise WeightsFormatError(
            f"the pickle cannot be read ({detail})", "the file may be truncated; upload it again"
        ) from None
    if isinstance(value, int) and value == TORCH_LEGACY_MAGIC:
        raise WeightsFormatError(
            "this is PyTorch's pre-1.6 serialization format",
            "re-save it with torch.save (zip format) or as safetensors",
        )
    _check_plain(value)
    return value


def _check_plain(value: Any) -> None:
    stack, seen = [(value, "top")], set()
    while stack:
        item, where = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if len(seen) > MAX_NODES:
            raise WeightsFormatError("the pickle holds too many objects to be plain parameters")
        if isinstance(item, _StandIn):
            if where != "top":
                raise UnsafePickle(type(item).lab_global)
            stack.append((item.lab_state, "state"))
        elif _is_stand_in_class(item):
            if where != "cost":
                raise UnsafePickle(item.lab_global)
        elif type(item) is dict:
            for key, child in item.items():
                stack.append((key, "key"))
                stack.append((child, "cost" if key == "cost" and where in ("top", "state") else "value"))
        elif type(item) in (list, tuple, set, frozenset):
            stack.extend((child, "state" if where == "state" and type(item) is tuple else "value") for child in item)
        elif type(item) is PendingDtype:
            raise _refused("numpy.dtype", "holds a numpy dtype on its own (not plain parameters)")
        elif isinstance(item, (np.ndarray, np.generic)):
            numeric = type(item) is np.ndarray or isinstance(item, (np.bool_, np.number))
            if not numeric or not is_plain_dtype(item.dtype):
                raise _refused(f"numpy {item.dtype}", "holds numpy data that is not plain numbers")
        elif type(item) not in (type(None), bool, int, float, complex, str, bytes):
            raise UnsafePickle(f"{type(item).__module__}.{type(item).__qualname__}")


def global_name(value: Any) -> str | None:
    """The class a pickled top-level object claimed to be (never imported), or None for plain data."""
    return type(value).lab_global if isinstance(value, _StandIn) else None


def fields(value: Any) -> dict | None:
    """The attributes of a pickled object, or the dict itself."""
    if isinstance(value, _StandIn):
        state = value.lab_state
        if isinstance(state, tuple) and len(state) == 2:  # (dict, slots) from objects with __slots__
            merged = dict(state[0] or {})
            merged.update(state[1] or {})
            return merged
        return state if isinstance(state, dict) else None
    return value if isinstance(value, dict) else None


def class_name(value: Any) -> str | None:
    """The short name of a stand-in class referenced by value (network2's `cost = CrossEntropyCost`)."""
    if _is_stand_in_class(value):
        return value.lab_global.rsplit(".", 1)[-1]
    return None
