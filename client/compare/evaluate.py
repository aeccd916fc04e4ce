"""A fetched model under torch: its own cost function, samples per forward pass within a memory budget, hidden
representations, latency. The held-out evaluation itself is labclient.models.evaluation, the one training uses."""

from __future__ import annotations

import statistics
import time

import numpy as np

from labclient.compare import stats
from labclient.models.evaluation import input_dtype

ACTIVATION_BUDGET = 1 << 25  # values one forward pass may hold in its largest layer (128 MB as float32)
REPRESENTATION_BUDGET = 1 << 24  # values of hidden representations kept for CKA, per model (128 MB as float64)
ACTIVATION_TYPES = ("ReLU", "Sigmoid", "Tanh", "GELU", "LeakyReLU")
PARAMETRIC_TYPES = ("Linear", "Conv2d")


def cost_function(name: str):
    """Mean cost per sample: the trainers' own quadratic and softmax cross-entropy, plus the textbook
    network2 cross-entropy on sigmoid outputs (`binary_cross_entropy`, summed over outputs)."""
    import torch
    import torch.nn.functional as F

    if name == "binary_cross_entropy":

        def binary(outputs, targets):
            one_hot = F.one_hot(targets, outputs.shape[1]).to(outputs.dtype)
            clipped = outputs.clamp(1e-12, 1 - 1e-12)
            return -(one_hot * torch.log(clipped) + (1 - one_hot) * torch.log(1 - clipped)).sum(dim=1).mean()

        return binary
    from labtrainers.defaults import cost_function as trainer_cost

    return trainer_cost(name)


def rows_per_pass(spec: dict, input_shape: tuple[int, ...], wanted: int) -> int:
    """Samples per forward pass such that no layer holds more than ACTIVATION_BUDGET values: a few hundred
    kilobytes of weights (one wide 1x1 convolution) can otherwise ask for gigabytes per batch."""
    largest = max([_values(shape) for shape in _outputs(spec, input_shape)] + [_values(input_shape)])
    return max(1, min(wanted, ACTIVATION_BUDGET // largest))


def probe_rows(spec: dict, input_shape: tuple[int, ...], wanted: int) -> int:
    """Samples whose hidden representations (and output) fit in REPRESENTATION_BUDGET values."""
    outputs = _outputs(spec, input_shape)
    kept = sum(_values(outputs[index]) for index in hidden_layers(spec)) + _values(outputs[-1])
    return max(1, min(wanted, REPRESENTATION_BUDGET // kept))


def _outputs(spec: dict, input_shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    from labclient.models.spec import output_shapes

    return output_shapes({**spec, "input_shape": [int(dim) for dim in input_shape]})


def _values(shape) -> int:
    total = 1
    for dim in shape:
        total *= int(dim)
    return max(total, 1)


def hidden_layers(spec: dict) -> list[int]:
    """Indices of activation layers that feed another weighted layer: the hidden representations."""
    layers = [layer.get("type") for layer in spec.get("layers", [])]
    last_parametric = max((i for i, kind in enumerate(layers) if kind in PARAMETRIC_TYPES), default=-1)
    return [i for i, kind in enumerate(layers) if kind in ACTIVATION_TYPES and i < last_parametric]


def representations(module, spec: dict, probe: np.ndarray) -> dict[str, np.ndarray]:
    """Outputs of every hidden activation layer, plus the model's output, on the probe batch (run in
    slices of rows_per_pass samples)."""
    import torch

    wanted = set(hidden_layers(spec))
    rows = rows_per_pass(spec, tuple(probe.shape[1:]), len(probe))
    found: dict[str, list[np.ndarray]] = {}
    with torch.no_grad():
        for start in range(0, len(probe), rows):
            value = torch.from_numpy(probe[start : start + rows]).to(input_dtype(module))
            for index, layer in enumerate(module):
                value = layer(value)
                if index in wanted:
                    found.setdefault(f"{index}:{type(layer).__name__}", []).append(_flat(value))
            found.setdefault("output", []).append(_flat(value))
    return {name: np.concatenate(parts) for name, parts in found.items()}


def _flat(value) -> np.ndarray:
    return value.reshape(len(value), -1).double().numpy()


def cka_matrix(reps_a: dict[str, np.ndarray], reps_b: dict[str, np.ndarray]) -> list[list[float]]:
    return stats.cka_matrix(list(reps_a.values()), list(reps_b.values()))


def latency_ms(module, batch: np.ndarray, repeats: int = 7, warmup: int = 5) -> float:
    """Median wall time of one forward pass over the batch on this machine, after warm-up passes
    (the first passes of a process pay for torch's thread pool and allocator)."""
    import torch

    inputs = torch.from_numpy(batch).to(input_dtype(module))
    timings = []
    with torch.no_grad():
        for _ in range(warmup):
            module(inputs)
        for _ in range(repeats):
            started = time.perf_counter()
            module(inputs)
            timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)
