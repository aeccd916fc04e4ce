"""Shared fixtures. Every test runs with its own LAB_HOME, cache, config file and tracking URI."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_datasets() -> Path:
    override = os.environ.get("LAB_TEST_DATASETS")
    for candidate in ([Path(override)] if override else []) + [
        REPO.parent / "shared" / "datasets",
        REPO / "shared" / "datasets",
    ]:
        if (candidate / "mnist-10k").is_dir():
            return candidate
    pytest.fail(
        "the MNIST test data is missing: expected ../shared/datasets/mnist-10k beside the repo (or set "
        "LAB_TEST_DATASETS)"
    )


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
    from labclient.tracking.recorder import SenderProcess

    # the runs' sender processes wait for another run of this process: not across tests (idle: nothing to lose)
    SenderProcess.stop_idle(grace=0)


@pytest.fixture
def embedded_uri(isolated_lab) -> str:
    return f"sqlite:///{isolated_lab / 'data' / 'mlflow.db'}"


@pytest.fixture
def cli():
    """Invoke `labclient` in-process with click's CliRunner; returns the Result."""
    from click.testing import CliRunner

    from labclient.cli.main import main

    runner = CliRunner()

    def invoke(*args: str, **kwargs):
        return runner.invoke(main, list(args), catch_exceptions=False, **kwargs)

    return invoke


# --- real servers, shared by the tests of a session ------------------------------------------------


@pytest.fixture(scope="session")
def postgres():
    from tests.servers import ensure_postgres

    ensure_postgres()


@pytest.fixture
def pg_uri(postgres):
    """A throwaway PostgreSQL database, dropped after the test."""
    from tests.servers import create_database, drop_database

    uri = create_database()
    yield uri
    drop_database(uri)


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    from bench.servers import start_s3, stop_group

    server = start_s3(tmp_path_factory.mktemp("s3"))
    yield server
    stop_group(server.process)


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory):
    """labserver on a SQLite store and a local artifact folder, with teams red and blue."""
    from tests.servers import sqlite_lab_server

    server = sqlite_lab_server(tmp_path_factory.mktemp("labserver"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def lab_server_pg_s3(tmp_path_factory, postgres, s3):
    """labserver on the real PostgreSQL and an S3 server on loopback, with teams red and blue."""
    from tests.servers import create_database, drop_database

    home = tmp_path_factory.mktemp("labserver-pg")
    db_uri = create_database()
    env = {**s3.env, "LAB_SERVER_ADMIN_TOKEN": "lab_admin_test_token_0123"}
    from tests.servers import LabServer, run_labserver

    server = LabServer(home=home, db_uri=db_uri, artifacts=f"s3://{s3.bucket}/artifacts", env=env)
    run_labserver(server, "db", "upgrade")
    server.start()
    for team in ("red", "blue"):
        server.add_team(team)
    server.tokens["admin"] = env["LAB_SERVER_ADMIN_TOKEN"]
    yield server
    server.stop()
    drop_database(db_uri)


@pytest.fixture
def as_team(monkeypatch):
    """Point labclient at a server as one of its teams: `as_team(server, "red")`."""
    from labclient.config import reset_settings

    def switch(server, team):
        for key, value in server.client_env(team).items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
        monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
        reset_settings()

    return switch
