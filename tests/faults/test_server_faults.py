"""Fault tests on real processes and real HTTP: a labserver SIGKILLed mid-run and restarted on the same
store, a server down for a whole run, a trainer SIGKILLed mid-run; then brute-forced and leaked tokens.

Each fault test checks with MLflow's own client that every point the trainer journalled is on the
server exactly once: the same (step, timestamp, value) triples, nothing lost, nothing duplicated.
The tests share one server of their own (SQLite), which they stop, kill and restart.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests
from mlflow.tracking import MlflowClient

from bench.servers import BIN
from labclient.files import sha256_file
from tests.servers import LabServer, run_labserver

pytestmark = pytest.mark.slow

TEAM = "blue"
STEPS_PER_EPOCH = 800  # the 8,000 training images of mnist-10k in mini-batches of 10, every step logged
EPOCHS = 10  # an epoch of the textbook network takes a fraction of a second: ten make a run the faults can hit


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("fault-server")
    server = LabServer(
        home=home,
        db_uri=f"sqlite:///{home / 'mlflow.db'}",
        artifacts=str(home / "artifacts"),
        env={"LAB_SERVER_ADMIN_TOKEN": "lab_admin_test_token_0123"},
    )
    run_labserver(server, "db", "upgrade")
    server.add_team(TEAM)  # written to the store directly: the server need not run yet
    yield server
    server.stop()


@pytest.fixture
def on_server(server, monkeypatch):
    """This test's client settings point at the fault server as team blue; MLflow's client reads as blue too."""
    for key, value in server.client_env(TEAM).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", TEAM)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", server.tokens[TEAM])
    monkeypatch.setenv("LAB_JOURNAL_KEEP", "1")  # keep each synced journal's events, to compare with the server
    from labclient.config import reset_settings

    reset_settings()
    return server


def _up(server: LabServer) -> None:
    if server.process is None:
        server.start()


def _down(server: LabServer, sig: int = signal.SIGTERM) -> None:
    if server.process is not None:
        server.stop(sig)


def _trainer(epochs: int, mnist_dir: Path, **env) -> subprocess.Popen:
    """`labclient train` in its own process, with this test's LAB_HOME and the server's URL and token."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    environment.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **env)
    command = [
        str(BIN / "labclient"),
        "train",
        "--team",
        TEAM,
        "--trainer",
        "mnist-mlp",
        "--dataset",
        "mnist",
        "--data-dir",
        str(mnist_dir),
        "--epochs",
        str(epochs),
        "--device",
        "cpu",
    ]
    return subprocess.Popen(
        command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )


def _journal(home: Path, timeout: float = 120) -> Path:
    """The one journal folder of this test, pending or (with LAB_JOURNAL_KEEP) synced."""
    root = home / "data" / "journal"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [path for path in root.glob("*/meta.json") if path.parent.name != "synced"] + list(
            root.glob("synced/*/meta.json")
        )
        if found:
            assert len(found) == 1, found
            return found[0].parent
        time.sleep(0.2)
    raise TimeoutError(f"no journal under {root}")


def _events(folder: Path) -> list[dict]:
    events = []
    for line in (folder / "events.jsonl").read_bytes().splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:  # a torn last line, as a killed process may leave it
            pass
    return events


def _wait_for(condition, timeout: float, what: str, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the trainer exited before {what}:\n{process.stdout.read()}")
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.1)


def _acked(folder: Path) -> int:
    try:
        return json.loads((folder / "acked.json").read_text())["seq"]
    except (OSError, ValueError):
        return 0


def _points(events: list[dict]) -> dict[str, list[tuple]]:
    points: dict[str, list[tuple]] = {}
    for event in events:
        if event["type"] == "metric":
            points.setdefault(event["key"], []).append((event["step"], event["timestamp"], event["value"]))
    return {key: sorted(values) for key, values in points.items()}


def _assert_exactly_once(server: LabServer, run_id: str, events: list[dict]) -> MlflowClient:
    client = MlflowClient(server.url)
    journalled = _points(events)
    assert journalled, "nothing was journalled"
    for key, expected in journalled.items():
        stored = sorted((m.step, m.timestamp, m.value) for m in client.get_metric_history(run_id, key))
        assert stored == expected, f"{key}: {len(stored)} points on the server, {len(expected)} journalled"
    return client


def _assert_weights(client: MlflowClient, run_id: str, tmp_path: Path) -> None:
    run = client.get_run(run_id)
    path = client.download_artifacts(run_id, "model/model.safetensors", str(tmp_path))
    assert sha256_file(Path(path)) == run.data.tags["lab.weights.sha256"]


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


