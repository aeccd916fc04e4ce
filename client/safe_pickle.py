"""An allow-listing unpickler for the plain parameters a class exchanges after a textbook numpy lab.

Allowed: numpy arrays (numeric dtypes), numpy scalars and dtypes, dicts, lists, tuples, sets, numbers,
strings and bytes. Any other global is never imported: the unpickler hands the pickle an inert stand-in
class instead. Calling a stand-in (what a malicious `__reduce__` does with `os.system`, `subprocess.Popen`
or `builtins.eval`) raises UnsafePickle naming the global before anything runs. A stand-in may only be
the top-level object (a pickled `Network` instance whose attributes are restored, never its code) or the
textbook network2 cost class referenced by name; anywhere else it is refused by name too.
"""

from __future__ import annotations

import _compat_pickle
import io
import pickle
from typing import Any

import numpy as np

from labclient.errors import UnsafePickle, WeightsFormatError

MAX_ARRAY_BYTES_OVER_FILE = 1 << 20  # an array rebuilt by _reconstruct may not exceed the file by more than this
MAX_NODES = 1_000_000
_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class _StandIn:
    """Stands in for a class a pickle names; the real one is never imported and its code never runs."""

    lab_global = "?"

    def __new__(cls, *args, **kwargs):  # NEWOBJ: make an empty instance, as pickle does for plain objects
        instance = object.__new__(cls)
        instance.__dict__["lab_state"] = None
        return instance

    def __init__(self, *args, **kwargs):  # only a call (REDUCE, or INST with arguments) gets here
        raise UnsafePickle(self.lab_global)

    def __setstate__(self, state):
        self.__dict__["lab_state"] = state


class _ArrayType:
    """`numpy.ndarray` as a pickle sees it: fine as _reconstruct's subtype, refused when called directly."""

    def __init__(self, *args, **kwargs):
        raise UnsafePickle("numpy.ndarray", "refused to load a pickle that calls numpy.ndarray directly (a memory bomb?)")


def _stand_in(module: str, name: str) -> type:
    return type(name, (_StandIn,), {"lab_global": f"{module}.{name}", "__module__": "labclient.safe_pickle.standin"})


class SafeUnpickler(pickle.Unpickler):
    def __init__(self, handle, file_size: int):
        super().__init__(handle)
        self.byte_limit = file_size + MAX_ARRAY_BYTES_OVER_FILE
        self.allowed = {
            ("numpy", "ndarray"): _ArrayType,
            ("numpy", "dtype"): _dtype,
            ("collections", "OrderedDict"): dict,
            ("builtins", "set"): set,
            ("builtins", "frozenset"): frozenset,
            ("builtins", "complex"): complex,
            ("builtins", "object"): object,  # only as copyreg._reconstructor's base; a bare object() is refused later
            ("_codecs", "encode"): _latin1_bytes,
            ("copyreg", "_reconstructor"): _reconstructor,
        }
        for core in ("numpy.core", "numpy._core"):
            self.allowed[(f"{core}.multiarray", "_reconstruct")] = self._reconstruct
            self.allowed[(f"{core}.multiarray", "scalar")] = _scalar
            self.allowed[(f"{core}.numeric", "_frombuffer")] = _frombuffer

    def find_class(self, module: str, name: str):
        # Python 2 names (copy_reg, __builtin__) that protocol 0-2 pickles use, mapped as pickle itself does
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        return self.allowed.get((module, name)) or _stand_in(module, name)

    def persistent_load(self, pid):
        raise UnsafePickle("persistent_load", "refused to load a pickle that uses persistent ids (not plain parameters)")

    def _reconstruct(self, subtype, shape, dtype):
        if subtype is not _ArrayType and subtype is not np.ndarray:
            raise UnsafePickle(getattr(subtype, "lab_global", type(subtype).__name__))
        dtype = _dtype(dtype)
        count = int(np.prod(shape, dtype=np.float64)) if np.ndim(shape) else int(shape)
        if count * max(dtype.itemsize, 1) > self.byte_limit:
            raise WeightsFormatError("the pickle asks for an array larger than the file itself (a memory bomb?)", "do not load this file")
        return np.ndarray.__new__(np.ndarray, shape, dtype)


def _dtype(spec, *args):
    # numpy pickles call dtype(code, align, copy=True) and then set its state: the copy keeps the shared
    # built-in dtype objects untouched
    dtype = spec if isinstance(spec, np.dtype) and not args else np.dtype(spec, *args)
    if dtype.hasobject:
        raise UnsafePickle("numpy object array", "refused to load a pickle with numpy object arrays, which can hold arbitrary objects")
    return dtype


def _scalar(dtype, payload=None):
    dtype = _dtype(dtype)
    if not isinstance(payload, bytes) or len(payload) != dtype.itemsize:
        raise WeightsFormatError("the pickle holds a malformed numpy scalar")
    return np.frombuffer(payload, dtype=dtype)[0]


def _frombuffer(buffer, dtype, shape, order):
    return np.frombuffer(buffer, dtype=_dtype(dtype)).reshape(shape, order=order).copy()


def _latin1_bytes(text, encoding="latin1"):
    # protocol 0-2 pickles spell bytes as _codecs.encode(str, 'latin1'); nothing else is accepted
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickle("_codecs.encode")
    return text.encode("latin1")


def _reconstructor(cls, base, state):
    if base is not object or state is not None or not (isinstance(cls, type) and issubclass(cls, _StandIn)):
        raise UnsafePickle("copyreg._reconstructor", "refused to load a pickle that rebuilds a built-in type subclass")
    return cls.__new__(cls)


def load(data: bytes) -> Any:
    """Unpickle through the allow-list, then check the result holds only plain data."""
    try:
        value = SafeUnpickler(io.BytesIO(data), len(data)).load()
    except (UnsafePickle, WeightsFormatError):
        raise
    except RecursionError:
        raise WeightsFormatError("the pickle is nested too deeply", "exchange plain parameters or safetensors") from None
    except Exception as err:  # EOFError, UnpicklingError, TypeError, MemoryError ... from a broken or hostile file
        raise WeightsFormatError(f"the pickle cannot be read ({type(err).__name__}: {err})", "the file may be truncated; upload it again") from None
    if isinstance(value, int) and value == _TORCH_LEGACY_MAGIC:
        raise WeightsFormatError("this is PyTorch's pre-1.6 serialization format", "re-save it with torch.save (zip format) or as safetensors")
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
            state = item.lab_state
            stack.append((state, "state"))
        elif isinstance(item, type) and issubclass(item, _StandIn):
            if where != "cost":
                raise UnsafePickle(item.lab_global)
        elif isinstance(item, dict):
            for key, child in item.items():
                stack.append((key, "key"))
                stack.append((child, "cost" if key == "cost" and where in ("top", "state") else "value"))
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend((child, "state" if where == "state" and isinstance(item, tuple) else "value") for child in item)
        elif isinstance(item, np.ndarray) and item.dtype.hasobject:
            raise UnsafePickle("numpy object array")
        elif not isinstance(item, (type(None), bool, int, float, complex, str, bytes, np.ndarray, np.generic)):
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
    if isinstance(value, type) and issubclass(value, _StandIn):
        return value.lab_global.rsplit(".", 1)[-1]
    return None
