"""How well a model does on held-out data: its cost, accuracy, predictions and confusion matrix.

One routine for both sides: the trainers' `evaluate` (labtrainers.defaults) after every epoch, and
`labclient compare` on models fetched from other teams. Confusion matrices are plain numpy, so they can be
checked against a hand computation; torch is imported only to run a model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

EVAL_BATCH = 1000  # samples per forward pass


@dataclass
class Evaluation:
    cost: float  # mean cost per sample
    accuracy: float
    predictions: np.ndarray  # predicted class per sample
    confusion: np.ndarray  # confusion[true, predicted]: counts

    @property
    def per_class_accuracy(self) -> list[float | None]:
        return per_class_accuracy(self.confusion)


def evaluate(
    model, x, y, cost_function: Callable[[Any, Any], Any], num_classes: int | None = None, batch: int = EVAL_BATCH
) -> Evaluation:
    """The model in eval mode over x in slices of `batch` samples, each cast to the model's dtype.

    x and y are tensors on the model's device, or numpy arrays for a model on the CPU (used without a copy).
    `cost_function(outputs, targets)` is the mean cost of a batch; num_classes defaults to the outputs' width.
    """
    import torch

    x, y = torch.as_tensor(x), torch.as_tensor(y)
    dtype = input_dtype(model)
    model.eval()
    total, predictions, width = 0.0, [], num_classes
    with torch.no_grad():
        for start in range(0, len(y), batch):
            outputs = model(x[start : start + batch].to(dtype))
            targets = y[start : start + batch]
            total += float(cost_function(outputs, targets)) * len(targets)
            predictions.append(outputs.argmax(dim=1))
            width = width or outputs.shape[1]
    predicted = torch.cat(predictions).cpu().numpy() if predictions else np.zeros(0, dtype=np.int64)
    labels = y.cpu().numpy()
    return Evaluation(
        cost=total / max(len(labels), 1),
        accuracy=float(np.mean(predicted == labels)) if len(labels) else 0.0,
        predictions=predicted,
        confusion=confusion_matrix(labels, predicted, width or 0),
    )


def input_dtype(model):
    """The dtype a model takes its inputs in: that of its first floating-point parameter (float64 numpy
    networks stay float64, so their predictions match their authors' exactly)."""
    import torch

    for parameter in model.parameters():
        if parameter.is_floating_point():
            return parameter.dtype
    return torch.float32


def confusion_matrix(labels, predictions, num_classes: int) -> np.ndarray:
    """counts[true, predicted]: how often each class was taken for each other class (rows: true classes)."""
    labels, predictions = np.asarray(labels, dtype=np.int64), np.asarray(predictions, dtype=np.int64)
    flat = np.bincount(labels * num_classes + predictions, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def per_class_accuracy(matrix: np.ndarray) -> list[float | None]:
    """The share of each true class predicted right; None for a class with no samples."""
    totals = matrix.sum(axis=1)
    return [float(matrix[k, k] / totals[k]) if totals[k] else None for k in range(len(matrix))]
