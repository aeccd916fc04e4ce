"""Checks on another team's tensors that run before anything is built from them, on shapes and addresses only.

- Bounded by the file: the tensors of a weights file may not hold more bytes than the file itself (no format we
  read compresses), no tensor may repeat its own data (a view with stride 0), and no two tensors may share
  data. Otherwise a tiny file could name one buffer a hundred thousand times, or a torch view of four bytes
  as a 4 GiB matrix, and every copy made later (a torch tensor, a model parameter) would be real memory.
- Fitted to the spec: the parameter and buffer shapes a spec implies (labclient.models.spec.state_shapes, by
  arithmetic) are matched with the file's tensors by name, or else by position, before any layer exists.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, NamedTuple

from labclient.errors import ArchitectureError, WeightsFormatError


class Span(NamedTuple):
    """Where a tensor's data lies: bytes [low, high) of some buffer, of which it holds `nbytes`."""

    name: str
    low: int
    high: int
    nbytes: int


def span(name: str, address: int, shape: Iterable[int], strides: Iterable[int], itemsize: int) -> Span:
    """The bytes a strided tensor touches; strides in bytes, possibly negative (numpy's reversed views)."""
    low = high = address
    count = 1
    for size, stride in zip(shape, strides):
        count *= size
        if size > 0:
            low += min(0, (size - 1) * stride)
            high += max(0, (size - 1) * stride)
    return Span(name, low, high + itemsize if count else low, count * itemsize)


def numpy_spans(arrays: dict[str, Any]) -> list[Span]:
    return [span(name, a.__array_interface__["data"][0], a.shape, a.strides, a.itemsize) for name, a in arrays.items()]


def torch_spans(file_name: str, tensors: dict[str, Any]) -> list[Span]:
    import torch

    spans = []
    for name, tensor in tensors.items():
        if tensor.layout != torch.strided or tensor.is_quantized:
            raise WeightsFormatError(
                f"{file_name}: tensor {name!r} is {tensor.layout} {tensor.dtype}, not a plain dense tensor",
                "save model.state_dict() with torch.save",
            )
        size = tensor.element_size()
        spans.append(span(name, tensor.data_ptr(), tensor.shape, [stride * size for stride in tensor.stride()], size))
    return spans


def check_spans(file_name: str, spans: list[Span], capacity: int) -> None:
    """Refuse tensors that repeat or share data, or that hold more bytes than `capacity` (what the file holds)."""
    for item in spans:
        if item.nbytes > item.high - item.low:
            raise WeightsFormatError(
                f"{file_name}: tensor {item.name!r} repeats its own data "
                f"({item.nbytes:,} bytes from {item.high - item.low:,}: a view with stride 0?)",
                "save plain tensors (model.state_dict()) and do not use this file",
            )
    previous = None
    for item in sorted((item for item in spans if item.nbytes), key=lambda item: item.low):
        if previous is not None and item.low < previous.high:
            raise WeightsFormatError(
                f"{file_name}: tensors {previous.name!r} and {item.name!r} share their data (aliased tensors)",
                "save each tensor once, as its own copy, and do not use this file",
            )
        if previous is None or item.high > previous.high:
            previous = item
    total = sum(item.nbytes for item in spans)
    if total > capacity:
        raise WeightsFormatError(
            f"{file_name}: its tensors claim {total:,} bytes but the file holds only {capacity:,}",
            "the file is hostile or broken; do not use it",
        )


# --- the spec against the tensors ------------------------------------------------------------------------
def tensor_shapes(tensors: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Shapes of numpy arrays, torch tensors, or the (dtype, shape) pairs a safetensors header gives."""
    return {
        name: tuple(int(dim) for dim in (value[1] if isinstance(value, tuple) else value.shape))
        for name, value in tensors.items()
    }


def fit_tensors(spec: Any, tensors: dict[str, Any]) -> dict[str, str]:
    """For each parameter and buffer of the spec's model, the file tensor that fills it; computed from shapes
    alone, so a spec that does not fit its weights is refused before a single layer is allocated."""
    from labclient.models.spec import SpecError, state_shapes

    try:
        expected = state_shapes(spec)
    except SpecError as err:
        raise ArchitectureError(
            f"the model spec cannot be built: {err}", "check the spec (see 'Model spec' in the README)"
        ) from None
    return match_names(expected, tensor_shapes(tensors))


def _layer_order(name: str) -> tuple:
    prefix, _, leaf = name.rpartition(".")
    natural = tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", prefix))
    return natural, leaf != "weight", leaf


def match_names(expected: dict[str, tuple], found: dict[str, tuple]) -> dict[str, str]:
    """Expected name -> file name: the same names and shapes, else a team's own names matched by position."""
    if set(expected) == set(found) and all(expected[name] == found[name] for name in expected):
        return {name: name for name in expected}
    # a team's own names (fc1.weight, ...): match by position, in file order or in layer order
    for ordered in (list(found.items()), sorted(found.items(), key=lambda item: _layer_order(item[0]))):
        if len(ordered) == len(expected) and all(shape == want for (_, shape), want in zip(ordered, expected.values())):
            return {name: source for name, (source, _) in zip(expected, ordered)}
    missing = [name for name in expected if name not in found]
    unexpected = [name for name in found if name not in expected]
    shapes = [f"{n} {found[n]} vs {expected[n]}" for n in expected if n in found and found[n] != expected[n]]
    detail = "; ".join(
        filter(
            None,
            [
                f"missing {', '.join(missing[:4])}" if missing else "",
                f"unexpected {', '.join(unexpected[:4])}" if unexpected else "",
                f"shape mismatch {', '.join(shapes[:3])}" if shapes else "",
            ],
        )
    )
    raise ArchitectureError(
        f"the weights do not fit the model spec ({detail})", "pass the matching architecture with --arch"
    )
