"""A tracking store with real runs for the exchange tests (fetch, push, compare, cache), built once per session.

Teams and runs (digits unless noted, trained in-process by labclient's own training engine):
    red/run-1   logreg, cross-entropy
    red/run-2   mnist-mlp [30], quadratic cost
    red/run-3   a run with no weights (Python API, metrics only)
    blue/run-1  mnist-mlp [30], quadratic cost, another learning rate and seed (same spec as red/run-2)
    green/run-1 mnist-mlp on the real MNIST split (mnist-10k), 1 epoch of mini-batches of 50
    mallory/run-1  a pushed numpy network whose weights file was altered in the artifact store after upload
    mallory/run-2  weights uploaded as a malicious pickle (its __reduce__ would create PWNED_FETCH)
Tests read it; each test gets its own cache (LAB_CACHE_DIR from the autouse isolated_lab fixture).
The fixtures `exchange_lab` and `lab` that build and share it are in tests/client/conftest.py; this module
keeps the plain helpers, imported normally (`from tests.client.exchange_support import run_of`).
"""

from __future__ import annotations

import os
import pickle
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from labclient.exchange.push import push


@dataclass
class ExchangeLab:
    home: Path  # LAB_HOME of the shared store
    uri: str
    pwned_fetch: Path  # must never exist: the malicious pickle of mallory/run-2 would create it


class Evil:
    """A pickle payload that runs a shell command when unpickled by plain pickle."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _train(team: str, trainer: str, dataset: str = "digits", data_dir: Path | None = None, **overrides) -> None:
    from labclient.training.loop import TrainOptions, train
    from labclient.training.progress import Reporter

    options = TrainOptions(
        team=team, trainer=trainer, dataset=dataset, data_dir=data_dir, device="cpu", overrides=overrides
    )
    train(options, reporter=Reporter(quiet=True))


def build(root: Path, mnist_dir: Path) -> ExchangeLab:
    import labclient
    from labclient.config import reset_settings

    home = root / "store"
    with pytest.MonkeyPatch.context() as patch, one_thread():
        patch.setenv("LAB_HOME", str(home))
        patch.setenv("LAB_CACHE_DIR", str(root / "build-cache"))
        patch.setenv("LAB_CONFIG", str(root / "config.toml"))
        patch.delenv("LAB_TRACKING_URI", raising=False)
        patch.delenv("LAB_TEAM", raising=False)
        reset_settings()
        _train("red", "logreg", epochs=1)
        _train("red", "mnist-mlp", epochs=2, hidden=[30], seed=1)
        with labclient.start_run(team="red", note="metrics only, no weights") as run:
            run.log_metrics({"test_accuracy": 0.99})
        _train("blue", "mnist-mlp", epochs=2, hidden=[30], lr=2.0, seed=2)
        _train("green", "mnist-mlp", dataset="mnist", data_dir=mnist_dir, epochs=1, batch_size=50)
        textbook = root / "textbook.pkl"
        textbook.write_bytes(
            pickle.dumps({"sizes": [64, 10], "weights": [np.ones((10, 64))], "biases": [np.zeros((10, 1))]})
        )
        push(textbook, "mallory")
        pwned = root / "PWNED_FETCH"
        evil = root / "weights.pkl"
        evil.write_bytes(pickle.dumps({"sizes": [64, 10], "weights": [Evil(f"touch {pwned}")], "biases": []}))
        with labclient.start_run(team="mallory") as run:
            run.log_artifact(evil, "model")
        reset_settings()
    uri = f"sqlite:///{home / 'mlflow.db'}"
    _tamper_weights(uri, home)
    return ExchangeLab(home, uri, pwned)


def _tamper_weights(uri: str, home: Path) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("mallory")
    run = client.search_runs([experiment.experiment_id], filter_string="tags.\"lab.run_number\" = '1'")[0]
    path = home / "artifacts" / "mallory" / run.info.run_id / "artifacts" / "model" / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the last weight: the file still parses, only its sha256 tells
    path.write_bytes(bytes(data))


@contextmanager
def one_thread():
    """Tiny models on a machine shared with other test runs: one torch thread is 5-20x faster than two
    threads fighting other processes for the same cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_of(uri: str, name: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    team, number = name.split("/run-")
    experiment = client.get_experiment_by_name(team)
    return client.search_runs([experiment.experiment_id], filter_string=f"tags.\"lab.run_number\" = '{number}'")[0]


def one_line_error(result, *fragments: str) -> str:
    assert result.exit_code != 0, result.output
    lines = [line for line in result.output.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]
