"""The numpy values a pickle of plain parameters may rebuild, checked before numpy sees them.

numpy's own `dtype.__setstate__` accepts structured dtypes whose fields lie outside the item; an array of
such a dtype reads and writes out of bounds. So a pickle's dtype never reaches numpy as a state: it is a
type code checked against the plain numeric codes, plus a byte order, and the dtype is built here from those.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from labclient.errors import UnsafePickle, WeightsFormatError

MAX_DIMENSIONS = 32
PLAIN_TYPE_CODES = frozenset({"b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "c8", "c16"})
_TYPE_CODE = re.compile(r"[<>|=]?[A-Za-z?][0-9]{0,2}")  # 'f8', '<i4', b'b': never a structured spelling
_BYTE_ORDERS = ("<", ">", "|", "=")


class PendingDtype:
    """What `numpy.dtype(code, align, copy)` gives a pickle: a validated type code awaiting its byte order (BUILD)."""

    __slots__ = ("code", "byteorder", "built")

    def __init__(self, code: str):
        self.code, self.byteorder, self.built = code, "=", False

    def resolve(self) -> np.dtype:
        return np.dtype(("|" if self.code[1:] == "1" else self.byteorder) + self.code)


def is_plain_dtype(dtype: np.dtype) -> bool:
    """Numbers only: no fields, no subarray, no objects, and exactly what its own type string spells."""
    return (
        dtype.fields is None
        and dtype.subdtype is None
        and not dtype.hasobject
        and dtype.str[1:] in PLAIN_TYPE_CODES
        and dtype == np.dtype(dtype.str)
    )


def plain_type_code(spec: Any) -> str:
    """The canonical code ('f8', 'i4', ...) of a dtype a pickle spells as text; anything else is refused."""
    text = spec.decode("ascii", "replace") if isinstance(spec, bytes) else spec
    if not isinstance(text, str) or not _TYPE_CODE.fullmatch(text):
        raise UnsafePickle(
            "numpy.dtype",
            f"refused to load a pickle with a numpy dtype spelled {short(spec)}: "
            "only plain numeric type codes are allowed",
        )
    try:
        dtype = np.dtype(text)
    except (TypeError, ValueError):
        raise UnsafePickle("numpy.dtype", f"refused to load a pickle with an unknown numpy dtype {text!r}") from None
    if dtype.hasobject:
        raise UnsafePickle(
            "numpy object array", "refused to load a pickle with numpy object arrays, which can hold arbitrary objects"
        )
    if not is_plain_dtype(dtype):
        raise UnsafePickle(
            "numpy.dtype",
            f"refused to load a pickle with numpy dtype {text!r}: "
            "only bool, integer, float and complex numbers are allowed",
        )
    return dtype.str[1:]


def as_dtype(value: Any) -> np.dtype:
    if isinstance(value, PendingDtype):
        return value.resolve()
    return np.dtype(plain_type_code(value))


def array_shape(value: Any) -> tuple[int, ...]:
    dims = (value,) if type(value) is int else value
    well_formed = type(dims) in (tuple, list) and len(dims) <= MAX_DIMENSIONS
    if not well_formed or not all(type(dim) is int and dim >= 0 for dim in dims):
        raise WeightsFormatError(
            f"the pickle gives an array the malformed shape {short(value)}",
            "the file is broken or hostile; do not use it",
        )
    return tuple(dims)


def element_count(shape: tuple[int, ...]) -> int:
    total = 1
    for dim in shape:
        total *= dim
    return total


def short(value: Any) -> str:
    text = repr(value) if isinstance(value, (str, bytes, int, float, tuple, list)) else type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def set_dtype_state(pending: PendingDtype, state: Any) -> None:
    # numpy's own state: (version, byte order, subarray, names, fields, item size, alignment, flags[, metadata]);
    # a plain dtype has no subarray, names or fields, and -1 for the sizes numpy derives from the type code
    if pending.built:
        raise UnsafePickle("numpy.dtype", "refused to load a pickle that sets the state of a numpy dtype twice")
    plain = type(state) is tuple and len(state) in (8, 9) and state[0] in (3, 4) and state[1] in _BYTE_ORDERS
    plain = plain and state[2:5] == (None, None, None) and state[5:7] == (-1, -1) and type(state[7]) is int
    if not plain or state[8:] not in ((), (None,)):
        raise UnsafePickle(
            "numpy.dtype",
            "refused to load a pickle with a structured or altered numpy dtype: only plain numeric types are allowed",
        )
    pending.byteorder, pending.built = state[1], True
