"""Small PNG plots, rendered headless with matplotlib's Agg backend.

Each plot is a few tens of kB so the MLflow artifact viewer shows it at once, even over a slow link.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from labclient.models import evaluation

GRID_LIMIT = 25  # misclassified digits shown: a 5x5 grid stays legible at this size
_DPI = 90


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    plt = _pyplot()
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI, pil_kwargs={"optimize": True})
    plt.close(fig)
    return path


def cost_curve(step_costs: list[float], history: list[dict[str, float]], path: Path, title: str = "") -> Path:
    """Training cost per step and per epoch, beside the held-out cost per epoch."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if step_costs:
        ax.plot(range(len(step_costs)), step_costs, lw=0.6, alpha=0.45, label="training cost per step")
    if history:
        steps_per_epoch = len(step_costs) / len(history) if step_costs else 1
        ends = [steps_per_epoch * (index + 1) for index in range(len(history))]
        ax.plot(ends, [row["epoch_train_cost"] for row in history], "o-", label="training cost, epoch mean")
        ax.plot(ends, [row["epoch_test_cost"] for row in history], "s-", label="held-out cost")
    ax.set_xlabel("step")
    ax.set_ylabel("cost")
    ax.set_title(title or "cost")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def accuracy_curve(
    history: list[dict[str, float]], path: Path, title: str = "", train_accuracy: float | None = None
) -> Path:
    """Held-out accuracy after each epoch; the final training-set accuracy as a marker shows overfitting."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    epochs = list(range(1, len(history) + 1))
    accuracies = [row["epoch_test_accuracy"] for row in history]
    ax.plot(epochs, accuracies, "s-", label="held-out accuracy")
    for epoch, value in zip(epochs, accuracies):
        ax.annotate(f"{value:.3f}", (epoch, value), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=7)
    if train_accuracy is not None and epochs:
        ax.plot([epochs[-1]], [train_accuracy], "o", label=f"training-set accuracy {train_accuracy:.3f}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.set_xticks(epochs)
    ax.set_ylim(max(0.0, min(accuracies + [train_accuracy or 1.0]) - 0.05), 1.0)
    ax.set_title(title or "accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def confusion_matrix(labels, predictions, num_classes: int, path: Path, title: str = "") -> Path:
    """How often each digit was taken for each other digit, as a grid of counts (rows: true digits)."""
    plt = _pyplot()
    counts = evaluation.confusion_matrix(labels, predictions, num_classes)
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.imshow(counts, cmap="Blues")
    threshold = counts.max() / 2 if counts.size else 0
    for true in range(num_classes):
        for predicted in range(num_classes):
            value = counts[true, predicted]
            if value:
                color = "white" if value > threshold else "black"
                ax.text(predicted, true, str(value), ha="center", va="center", fontsize=7, color=color)
    ax.set_xticks(range(num_classes))
    ax.set_yticks(range(num_classes))
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    ax.set_title(title or f"confusion matrix ({len(np.asarray(labels)):,} held-out digits)", fontsize=9)
    return _save(fig, path)


def misclassified_indices(labels, predictions, limit: int = GRID_LIMIT) -> np.ndarray:
    wrong = np.flatnonzero(np.asarray(labels) != np.asarray(predictions))
    return wrong[:limit]


def misclassified_grid(images, labels, predictions, path: Path, title: str = "", limit: int = GRID_LIMIT) -> Path:
    """The first held-out digits the model got wrong, each captioned 'true -> predicted'.

    One mosaic image with one axes: a 5x5 grid of subplots takes several times longer to draw.
    """
    plt = _pyplot()
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    chosen = misclassified_indices(labels, predictions, limit)
    columns = 5
    rows = max(1, -(-len(chosen) // columns))
    mosaic, (cell_height, cell_width), (height, width) = _mosaic(np.asarray(images), chosen, rows, columns)
    fig, ax = plt.subplots(figsize=(columns * 1.0, rows * 1.2 + 0.3))
    ax.imshow(mosaic, cmap="gray_r", interpolation="nearest", vmin=0.0, vmax=1.0)
    for slot, index in enumerate(chosen):
        row, column = divmod(slot, columns)
        # pixel centres sit at integer coordinates, hence the half-pixel shifts
        ax.text(
            column * cell_width + (width - 1) / 2,
            row * cell_height + (cell_height - height - 1) / 2,
            f"{labels[index]} -> {predictions[index]}",
            ha="center",
            va="center",
            fontsize=8,
        )
    if not len(chosen):
        ax.text(0.5, 0.5, "no mistakes", ha="center", va="center", transform=ax.transAxes)
    ax.axis("off")
    total = int((labels != predictions).sum())
    ax.set_title(title or f"misclassified: {len(chosen)} of {total} (true -> predicted)", fontsize=9)
    return _save(fig, path)


def _mosaic(images: np.ndarray, chosen: np.ndarray, rows: int, columns: int):
    """Tiles of the chosen images, each under a blank band for its caption; values scaled to [0, 1]."""
    sample = _as_picture(images[chosen[0]]) if len(chosen) else np.zeros((8, 8))
    height, width = sample.shape[:2]
    band, gap = max(4, height // 2), max(1, width // 8)
    cell_height, cell_width = height + band, width + gap
    mosaic = np.zeros((rows * cell_height, columns * cell_width) + sample.shape[2:], dtype=np.float32)
    for slot, index in enumerate(chosen):
        row, column = divmod(slot, columns)
        picture = _as_picture(images[index])
        span = float(picture.max() - picture.min()) or 1.0
        top, left = row * cell_height + band, column * cell_width
        mosaic[top : top + height, left : left + width] = (picture - picture.min()) / span
    return mosaic, (cell_height, cell_width), (height, width)


def _as_picture(image: np.ndarray) -> np.ndarray:
    """C x H x W (as the models take it) to H x W, or H x W x 3 for colour."""
    if image.ndim == 3 and image.shape[0] == 1:
        return image[0]
    if image.ndim == 3 and image.shape[0] == 3:
        return image.transpose(1, 2, 0)
    return image
