"""The training loop every built-in trainer shares: config, cost functions, one epoch, evaluation.

Batches are slices of in-memory tensors: on MNIST this is about twice as fast as a DataLoader that
collates one sample at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from labclient.models import evaluation


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    epochs: int = Field(3, ge=1, description="passes over the training set")
    lr: float = Field(0.1, gt=0, description="learning rate (eta)")
    batch_size: int = Field(64, ge=1, description="mini-batch size")
    optimizer: Literal["sgd", "adam"] = "sgd"
    momentum: float = Field(0.0, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    cost: Literal["cross_entropy", "quadratic"] = "cross_entropy"
    seed: int = 0
    log_every: int = Field(1, ge=1, description="log the training cost every N steps")


def cost_function(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Mean cost per sample. Quadratic is the textbook C = 1/2 ||y - a||^2 on sigmoid outputs."""
    if name == "cross_entropy":
        return F.cross_entropy
    if name == "quadratic":
        identities: dict = {}

        def quadratic(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            # rows of a cached identity matrix: one indexing op per step, where F.one_hot plus a cast cost
            # 10-12% of an epoch's CPU time at batch 10 (bench/FINDINGS.md)
            key = (outputs.shape[1], outputs.dtype, outputs.device)
            if key not in identities:
                identities[key] = torch.eye(key[0], dtype=key[1], device=key[2])
            # the same C averaged over the batch, as one fused kernel instead of five ops each way: +7-11%
            # samples/s on the CPU (bench/FINDINGS.md)
            return F.mse_loss(outputs, identities[key][targets], reduction="sum") * (0.5 / len(targets))

        return quadratic
    raise ValueError(f"unknown cost {name!r}")


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def train_one_epoch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    config: TrainConfig,
    generator: torch.Generator,
    on_step: Callable[[torch.Tensor], None],
) -> None:
    """One pass in shuffled mini-batches; `on_step` gets each step's detached cost (still on the device)."""
    model.train()
    cost_fn = cost_function(config.cost)
    order = torch.randperm(len(y), generator=generator).to(x.device)
    for start in range(0, len(y), config.batch_size):
        batch = order[start : start + config.batch_size]
        optimizer.zero_grad(set_to_none=True)
        cost = cost_fn(model(x[batch]), y[batch])
        cost.backward()
        optimizer.step()
        on_step(cost.detach())


def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, config: TrainConfig) -> evaluation.Evaluation:
    """Held-out cost and accuracy, with the predicted class of every sample for the confusion-matrix plots."""
    return evaluation.evaluate(model, x, y, cost_function(config.cost))
