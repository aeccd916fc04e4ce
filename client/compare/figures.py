"""The comparison's PNGs: cost curves overlaid, confusion matrices, digits the models disagree on, CKA."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from labclient.training.plots import _pyplot

GRID_IMAGES = 24
DPI = 80


def render_all(comparison, folder: Path) -> dict[str, str | None]:
    folder.mkdir(parents=True, exist_ok=True)
    plt = _pyplot()
    names = (comparison.a.name, comparison.b.name)
    data, extras = comparison.data, comparison.extras
    return {
        "cost_curves": _save(
            plt,
            cost_curves(plt, comparison.a.meta.get("history", {}), comparison.b.meta.get("history", {}), names),
            folder / "cost_curves.png",
        ),
        "confusion": _save(
            plt,
            confusion(plt, data["evaluation"]["a"]["confusion"], data["evaluation"]["b"]["confusion"], names),
            folder / "confusion.png",
        ),
        "disagreements": _save(
            plt, disagreements(plt, extras["dataset"], extras["predictions"], names), folder / "disagreements.png"
        ),
        "cka": _save(plt, cka(plt, data["representations"], names), folder / "cka.png"),
    }


def _save(plt, fig, path: Path) -> str | None:
    if fig is None:
        return None
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return str(path)


def cost_curves(plt, history_a: dict, history_b: dict, names):
    if not (history_a or history_b):
        return None
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for history, name, colour in ((history_a, names[0], "tab:blue"), (history_b, names[1], "tab:orange")):
        epochs = len(history.get("epoch_train_cost", [])) or 1
        steps = history.get("step_train_cost", [])
        if steps:
            last_step = max(step for step, _ in steps) + 1
            ax.plot(
                [(step + 1) * epochs / last_step for step, _ in steps],
                [value for _, value in steps],
                color=colour,
                lw=0.5,
                alpha=0.3,
            )
        for key, style, label in (("epoch_train_cost", "o-", "training"), ("epoch_test_cost", "s--", "held-out")):
            points = history.get(key, [])
            if points:
                ax.plot(
                    [step for step, _ in points],
                    [value for _, value in points],
                    style,
                    color=colour,
                    label=f"{name} {label}",
                )
    ax.set_xlabel("epoch")
    ax.set_ylabel("cost (each model's own cost function)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def confusion(plt, matrix_a, matrix_b, names):
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.8))
    for ax, matrix, name in zip(axes, (matrix_a, matrix_b), names):
        matrix = np.asarray(matrix)
        ax.imshow(matrix, cmap="Blues")
        for (row, col), count in np.ndenumerate(matrix):
            if count:
                ax.text(
                    col,
                    row,
                    str(count),
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if count > matrix.max() / 2 else "black",
                )
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_xticks(range(len(matrix)))
        ax.set_yticks(range(len(matrix)))
        ax.tick_params(labelsize=6)
    return fig


def disagreements(plt, dataset, predictions, names):
    pred_a, pred_b = predictions["a"], predictions["b"]
    where = np.flatnonzero(pred_a != pred_b)[:GRID_IMAGES]
    if not len(where):
        return None
    columns = min(8, len(where))
    rows = -(-len(where) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.3 * columns, 1.55 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, index in zip(axes.ravel(), where):
        ax.imshow(dataset.test_x[index][0], cmap="gray_r")
        ax.set_title(f"true {dataset.test_y[index]}\nA {pred_a[index]}  B {pred_b[index]}", fontsize=7)
    fig.suptitle(f"disagreements: A = {names[0]}, B = {names[1]}", fontsize=8)
    return fig


def cka(plt, representations: dict, names):
    matrix = np.asarray(representations["cka"])
    if not matrix.size:
        return None
    fig, ax = plt.subplots(figsize=(1.8 + 0.7 * matrix.shape[1], 1.4 + 0.5 * matrix.shape[0]))
    image = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
    for (row, col), value in np.ndenumerate(matrix):
        ax.text(
            col, row, f"{value:.2f}", ha="center", va="center", fontsize=7, color="white" if value < 0.6 else "black"
        )
    ax.set_yticks(range(matrix.shape[0]), representations["layers_a"], fontsize=7)
    ax.set_xticks(range(matrix.shape[1]), representations["layers_b"], fontsize=7, rotation=30)
    ax.set_ylabel(names[0], fontsize=8)
    ax.set_xlabel(names[1], fontsize=8)
    fig.colorbar(image, ax=ax, fraction=0.05)
    ax.set_title("linear CKA", fontsize=9)
    return fig
