"""Shared fixtures. Every test runs with its own LAB_HOME, cache, config file and tracking URI."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_datasets() -> Path:
    override = os.environ.get("LAB_TEST_DATASETS")
    for candidate in ([Path(override)] if override else []) + [REPO.parent / "shared" / "datasets", REPO / "shared" / "datasets"]:
        if (candidate / "mnist-10k").is_dir():
            return candidate
    pytest.fail("the MNIST test data is missing: expected ../shared/datasets/mnist-10k beside the repo (or set LAB_TEST_DATASETS)")


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The real 8,000/2,000 MNIST split in IDX format, read in place and never copied into the repo."""
    return shared_datasets() / "mnist-10k"


@pytest.fixture(scope="session")
def mnist_t10k_dir() -> Path:
    """The canonical MNIST test files (gzipped differently from the usual mirrors, same content)."""
    return shared_datasets() / "mnist"


@pytest.fixture(autouse=True)
def isolated_lab(tmp_path, monkeypatch):
    """Isolate the embedded store, cache, config file and tracking URI of every test."""
    from labclient.config import reset_settings

    for name in list(os.environ):
        if name.startswith(("LAB_", "MLFLOW_TRACKING_")) and name not in ("LAB_TEST_DATASETS", "LAB_DEBUG"):
            monkeypatch.delenv(name, raising=False)
    home = tmp_path / "lab"
    monkeypatch.setenv("LAB_HOME", str(home / "data"))
    monkeypatch.setenv("LAB_CACHE_DIR", str(home / "cache"))
    monkeypatch.setenv("LAB_CONFIG", str(home / "config.toml"))
    # no test may reach the internet for MNIST: a closed loopback port stands in for the mirrors
    monkeypatch.setenv("LAB_MNIST_MIRRORS", '["http://127.0.0.1:9/"]')
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    reset_settings()
    yield home
    reset_settings()


@pytest.fixture
def embedded_uri(isolated_lab) -> str:
    return f"sqlite:///{isolated_lab / 'data' / 'mlflow.db'}"


@pytest.fixture
def cli():
    """Invoke `labclient` in-process with click's CliRunner; returns the Result."""
    from click.testing import CliRunner

    from labclient.cli import main

    runner = CliRunner()

    def invoke(*args: str, **kwargs):
        return runner.invoke(main, list(args), catch_exceptions=False, **kwargs)

    return invoke
