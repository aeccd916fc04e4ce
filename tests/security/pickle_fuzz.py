"""Fuzzing the safe unpickler, run as its own process: `python pickle_fuzz.py EXAMPLES SEED LAST_EXAMPLE_FILE`.

Hypothesis writes random opcode streams over the allow-list: the allowed globals and some forbidden ones,
numpy's dtype, array and scalar reconstructions with random states (structured dtypes with fields outside the
item among them), BUILD on whatever is on the stack, calls, memo traffic and container opcodes. For each,
labclient.safe_pickle.load must refuse it with a typed error or return only plain data, and leave the loader's
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
    ("numpy", "dtype"), ("numpy", "ndarray"), ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"), ("collections", "OrderedDict"), ("builtins", "set"), ("builtins", "frozenset"),
    ("builtins", "complex"), ("builtins", "object"), ("_codecs", "encode"), ("copyreg", "_reconstructor"), ("copy_reg", "_reconstructor"),
]
FORBIDDEN = [
    ("os", "system"), ("builtins", "eval"), ("builtins", "getattr"), ("builtins", "setattr"), ("builtins", "type"),
    ("numpy", "frombuffer"), ("numpy.lib.stride_tricks", "as_strided"), ("__main__", "Network"), ("copyreg", "__newobj__"),
]
TEXTS = ["f8", "<f8", "V8", "O8", "O", "i4", "b", "u1", "c16", "f16", "M8", "S3", "U2", "f8,i4", "<", ">", "|", "=", "f0", "C", "F",
         "latin1", "utf-8", "__init__", "__setstate__", "__dict__", "lab_state", "weights", "biases", "sizes", "cost", "extend", ""]


def main(examples: int, seed: int, last: Path) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    import numpy as np
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as use_seed
    from hypothesis import strategies as st

    from labclient import safe_pickle
    from labclient.errors import UnsafePickle, WeightsFormatError
    from loader_state import changed, snapshot  # beside this script

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
                assert dtype.kind in "biufc" and dtype.fields is None and dtype.subdtype is None and dtype.itemsize <= 16, f"dtype {dtype!r}"
            else:
                assert type(item) in (type(None), bool, int, float, complex, str, bytes), f"a {type(item).__qualname__} came out"

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
    assert np.array_equal(loaded["weights"][0], good["weights"][0]) and np.array_equal(loaded["biases"][0], good["biases"][0])
    print(f"{examples} streams: no crash, only plain data, the loader unchanged")


def _strategies(st):
    def text(value: str) -> bytes:
        raw = value.encode("utf-8", "surrogatepass")
        return pickle.BINUNICODE + struct.pack("<I", len(raw)) + raw

    def data(value: bytes) -> bytes:
        return pickle.BINBYTES + struct.pack("<I", len(value)) + value

    def integer(value: int) -> bytes:
        return pickle.BININT + struct.pack("<i", value) if -(2**31) <= value < 2**31 else pickle.LONG1 + bytes([9]) + value.to_bytes(9, "little", signed=True)

    def tup(*items: bytes) -> bytes:
        return pickle.MARK + b"".join(items) + pickle.TUPLE

    def glob(pair) -> bytes:
        return pickle.GLOBAL + f"{pair[0]}\n{pair[1]}\n".encode()

    def call(func: bytes, *args: bytes) -> bytes:
        return func + tup(*args) + pickle.REDUCE

    names = st.one_of(st.sampled_from(ALLOWED), st.sampled_from(FORBIDDEN))
    ints = st.one_of(st.sampled_from([-1, 0, 1, 2, 3, 4, 8, 16, 4096, 2**31 - 1, 2**40]), st.integers(-(2**70), 2**70))
    texts = st.one_of(st.sampled_from(TEXTS), st.text(max_size=12))
    blobs = st.one_of(st.binary(max_size=64), st.integers(0, 64).map(lambda n: b"\x01" * 8 * n))
    atom = st.one_of(
        ints.map(integer), texts.map(text), blobs.map(data), st.floats().map(lambda x: pickle.BINFLOAT + struct.pack(">d", x)),
        st.sampled_from([pickle.NONE, pickle.NEWTRUE, pickle.NEWFALSE, pickle.EMPTY_LIST, pickle.EMPTY_DICT, pickle.EMPTY_TUPLE, pickle.EMPTY_SET]),
        blobs.map(lambda b: pickle.BYTEARRAY8 + struct.pack("<Q", len(b)) + b),
    )
    opcode = st.one_of(
        st.sampled_from([
            pickle.MARK, pickle.TUPLE, pickle.TUPLE1, pickle.TUPLE2, pickle.TUPLE3, pickle.LIST, pickle.DICT, pickle.APPEND, pickle.APPENDS,
            pickle.SETITEM, pickle.SETITEMS, pickle.ADDITEMS, pickle.FROZENSET, pickle.POP, pickle.POP_MARK, pickle.DUP, pickle.MEMOIZE,
            pickle.REDUCE, pickle.BUILD, pickle.NEWOBJ, pickle.NEWOBJ_EX, pickle.OBJ, pickle.STACK_GLOBAL, pickle.READONLY_BUFFER,
            pickle.NEXT_BUFFER, pickle.BINPERSID, pickle.EXT1 + b"\x01",
        ]),
        st.integers(0, 8).map(lambda n: pickle.BINPUT + bytes([n])), st.integers(0, 8).map(lambda n: pickle.BINGET + bytes([n])),
        st.integers(0, 8).map(lambda n: pickle.GET + f"{n}\n".encode()), names.map(glob),
        names.map(lambda pair: pickle.INST + f"{pair[0]}\n{pair[1]}\n".encode()),
    )
    dtype = st.deferred(lambda: dtype_call)
    dtype_state = st.one_of(
        st.just(None),
        st.builds(lambda order: tup(integer(3), text(order), pickle.NONE, pickle.NONE, pickle.NONE, integer(-1), integer(-1), integer(0)), st.sampled_from("<>|=x")),
        st.builds(  # structured: fields at random offsets, possibly outside the item
            lambda version, order, field_type, offset, size, align, flags: tup(
                integer(version), text(order), pickle.NONE, tup(text("f0")),
                pickle.MARK + text("f0") + tup(field_type, integer(offset)) + pickle.DICT, integer(size), integer(align), integer(flags)),
            st.sampled_from([3, 4]), st.sampled_from("<>|"), dtype, st.integers(-64, 8192), st.integers(-1, 16), st.sampled_from([-1, 1, 8]), st.integers(0, 63)),
        st.builds(lambda sub, dims: tup(integer(3), text("|"), tup(sub, tup(*map(integer, dims))), pickle.NONE, pickle.NONE, integer(8), integer(1), integer(0)),
                  dtype, st.lists(st.integers(0, 8), max_size=3)),
    )
    dtype_call = st.builds(
        lambda code, state: call(glob(("numpy", "dtype")), text(code), pickle.NEWFALSE, pickle.NEWTRUE) + (state + pickle.BUILD if state else b""),
        st.sampled_from(TEXTS[:16]), dtype_state)
    shape = st.one_of(ints.map(integer), st.lists(st.integers(0, 9), max_size=3).map(lambda dims: tup(*map(integer, dims))))
    core = st.sampled_from(["numpy.core", "numpy._core"])
    array = st.one_of(
        st.builds(  # numpy's own protocol 2-4 recipe, with a random state
            lambda c, shp, state: call(glob((f"{c}.multiarray", "_reconstruct")), glob(("numpy", "ndarray")), tup(integer(0)), data(b"b")) + state + pickle.BUILD,
            core, shape, st.builds(lambda shp, dt, fortran, raw: tup(integer(1), shp, dt, fortran, raw), shape, dtype,
                                   st.sampled_from([pickle.NEWFALSE, pickle.NEWTRUE, integer(2)]), blobs.map(data))),
        st.builds(lambda c, raw, dt, shp, order: call(glob((f"{c}.numeric", "_frombuffer")), data(raw), dt, shp, text(order)), core, blobs, dtype, shape, st.sampled_from("CFK")),
        st.builds(lambda c, dt, raw: call(glob((f"{c}.multiarray", "scalar")), dt, data(raw)), core, dtype, blobs),
    )
    state_attack = st.builds(  # BUILD on a global: setattr (with slots) or its __dict__ (without)
        lambda pair, attr, value, slots: glob(pair) + (tup(pickle.NONE, pickle.MARK + text(attr) + value + pickle.DICT) if slots else pickle.MARK + text(attr) + value + pickle.DICT) + pickle.BUILD,
        names, st.sampled_from(["__init__", "__new__", "__call__", "__setstate__", "lab_global", "__defaults__"]), atom, st.booleans())
    stand_in = st.builds(lambda pair: call(glob(("copyreg", "_reconstructor")), glob(pair), glob(("builtins", "object")), pickle.NONE), names)
    value = st.one_of(atom, dtype, array, state_attack, stand_in)  # each pushes exactly one object
    random_stream = st.lists(st.one_of(value, opcode), max_size=24)  # mostly broken: the opcodes' edge cases
    value_stream = st.builds(lambda values, close: pickle.MARK + b"".join(values) + close, st.lists(value, min_size=1, max_size=4),
                             st.sampled_from([pickle.TUPLE, pickle.LIST, pickle.FROZENSET]))  # well formed: every value runs
    return st.builds(lambda proto, body: pickle.PROTO + bytes([proto]) + b"".join(body) + pickle.STOP, st.integers(2, 5),
                     st.one_of(random_stream, value_stream.map(lambda stream: [stream])))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]))
