"""Small PNG plots, rendered headless with matplotlib's Agg backend."""

from __future__ import annotations

from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def cost_curve(step_costs: list[float], history: list[dict[str, float]], path: Path, title: str = "") -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
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
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
