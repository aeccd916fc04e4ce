"""Whatever sits between the client and the store: a proxy that answers with pages, statuses and dropped
connections the tracking server never sent, that applies a request and then fails it, or that refuses
bodies over nginx's 1 MB; and a token rotated while a run trains.

Only an MLflow error the store explains (INVALID_PARAMETER_VALUE: a param that changed value) may
drop an entry, and it is reported through every interface; everything else is retried, or left
pending in the journal, and every point arrives exactly once.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import warnings
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from labclient.errors import LabWarning
from tests.faults.fault_proxy import FaultProxy
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
from tests.servers import run_labserver, sqlite_lab_server

pytestmark = pytest.mark.slow

TEAM = "blue"
NGINX_BODY_LIMIT = 1 << 20


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = sqlite_lab_server(tmp_path_factory.mktemp("proxy-faults"), teams=(TEAM, "green"))
    yield server
    server.stop()


@pytest.fixture
def proxy(server):
    proxy = FaultProxy(server.url, max_body=NGINX_BODY_LIMIT)
    yield proxy
    proxy.close()


@pytest.fixture
def behind_proxy(server, proxy, monkeypatch):
    point_at(monkeypatch, proxy.url, TEAM, server.tokens[TEAM])
    return proxy


def _weights(folder: Path, size: int = 3_000_000) -> Path:
    path = folder / "model.safetensors"
    path.write_bytes(os.urandom(size))
    return path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_answers_that_are_not_the_stores_are_retried_and_nothing_is_lost(
    server, behind_proxy, isolated_lab, monkeypatch, tmp_path
):
    from labclient.config import reset_settings
    from labclient.tracking.run import create_run

    monkeypatch.setenv("LAB_DRAIN_TIMEOUT", "120")  # eight failures in a row back off for about 25 s
    reset_settings()
    proxy = behind_proxy
    proxy.add("POST", "log-batch", "html", status=502, times=2)  # a bad gateway page
    proxy.add("POST", "log-batch", "status", status=504, times=1)
    proxy.add("POST", "log-batch", "html", status=404, times=2)  # a proxy routing the path nowhere
    proxy.add("POST", "log-batch", "status", status=413, times=1)
    proxy.add("POST", "log-batch", "drop", times=2)
    proxy.add("POST", "log-batch", "applied", status=500, every=2, times=3)  # applied, then failed
    proxy.add("PUT", "uploads/chunk", "applied", status=504, times=1)
    proxy.add("POST", "uploads/complete", "applied", status=500, times=1)
    proxy.add("PUT", "mlflow-artifacts", "html", status=502, times=1)
    weights = _weights(tmp_path)

    run = create_run(TEAM)
    for step in range(6000):  # several log_batch requests, each a fault's target
        run.log_metric("cost", 1 / (step + 1), step)
    run.log_artifact(weights, "model")  # 3 MB through a proxy that refuses bodies over 1 MB
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        assert run.finish() is True and not run.pending
    assert not run.recorder.warnings and not [w for w in said if issubclass(w.category, LabWarning)]  # nothing refused

    assert proxy.stats.faults == {"html": 5, "status": 2, "drop": 2, "applied": 5}  # every fault was met
    assert 0 < proxy.stats.largest_body <= NGINX_BODY_LIMIT
    assert proxy.stats.requests["PUT /api/2.0/lab/uploads/chunk"] >= 6  # 3 MB in 512 KiB chunks, one sent twice
    kept = one_journal(isolated_lab)
    assert kept.parent.name == "synced"
    assert_exactly_once(server.url, run.id, events_of(kept), "proxy errors (502/504/404/413, drops, applied then 500)")
    stored = MlflowClient(server.url).download_artifacts(run.id, "model/model.safetensors", str(tmp_path / "back"))
    assert _sha256(Path(stored)) == _sha256(weights)


def test_a_proxy_that_keeps_failing_leaves_the_run_pending_and_sync_sends_it_later(
    server, behind_proxy, cli, isolated_lab, monkeypatch
):
    from labclient.tracking.run import create_run

    monkeypatch.setenv("LAB_DRAIN_TIMEOUT", "3")
    from labclient.config import reset_settings

    reset_settings()
    proxy = behind_proxy
    proxy.add("POST", "log-batch", "html", status=404)  # every one, until the proxy is fixed
    run = create_run(TEAM)
    for step in range(500):
        run.log_metric("cost", 1 / (step + 1), step)
    # the sender process has met the proxy's 404 at least once (on a loaded machine it starts late, and a 3 s drain
    # could end before its first try): what is asserted below is what it makes of that answer
    wait_for(lambda: run.recorder.problem, 120, "the sender's first try through the proxy")
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        assert run.finish() is False and run.pending  # the retries ran out: pending, not "refused"
    assert not run.recorder.warnings and not [w for w in said if issubclass(w.category, LabWarning)]
    problem = run.recorder.problem or ""  # why it is still pending: the proxy's 404, not a refusal
    assert "answered 404" in problem and "not the tracking server's own answer" in problem
    folder = one_journal(isolated_lab)
    assert folder.parent.name != "synced" and len(events_of(folder)) == 502  # start, 500 points, end

    failed = cli("sync")
    assert failed.exit_code == 1 and "not sent" in failed.output and "tried 4 times" in failed.output
    assert "run `labclient sync` again when the server is reachable" in failed.output
    assert one_journal(isolated_lab).parent.name != "synced"  # still pending, nothing lost

    proxy.clear()
    synced = cli("sync")
    assert synced.exit_code == 0, synced.output
    kept = one_journal(isolated_lab)
    assert kept.parent.name == "synced"
    assert_exactly_once(server.url, run.id, events_of(kept), "a proxy answering 404 until the drain timeout, then sync")


def test_a_refusal_the_store_explains_is_said_by_the_api_and_the_cli(server, behind_proxy, cli, isolated_lab):
    from labclient.tracking.run import create_run

    with pytest.warns(LabWarning, match=r"not sent: param 'eta'.*Changing param values is not allowed"):
        run = create_run(TEAM)
        run.log_params({"eta": 3.0})
        run.log_params({"eta": 0.5})  # MLflow never lets a param change its value
        run.log_metric("cost", 0.25, 1)
        run.recorder.flush()  # the warning comes as the refusal arrives, before the run ends
    assert run.finish() is True
    assert MlflowClient(server.url).get_run(run.id).data.params == {"eta": "3.0"}

    offline = create_run(TEAM, offline=True)
    offline.log_params({"eta": 3.0})
    offline.log_params({"eta": 0.5})
    offline.finish()
    synced = cli("sync")
    assert synced.exit_code == 0, synced.output
    assert "warning: not sent: param 'eta'" in synced.output and "Changing param values is not allowed" in synced.output


def test_a_token_rotated_mid_run_is_reported_at_once(server, cli, isolated_lab, mnist_dir, monkeypatch):
    team, epochs = "green", 10
    point_at(monkeypatch, server.url, team, server.tokens[team])
    process = trainer(
        [
            "--team",
            team,
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
        ],
        {**lab_env(), "LAB_DRAIN_TIMEOUT": "2"},
    )
    lines: list[str] = []

    def read() -> None:
        for line in process.stdout:
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        folder = one_journal(isolated_lab)
        wait_for(lambda: acked(folder) > 300, 120, "the server acknowledged 300 events", process)
        run_labserver(server, "team", "rotate-token", team)  # the admin rotates the token: the next request is refused
        rotated = time.monotonic()
        wait_for(lambda: any("did not accept the token" in line for line in lines), 60, "the warning")
        said_after = time.monotonic() - rotated
        assert process.poll() is None, "the warning came only after training ended"
        assert not any(line.startswith(f"epoch {epochs}:") for line in lines)  # said while training, not after it
        process.wait(timeout=240)
    finally:
        stop(process)
    output = "".join(lines)
    assert process.returncode == 0, output
    assert "sending stopped" in output and "labclient login" in output and "stored locally and pending" in output
    print(f"\nFIGURE token rotated mid-run: reported {said_after:.1f} s after the rotation, while training went on")

    new_token = run_labserver(server, "team", "rotate-token", team).rsplit(" ", 1)[-1].strip()
    server.tokens[team] = new_token
    point_at(monkeypatch, server.url, team, new_token)
    synced = cli("sync")
    assert synced.exit_code == 0, synced.output
    kept = one_journal(isolated_lab)
    run_id = json.loads((kept / "state.json").read_text())["run_id"]
    assert_exactly_once(server.url, run_id, events_of(kept), "token rotated mid-run, then login and sync")
