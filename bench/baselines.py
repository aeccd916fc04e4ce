"""The PyTorch baselines, written the plain way and independent of labclient/labtrainers.

The network is the textbook one mnist-mlp trains by default: inputs-30-10 with sigmoid neurons,
quadratic cost C = 1/2 ||y - a||^2 averaged over the batch, plain SGD with eta = 3.0.
Each loop returns the seconds spent in its training epochs (the work `labclient train` reports as
training_time_s), so loaders, model building and evaluation are outside the timed part for all.

`python -m bench.baselines` is the whole plain script (imports, data, training, evaluation) for the
wall-time comparison with a `labclient train` process.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

LEARNING_RATE = 3.0
HIDDEN = 30


def textbook_mlp(inputs: int, classes: int = 10) -> nn.Sequential:
    return nn.Sequential(
        nn.Flatten(), nn.Linear(inputs, HIDDEN), nn.Sigmoid(), nn.Linear(HIDDEN, classes), nn.Sigmoid()
    )


def quadratic_cost(outputs: torch.Tensor, one_hot: torch.Tensor) -> torch.Tensor:
    return 0.5 * (outputs - one_hot).pow(2).sum(dim=1).mean()


def _setup(x: torch.Tensor, y: torch.Tensor, seed: int):
    torch.manual_seed(seed)
    model = textbook_mlp(x[0].numel())
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    return model, optimizer, F.one_hot(y, 10).float()


def in_memory_loop(x: torch.Tensor, y: torch.Tensor, batch_size: int, epochs: int, seed: int = 0) -> float:
    """Shuffled mini-batches sliced out of tensors already in memory."""
    return sum(train_in_memory(x, y, batch_size, epochs, seed)[0])


def train_in_memory(
    x: torch.Tensor, y: torch.Tensor, batch_size: int, epochs: int, seed: int = 0
) -> tuple[list[float], nn.Module]:
    """The in-memory loop; returns the seconds of each epoch, and the model."""
    model, optimizer, targets = _setup(x, y, seed)
    generator = torch.Generator().manual_seed(seed)
    seconds = []
    for _ in range(epochs):
        started = time.perf_counter()
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), batch_size):
            batch = order[start : start + batch_size]
            optimizer.zero_grad(set_to_none=True)
            quadratic_cost(model(x[batch]), targets[batch]).backward()
            optimizer.step()
        seconds.append(time.perf_counter() - started)
    return seconds, model


def dataloader_loop(x: torch.Tensor, y: torch.Tensor, batch_size: int, epochs: int, seed: int = 0) -> float:
    """The tutorial way: a DataLoader over a TensorDataset, which collates one sample at a time."""
    from torch.utils.data import DataLoader, TensorDataset

    model, optimizer, targets = _setup(x, y, seed)
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(TensorDataset(x, targets), batch_size=batch_size, shuffle=True, generator=generator)
    seconds = 0.0
    for _ in range(epochs):
        started = time.perf_counter()
        for inputs, batch_targets in loader:
            optimizer.zero_grad(set_to_none=True)
            quadratic_cost(model(inputs), batch_targets).backward()
            optimizer.step()
        seconds += time.perf_counter() - started
    return seconds


def _script(argv: list[str] | None = None) -> None:
    """Everything a hand-written training script does, untracked: load, train, evaluate, print."""
    from labclient.training.data import load_dataset

    parser = argparse.ArgumentParser(prog="python -m bench.baselines")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args(argv)
    data = load_dataset(args.dataset, args.data_dir, Path("/nonexistent-cache"))
    x, y = torch.from_numpy(data.train_x), torch.from_numpy(data.train_y)
    seconds, model = train_in_memory(x, y, args.batch_size, args.epochs)
    with torch.no_grad():
        predicted = model(torch.from_numpy(data.test_x)).argmax(dim=1)
    accuracy = (predicted == torch.from_numpy(data.test_y)).float().mean().item()
    print(json.dumps({"training_time_s": sum(seconds), "test_accuracy": accuracy}))


if __name__ == "__main__":
    _script()
