"""PostgreSQL restarting and stopped, under a labserver and as a direct tracking target.

Each test has a database of its own on the machine's PostgreSQL, which is never stopped itself: the
test "restarts" its database by terminating every connection to it (what a restart or a fast shutdown
does to them, AdminShutdown included) and "stops" it by refusing new connections (ALTER DATABASE
... ALLOW_CONNECTIONS false), then restores it as it was and drops it.

A store that is down is an outage, never a bad token: the server answers 503 and counts no failed
login, the client retries, a run started meanwhile is journalled, and every point arrives once.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager

import psycopg
import pytest
import requests
from sqlalchemy.engine import make_url

from tests.faults.fault_support import (
    acked,
    assert_exactly_once,
    events_of,
    lab_env,
    one_journal,
    point_at,
    stop,
    trainer,
    wait_for,
)
from tests.servers import PG_ADMIN_URI, LabServer, create_database, drop_database, run_labserver

pytestmark = pytest.mark.slow

TEAM = "blue"
EPOCHS = 20  # long enough a run for the outage to fall in its middle, on a busy machine too
TRAIN_DIGITS = ("--team", TEAM, "--trainer", "mnist-mlp", "--dataset", "digits", "--epochs", "1", "--device", "cpu")


class Database:
    """One test's own database, and the faults it can suffer."""

    def __init__(self, uri: str):
        self.uri = uri
        self.name = make_url(uri).database

    def _admin(self, statement: str, *args) -> list:
        with psycopg.connect(PG_ADMIN_URI.replace("+psycopg", ""), autocommit=True) as connection:
            cursor = connection.execute(statement, args)
            return cursor.fetchall() if cursor.description else []

    def allow_connections(self, allowed: bool) -> None:
        self._admin(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS {str(allowed).lower()}')

    def terminate_connections(self) -> int:
        return len(
            self._admin(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                self.name,
            )
        )

    @contextmanager
    def stopped(self):
        self.allow_connections(False)
        self.terminate_connections()
        try:
            yield
        finally:
            self.allow_connections(True)

    def restarting(self, seconds: float) -> None:
        """Connections die over and over for a while, at whatever point of a request they are."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.terminate_connections()
            time.sleep(0.05)


@contextmanager
def own_database():
    database = Database(create_database())
    try:
        yield database
    finally:
        database.allow_connections(True)  # as it was, whatever the test did
        drop_database(database.uri)


@pytest.fixture(scope="module")
def pg_server(tmp_path_factory, postgres):
    with own_database() as database:
        home = tmp_path_factory.mktemp("pg-server")
        server = LabServer(
            home=home,
            db_uri=database.uri,
            artifacts=str(home / "artifacts"),
            env={"LAB_SERVER_ADMIN_TOKEN": "lab_admin_test_token_0123"},
        )
        run_labserver(server, "db", "upgrade")
        server.add_team(TEAM)
        server.start()
        server.database = database
        try:
            yield server
        finally:
            server.stop()


def _whoami(address: str, server: LabServer, token: str) -> requests.Response:
    session = requests.Session()
    session.mount("http://", _FromAddress(address))
    return session.get(f"{server.url}/api/2.0/lab/whoami", auth=(TEAM, token), timeout=60)


class _FromAddress(requests.adapters.HTTPAdapter):
    """Connect from another loopback address, so that throttling it locks out no other test."""

    def __init__(self, address: str):
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def _ended(folder) -> bool:
    return any(event["type"] == "end" for event in events_of(folder))


def _train_on_while_stopped(folder, process) -> None:
    """Training goes on while the store is stopped: 1,000 more steps journalled (or the run's end, on a machine
    so busy that the last epochs fall in the outage)."""
    stopped_at = len(events_of(folder))
    wait_for(
        lambda: len(events_of(folder)) > stopped_at + 1000 or _ended(folder),
        90,
        "1,000 events journalled while the store is stopped",
        process,
    )


# --- a labserver whose database is down ------------------------------------------------------------------
def test_a_database_outage_at_the_server_is_503_and_no_failed_login(pg_server):
    with pg_server.database.stopped():
        answers = [_whoami("127.0.0.5", pg_server, pg_server.tokens[TEAM]) for _ in range(12)]
        wrong = _whoami("127.0.0.5", pg_server, "lab_wrong_token_xxxxxxxxxxxx")
    assert [answer.status_code for answer in answers] == [503] * 12  # not 401, and never throttled into 429
    assert wrong.status_code == 503  # no token can be checked, right or wrong
    body = answers[0].json()
    assert body["error_code"] == "TEMPORARILY_UNAVAILABLE" and "database is unavailable" in body["message"]
    assert answers[0].headers["Retry-After"] == "5"
    assert _whoami("127.0.0.5", pg_server, pg_server.tokens[TEAM]).json()["team"] == TEAM  # at once: no lock-out


def test_a_run_outlives_its_servers_database_restarting_and_stopping(pg_server, isolated_lab, mnist_dir, monkeypatch):
    point_at(monkeypatch, pg_server.url, TEAM, pg_server.tokens[TEAM])
    process = trainer(
        [
            "--team",
            TEAM,
            "--trainer",
            "mnist-mlp",
            "--dataset",
            "mnist",
            "--data-dir",
            str(mnist_dir),
            "--epochs",
            str(EPOCHS),
            "--device",
            "cpu",
        ],
        {**lab_env(), "LAB_DRAIN_TIMEOUT": "180"},
    )
    try:
        folder = one_journal(isolated_lab)
        wait_for(lambda: acked(folder) > 300, 120, "the server acknowledged 300 events", process)
        assert not _ended(folder), "training ended before the fault: the test needs a longer run"
        pg_server.database.restarting(3)
        with pg_server.database.stopped():
            _train_on_while_stopped(folder, process)
        output, _ = process.communicate(timeout=240)
    finally:
        stop(process)
    assert process.returncode == 0, output
    assert "did not accept the token" not in output and "pending" not in output
    kept = one_journal(isolated_lab)
    assert kept.parent.name == "synced"  # drained while training: everything acknowledged
    run_id = json.loads((kept / "state.json").read_text())["run_id"]
    assert_exactly_once(pg_server.url, run_id, events_of(kept), "labserver's PostgreSQL restarting, stopped, mid-run")


def test_a_run_started_while_the_servers_database_is_down_is_journalled(pg_server, cli, isolated_lab, monkeypatch):
    point_at(monkeypatch, pg_server.url, TEAM, pg_server.tokens[TEAM])
    monkeypatch.setenv("LAB_DRAIN_TIMEOUT", "1")
    from labclient.config import reset_settings

    reset_settings()
    with pg_server.database.stopped():
        trained = cli("train", *TRAIN_DIGITS)
    assert trained.exit_code == 0, trained.output
    assert "answered 503" in trained.output and "training goes on" in trained.output
    assert "stored locally and pending" in trained.output and "did not accept the token" not in trained.output

    synced = cli("sync")
    assert synced.exit_code == 0, synced.output
    kept = one_journal(isolated_lab)
    run_id = json.loads((kept / "state.json").read_text())["run_id"]
    assert_exactly_once(pg_server.url, run_id, events_of(kept), "a run started while labserver's database was down")


# --- PostgreSQL as the tracking URI itself -----------------------------------------------------------------
def test_direct_postgres_restarting_and_stopping_mid_run_loses_nothing(postgres, isolated_lab, mnist_dir, monkeypatch):
    with own_database() as database:
        point_at(monkeypatch, database.uri, TEAM)
        process = trainer(
            [
                "--team",
                TEAM,
                "--trainer",
                "mnist-mlp",
                "--dataset",
                "mnist",
                "--data-dir",
                str(mnist_dir),
                "--epochs",
                str(EPOCHS),
                "--device",
                "cpu",
            ],
            {**lab_env(), "LAB_DRAIN_TIMEOUT": "180"},
        )
        try:
            folder = one_journal(isolated_lab)
            wait_for(lambda: acked(folder) > 300, 120, "the store acknowledged 300 events", process)
            assert not _ended(folder), "training ended before the fault: the test needs a longer run"
            database.restarting(4)  # connections die in the middle of log_batch: AdminShutdown past MLflow's store
            with database.stopped():
                _train_on_while_stopped(folder, process)
            output, _ = process.communicate(timeout=240)
        finally:
            stop(process)
        assert process.returncode == 0, output
        assert "pending" not in output and "sending stopped" not in output
        kept = one_journal(isolated_lab)
        assert kept.parent.name == "synced"
        run_id = json.loads((kept / "state.json").read_text())["run_id"]
        assert_exactly_once(database.uri, run_id, events_of(kept), "direct PostgreSQL restarting, stopped, mid-run")


def test_train_on_direct_postgres_that_is_down_journals_and_sync_sends_it(postgres, cli, isolated_lab, monkeypatch):
    with own_database() as database:
        point_at(monkeypatch, database.uri, TEAM)
        monkeypatch.setenv("LAB_DRAIN_TIMEOUT", "1")
        from labclient.config import reset_settings

        reset_settings()
        with database.stopped():
            trained = cli("train", *TRAIN_DIGITS)
            assert trained.exit_code == 0, trained.output
            assert "the tracking store is unavailable" in trained.output and "training goes on" in trained.output
            assert "stored locally and pending" in trained.output
            down = cli("sync")
            assert down.exit_code == 1 and "not sent" in down.output and "Traceback" not in down.output
            assert "when the server is reachable" in down.output
        synced = cli("sync")
        assert synced.exit_code == 0, synced.output
        kept = one_journal(isolated_lab)
        run_id = json.loads((kept / "state.json").read_text())["run_id"]
        assert_exactly_once(database.uri, run_id, events_of(kept), "trained while direct PostgreSQL was down, sync")