# --- 2. the server is down for the whole run (first: the server has not started yet) --------------------
def test_server_down_for_the_whole_run_then_sync(cli, on_server, isolated_lab, tmp_path, monkeypatch):
    _down(on_server)
    monkeypatch.setenv("LAB_DRAIN_TIMEOUT", "1")
    trained = cli(
        "train", "--team", TEAM, "--trainer", "mnist-mlp", "--dataset", "digits", "--epochs", "2", "--device", "cpu"
    )
    assert trained.exit_code == 0, trained.output
    assert "cannot reach the server" in trained.output and "stored locally and pending" in trained.output
    folder = _journal(isolated_lab)
    local_name = json.loads((folder / "meta.json").read_text())["local_name"]
    events = _events(folder)
    assert sum(e["type"] == "metric" and e["key"] == "step_train_cost" for e in events) == 2 * 144

    _up(on_server)
    synced = cli("sync")
    assert synced.exit_code == 0, synced.output
    assert f"{local_name} -> {TEAM}/run-" in synced.output and "ended FINISHED" in synced.output
    kept = _journal(isolated_lab)
    assert kept.parent.name == "synced"
    state = json.loads((kept / "state.json").read_text())
    client = _assert_exactly_once(on_server, state["run_id"], events)
    run = client.get_run(state["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == f"{TEAM}/run-{state['number']}"
    assert run.data.tags["lab.local_name"] == local_name
    assert run.data.tags["mlflow.note.content"].startswith(f"# {TEAM}/run-{state['number']}: mnist-mlp on digits")
    _assert_weights(client, state["run_id"], tmp_path)


# --- 1. the server is SIGKILLed mid-run and restarted on the same store ------------------------------
def test_server_killed_mid_run_loses_and_duplicates_nothing(on_server, isolated_lab, mnist_dir, tmp_path):
    _up(on_server)
    trainer = _trainer(EPOCHS, mnist_dir, LAB_DRAIN_TIMEOUT="180")
    try:
        folder = _journal(isolated_lab)
        _wait_for(lambda: _acked(folder) > 300, 120, "the server acknowledged 300 events", trainer)
        on_server.stop(signal.SIGKILL)  # the whole process group, mid-request as likely as not
        killed_ms = int(time.time() * 1000)
        logged_then = len(_events(folder))
        _wait_for(
            lambda: len(_events(folder)) > logged_then + 1000,
            60,
            "1,000 more events journalled while the server is down",
        )
        on_server.start()  # same port, same store
        restarted_ms = int(time.time() * 1000)
        output, _ = trainer.communicate(timeout=240)
    finally:
        _stop(trainer)
    assert trainer.returncode == 0, output
    assert "pending" not in output and f"run {TEAM}/run-" in output

    kept = _journal(isolated_lab)
    assert kept.parent.name == "synced"  # drained: everything acknowledged
    events = _events(kept)
    steps = [e for e in events if e["type"] == "metric" and e["key"] == "step_train_cost"]
    assert len(steps) == EPOCHS * STEPS_PER_EPOCH
    assert (
        sum(killed_ms < e["timestamp"] < restarted_ms for e in steps) >= 1000
    )  # training went on while the server was down
    run_id = json.loads((kept / "state.json").read_text())["run_id"]
    client = _assert_exactly_once(on_server, run_id, events)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and "mlflow.note.content" in run.data.tags
    assert len(client.search_runs([run.info.experiment_id], f"tags.`lab.local_id` = '{kept.name}'")) == 1
    _assert_weights(client, run_id, tmp_path)


# --- 3. the trainer is SIGKILLed mid-run; sync recovers what it journalled ---------------------------
def test_trainer_killed_mid_run_then_sync(cli, on_server, isolated_lab, mnist_dir):
    _up(on_server)
    trainer = _trainer(EPOCHS, mnist_dir)
    try:
        folder = _journal(isolated_lab)
        _wait_for(
            lambda: (
                sum(b'"step_train_cost"' in line for line in (folder / "events.jsonl").read_bytes().splitlines()) > 500
            ),
            120,
            "500 steps journalled",
            trainer,
        )
        os.killpg(trainer.pid, signal.SIGKILL)
        trainer.wait(timeout=30)
    finally:
        _stop(trainer)
    events = _events(folder)
    assert (
        sum(e["type"] == "metric" and e["key"] == "step_train_cost" for e in events) < EPOCHS * STEPS_PER_EPOCH
    )  # mid-run
    assert "interrupted" in cli("status").output

    synced = cli("sync")
    assert synced.exit_code == 0, synced.output
    assert "ended KILLED (its training process had died)" in synced.output
    run_id = json.loads((_journal(isolated_lab) / "state.json").read_text())["run_id"]
    client = _assert_exactly_once(on_server, run_id, events)
    run = client.get_run(run_id)
    assert run.info.status == "KILLED" and run.info.end_time is not None
    assert "ended without finishing" in run.data.tags["lab.recovered"]


# --- resending after lost acknowledgements, against the real server ------------------------------------
def test_lost_acknowledgements_and_a_lost_create_answer_duplicate_nothing(on_server, isolated_lab):
    from labclient.store.transport import open_transport
    from labclient.tracking.run import create_run
    from labclient.tracking.sender import Sender

    _up(on_server)
    run = create_run(TEAM)
    for step in range(1500):  # two log_batch requests
        run.log_metric("cost", 1 / (step + 1), step)
    run.log_params({"eta": 3.0})
    run.recorder.flush()
    events = _events(run.journal_path)
    run.recorder.journal.mark_acked(0, 0)
    sendable = [event for event in events if event["type"] != "start"]  # event 0, meta.json's copy, is never sent
    assert Sender(run.recorder.journal, open_transport(run.target)).send_pending() == len(sendable)
    lost = Sender(run.recorder.journal, open_transport(run.target))
    lost.state = {"number": run.number, "experiment_id": run.experiment_id}
    assert lost.bind()["run_id"] == run.id
    assert run.finish() is True
    client = _assert_exactly_once(on_server, run.id, events)
    assert len(client.search_runs([run.experiment_id], f"tags.`lab.local_id` = '{run.recorder.journal.local_id}'")) == 1


# --- tokens ----------------------------------------------------------------------------------------------
class _FromAddress(requests.adapters.HTTPAdapter):
    """Connect from another loopback address, so throttling it cannot lock out the other tests (127.0.0.1)."""

    def __init__(self, address: str):
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def test_brute_force_is_throttled_and_never_accepted(server):
    _up(server)
    attacker = requests.Session()
    attacker.mount("http://", _FromAddress("127.0.0.2"))
    whoami = f"{server.url}/api/2.0/lab/whoami"
    guesses = [f"lab_guess_{index:04d}_xxxxxxxxxxxx" for index in range(12)]
    codes = [attacker.get(whoami, auth=(TEAM, guess), timeout=30).status_code for guess in guesses]
    assert codes[:10] == [401] * 10 and codes[10:] == [429, 429]
    assert attacker.get(whoami, auth=(TEAM, server.tokens[TEAM]), timeout=30).status_code == 429  # even the right one
    assert requests.get(whoami, auth=server.auth(TEAM), timeout=30).json()["team"] == TEAM  # others are not locked out


def test_tokens_never_appear_in_logs_messages_or_journals(cli, on_server, isolated_lab, monkeypatch):
    """Runs last: the server log then holds every request the tests above made, good and bad."""
    _up(on_server)
    wrong = "lab_wrong_token_zzzzzzzzzzzz"
    monkeypatch.setenv("LAB_TOKEN", wrong)
    from labclient.config import reset_settings

    reset_settings()
    refused = cli("train", "--team", TEAM, "--trainer", "logreg", "--dataset", "digits", "--epochs", "1")
    assert refused.exit_code != 0 and "did not accept the token" in refused.output and "Traceback" not in refused.output
    login = cli("login", "--server", on_server.url, "--team", TEAM, "--token", wrong)
    assert login.exit_code != 0
    offline = cli("train", "--team", TEAM, "--trainer", "logreg", "--dataset", "digits", "--epochs", "1", "--offline")
    assert offline.exit_code == 0, offline.output
    synced = cli("sync")
    assert synced.exit_code != 0 and "did not accept the token" in synced.output

    import base64

    secrets = [
        on_server.tokens[TEAM],
        wrong,
        "lab_guess_0000",
        base64.b64encode(f"{TEAM}:{on_server.tokens[TEAM]}".encode()).decode(),
    ]
    said = refused.output + login.output + offline.output + synced.output + cli("status").output
    written = b"".join(
        path.read_bytes() for path in isolated_lab.rglob("*") if path.is_file() and path.name != "config.toml"
    )
    log = on_server.log.read_text(errors="replace")
    assert "POST /api/2.0/mlflow/runs/log-batch" in log or "log-batch" in log  # the log does record requests
    for secret in secrets:
        assert secret not in said and secret.encode() not in written and secret not in log, secret[:12]
