"""Fixtures shared by the client's tests: an empty migrated store, and the exchange store of real runs.

`migrated_store`: a migrated, empty embedded store copied into each test's LAB_HOME, instead of migrating one
per test. Creating an MLflow SQLite store runs well over a hundred alembic migrations (1-2 s); a file copy
takes milliseconds. Test modules opt in with `pytestmark = pytest.mark.usefixtures("migrated_store")`.

`exchange_lab` and `lab`: the store of real runs described in exchange_support.py, built once per session.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.client.exchange_support import ExchangeLab, build, one_thread


@pytest.fixture(scope="session")
def store_template(tmp_path_factory) -> Path:
    """One migrated, empty store per test session, the original that `migrated_store` copies."""
    from labclient.store.client import prepare_database
    from labclient.store.target import Target

    folder = tmp_path_factory.mktemp("store-template")
    prepare_database(
        Target(uri=f"sqlite:///{folder / 'mlflow.db'}", kind="database", artifact_root=folder / "artifacts")
    )
    return folder / "mlflow.db"


@pytest.fixture
def migrated_store(store_template, isolated_lab):
    """The empty store at the embedded location: LAB_HOME/mlflow.db, artifacts under LAB_HOME/artifacts."""
    target = isolated_lab / "data" / "mlflow.db"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(store_template, target)
    return target


@pytest.fixture(scope="session")
def exchange_lab(tmp_path_factory, mnist_dir) -> ExchangeLab:
    """The shared store of real runs (trained in-process), built once per session."""
    return build(tmp_path_factory.mktemp("exchange"), mnist_dir)


@pytest.fixture
def lab(exchange_lab, isolated_lab, monkeypatch) -> ExchangeLab:
    """Point this test at the shared store (its cache stays its own)."""
    from labclient.config import reset_settings

    monkeypatch.setenv("LAB_HOME", str(exchange_lab.home))
    reset_settings()
    with one_thread():
        yield exchange_lab
