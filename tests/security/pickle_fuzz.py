"""Fuzzing the safe unpickler, run as its own process: `python pickle_fuzz.py EXAMPLES SEED LAST_EXAMPLE_FILE`.

Hypothesis writes random opcode streams over the allow-list: the allowed globals and some forbidden ones,
numpy's dtype, array and scalar reconstructions with random states (structured dtypes with fields outside the
item among them), BUILD on whatever is on the stack, calls, memo traffic and container opcodes. For each,
labclient.models.safe_pickle.load must refuse it with a typed error or return only plain data, and leave the loader's
classes and functions as they were. A crash of the interpreter shows as this process's exit status, and the
stream that caused it is in LAST_EXAMPLE_FILE (written before each load); a stream that changes the loader is
printed and ends the run with status 3.
"""

from __future__ import annotations

import os
import pickle
import resource
import struct
import sys
from pathlib import Path

MEMORY_LIMIT = 2 << 30  # a memory bomb fails loudly (MemoryError) instead of swapping the machine

ALLOWED = [
    ("numpy", "dtype"),
    ("numpy", "ndarray"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
    ("collections", "OrderedDict"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "complex"),
    ("builtins", "object"),
    ("_codecs", "encode"),
    ("copyreg", "_reconstructor"),
    ("copy_reg", "_reconstructor"),
]
FORBIDDEN = [
    ("os", "system"),
    ("builtins", "eval"),
    ("builtins", "getattr"),
    ("builtins", "setattr"),
    ("builtins", "type"),
    ("numpy", "frombuffer"),
    ("numpy.lib.stride_tricks", "as_strided"),
    ("__main__", "Network"),
    ("copyreg", "__newobj__"),
]
DTYPE_CODES = ["f8", "<f8", "V8", "O8", "O", "i4", "b", "u1", "c16", "f16", "M8", "S3", "U2", "f8,i4", "<", ">"]
TEXTS = DTYPE_CODES + [
    "|",
    "=",
    "f0",
    "C",
    "F",
    "latin1",
    "utf-8",
    "__init__",
    "__setstate__",
    "__dict__",
    "lab_state",
    "weights",
    "biases",
    "sizes",
    "cost",
    "extend",
    "",
]
ATTRIBUTES = ["__init__", "__new__", "__call__", "__setstate__", "lab_global", "__defaults__"]


def main(examples: int, seed: int, last: Path) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    import numpy as np
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as use_seed
    from hypothesis import strategies as st
    from loader_state import changed, snapshot  # beside this script

    from labclient.errors import UnsafePickle, WeightsFormatError
    from labclient.models import safe_pickle

    def check_plain(value) -> None:
        """Written apart from safe_pickle's own check: what a caller may ever receive."""
        stack, seen = [(value, True)], set()
        while stack:
            item, top = stack.pop()
            if id(item) in seen:
                continue
            seen.add(id(item))
            if isinstance(item, safe_pickle._StandIn):
                assert top, f"a stand-in object below the top: {type(item).lab_global}"
                stack.append((item.__dict__["lab_state"], False))
            elif isinstance(item, type):
                assert issubclass(item, safe_pickle._StandIn), f"a class came out: {item!r}"
            elif type(item) is dict:
                stack.extend((part, False) for pair in item.items() for part in pair)
            elif type(item) in (list, tuple, set, frozenset):
                stack.extend((child, False) for child in item)
            elif isinstance(item, (np.ndarray, np.generic)):
                assert type(item) is np.ndarray or isinstance(item, (np.bool_, np.number)), f"numpy {type(item)}"
                dtype = item.dtype
                plain = dtype.kind in "biufc" and dtype.fields is None and dtype.subdtype is None
                assert plain and dtype.itemsize <= 16, f"dtype {dtype!r}"
            else:
                plain = type(item) in (type(None), bool, int, float, complex, str, bytes)
                assert plain, f"a {type(item).__qualname__} came out"

    before = snapshot()
    strategies = _strategies(st)

    @use_seed(seed)
    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(strategies)
    def fuzz(stream: bytes) -> None:
        last.write_text(stream.hex())
        try:
            check_plain(safe_pickle.load(stream))
        except (UnsafePickle, WeightsFormatError):
            pass
        if changed(before):  # every later stream would fail too: report this one, unshrunk, and stop
            print(f"this stream changed the loader's {', '.join(changed(before))}: {stream.hex()}", flush=True)
            os._exit(3)

    fuzz()
    good = {"weights": [np.arange(6.0).reshape(2, 3)], "biases": [np.ones((2, 1), dtype=">f4")], "sizes": [3, 2]}
    loaded = safe_pickle.load(pickle.dumps(good, protocol=2))
    for key in ("weights", "biases"):  # numpy itself turns big-endian data native when protocols 0-4 load it
        same_type = loaded[key][0].dtype.newbyteorder("=") == good[key][0].dtype.newbyteorder("=")
        assert np.array_equal(loaded[key][0], good[key][0]) and same_type
    print(f"{examples} streams: no crash, only plain data, the loader unchanged")


def _strategies(st):
    """Opcode streams: half of them random sequences of values and opcodes (mostly broken, for the opcodes'
    edge cases), half well-formed tuples of complete values, so that every attack in them is executed."""

    def text(value: str) -> bytes:
        raw = value.encode("utf-8", "surrogatepass")
        return pickle.BINUNICODE + struct.pack("<I", len(raw)) + raw

    def data(value: bytes) -> bytes:
        return pickle.BINBYTES + struct.pack("<I", len(value)) + value

    def integer(value: int) -> bytes:
        if -(2**31) <= value < 2**31:
            return pickle.BININT + struct.pack("<i", value)
        return pickle.LONG1 + bytes([9]) + value.to_bytes(9, "little", signed=True)

    def tup(*items: bytes) -> bytes:
        return pickle.MARK + b"".join(items) + pickle.TUPLE

    def glob(pair) -> bytes:
        return pickle.GLOBAL + f"{pair[0]}\n{pair[1]}\n".encode()

    def call(func: bytes, *args: bytes) -> bytes:
        return func + tup(*args) + pickle.REDUCE

    def one_entry_dict(key: str, value: bytes) -> bytes:
        return pickle.MARK + text(key) + value + pickle.DICT

    def plain_state(order: str) -> bytes:  # numpy's own dtype state, with a random byte order
        return tup(integer(3), text(order), pickle.NONE, pickle.NONE, pickle.NONE, integer(-1), integer(-1), integer(0))

    def structured_state(version, order, field_type, offset, size, align, flags) -> bytes:  # fields anywhere
        fields = one_entry_dict("f0", tup(field_type, integer(offset)))
        return tup(
            integer(version),
            text(order),
            pickle.NONE,
            tup(text("f0")),
            fields,
            integer(size),
            integer(align),
            integer(flags),
        )

    def subarray_state(sub: bytes, dims: list[int]) -> bytes:
        subarray = tup(sub, tup(*map(integer, dims)))
        return tup(integer(3), text("|"), subarray, pickle.NONE, pickle.NONE, integer(8), integer(1), integer(0))

    def dtype_of(code: str, state: bytes | None) -> bytes:
        made = call(glob(("numpy", "dtype")), text(code), pickle.NEWFALSE, pickle.NEWTRUE)
        return made + (state + pickle.BUILD if state else b"")

    def reconstructed(core: str, state: bytes) -> bytes:  # numpy's protocol 2-4 recipe, with a random state
        reconstruct = glob((f"{core}.multiarray", "_reconstruct"))
        empty = call(reconstruct, glob(("numpy", "ndarray")), tup(integer(0)), data(b"b"))
        return empty + state + pickle.BUILD

    def from_buffer(core: str, raw: bytes, dtype: bytes, shape: bytes, order: str) -> bytes:
        return call(glob((f"{core}.numeric", "_frombuffer")), data(raw), dtype, shape, text(order))

    def state_attack(pair, attribute: str, value: bytes, slots: bool) -> bytes:  # setattr (slots) or its __dict__
        state = one_entry_dict(attribute, value)
        return glob(pair) + (tup(pickle.NONE, state) if slots else state) + pickle.BUILD

    def stand_in(pair) -> bytes:
        return call(glob(("copyreg", "_reconstructor")), glob(pair), glob(("builtins", "object")), pickle.NONE)

    names = st.one_of(st.sampled_from(ALLOWED), st.sampled_from(FORBIDDEN))
    ints = st.one_of(st.sampled_from([-1, 0, 1, 2, 3, 4, 8, 16, 4096, 2**31 - 1, 2**40]), st.integers(-(2**70), 2**70))
    texts = st.one_of(st.sampled_from(TEXTS), st.text(max_size=12))
    blobs = st.one_of(st.binary(max_size=64), st.integers(0, 64).map(lambda n: b"\x01" * 8 * n))
    empties = [
        pickle.NONE,
        pickle.NEWTRUE,
        pickle.NEWFALSE,
        pickle.EMPTY_LIST,
        pickle.EMPTY_DICT,
        pickle.EMPTY_TUPLE,
        pickle.EMPTY_SET,
    ]
    atom = st.one_of(
        ints.map(integer),
        texts.map(text),
        blobs.map(data),
        st.sampled_from(empties),
        st.floats().map(lambda x: pickle.BINFLOAT + struct.pack(">d", x)),
        blobs.map(lambda b: pickle.BYTEARRAY8 + struct.pack("<Q", len(b)) + b),
    )
    bare = [
        pickle.MARK,
        pickle.TUPLE,
        pickle.TUPLE1,
        pickle.TUPLE2,
        pickle.TUPLE3,
        pickle.LIST,
        pickle.DICT,
        pickle.APPEND,
        pickle.APPENDS,
        pickle.SETITEM,
        pickle.SETITEMS,
        pickle.ADDITEMS,
        pickle.FROZENSET,
        pickle.POP,
        pickle.POP_MARK,
        pickle.DUP,
        pickle.MEMOIZE,
        pickle.REDUCE,
        pickle.BUILD,
        pickle.NEWOBJ,
        pickle.NEWOBJ_EX,
        pickle.OBJ,
        pickle.STACK_GLOBAL,
        pickle.READONLY_BUFFER,
        pickle.NEXT_BUFFER,
        pickle.BINPERSID,
        pickle.EXT1 + b"\x01",
    ]
    memo = st.integers(0, 8)
    opcode = st.one_of(
        st.sampled_from(bare),
        memo.map(lambda n: pickle.BINPUT + bytes([n])),
        memo.map(lambda n: pickle.BINGET + bytes([n])),
        memo.map(lambda n: pickle.GET + f"{n}\n".encode()),
        names.map(glob),
        names.map(lambda pair: pickle.INST + f"{pair[0]}\n{pair[1]}\n".encode()),
    )
    dtype = st.deferred(lambda: dtype_call)
    dtype_state = st.one_of(
        st.just(None),
        st.builds(plain_state, st.sampled_from("<>|=x")),
        st.builds(
            structured_state,
            st.sampled_from([3, 4]),
            st.sampled_from("<>|"),
            dtype,
            st.integers(-64, 8192),
            st.integers(-1, 16),
            st.sampled_from([-1, 1, 8]),
            st.integers(0, 63),
        ),
        st.builds(subarray_state, dtype, st.lists(st.integers(0, 8), max_size=3)),
    )
    dtype_call = st.builds(dtype_of, st.sampled_from(DTYPE_CODES), dtype_state)
    dims = st.lists(st.integers(0, 9), max_size=3)
    shape = st.one_of(ints.map(integer), dims.map(lambda sizes: tup(*map(integer, sizes))))
    core = st.sampled_from(["numpy.core", "numpy._core"])
    fortran = st.sampled_from([pickle.NEWFALSE, pickle.NEWTRUE, integer(2)])
    array_state = st.builds(lambda *parts: tup(integer(1), *parts), shape, dtype, fortran, blobs.map(data))
    array = st.one_of(
        st.builds(reconstructed, core, array_state),
        st.builds(from_buffer, core, blobs, dtype, shape, st.sampled_from("CFK")),
        st.builds(lambda c, dt, raw: call(glob((f"{c}.multiarray", "scalar")), dt, data(raw)), core, dtype, blobs),
    )
    attack = st.builds(state_attack, names, st.sampled_from(ATTRIBUTES), atom, st.booleans())
    value = st.one_of(atom, dtype, array, attack, st.builds(stand_in, names))  # each pushes exactly one object
    random_stream = st.lists(st.one_of(value, opcode), max_size=24)
    closers = st.sampled_from([pickle.TUPLE, pickle.LIST, pickle.FROZENSET])
    values = st.lists(value, min_size=1, max_size=4)
    value_stream = st.builds(lambda items, close: [pickle.MARK, *items, close], values, closers)
    body = st.one_of(random_stream, value_stream)
    protocol = st.integers(2, 5)
    return st.builds(lambda proto, parts: pickle.PROTO + bytes([proto]) + b"".join(parts) + pickle.STOP, protocol, body)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]))
