"""The sender process: a run ships from a process of its own, which never outlives the run, ignores the
Ctrl-C meant for training, and whose death loses nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from labclient.errors import TrackingError
from labclient.tracking.recorder import SenderProcess
from labclient.tracking.run import create_run
from labclient.tracking.sync import sync_pending

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("migrated_store")]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _niceness(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def _history(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in MlflowClient(uri).get_metric_history(run_id, key))


def test_a_run_ships_from_its_own_lower_priority_process(embedded_uri):
    run = create_run("blue")
    pid = run.recorder.sender_pid
    assert pid not in (None, os.getpid()) and _alive(pid)
    for step in range(200):
        run.log_metric("cost", 1 / (step + 1), step)
    run.recorder.flush()
    assert _niceness(pid) == min(os.getpriority(os.PRIO_PROCESS, 0) + 10, 19)  # lowered once it started
    assert run.recorder.stats()["acked"] == 200 and run.recorder.stats()["requests"] >= 1
    assert run.finish() is True
    assert _history(embedded_uri, run.id, "cost") == [(step, 1 / (step + 1)) for step in range(200)]


def test_the_next_run_of_the_process_reuses_the_sender_and_each_run_gets_its_own_points(embedded_uri):
    first = create_run("blue")
    first.log_metric("cost", 1.0, 0)
    assert first.finish() is True
    pid = first.recorder.sender_pid
    assert _alive(pid)  # idle, connected, waiting for the next run

    second = create_run("blue")
    assert second.recorder.sender_pid == pid
    second.log_metric("cost", 2.0, 0)
    second.log_metric("cost", 3.0, 1)
    assert second.finish() is True
    assert _history(embedded_uri, first.id, "cost") == [(0, 1.0)]
    assert _history(embedded_uri, second.id, "cost") == [(0, 2.0), (1, 3.0)]

    SenderProcess.stop_idle()
    assert _gone_within(pid, 5)
    third = create_run("blue")  # a new one when none is idle
    assert third.recorder.sender_pid not in (pid, None)
    assert third.finish() is True


def test_a_sender_that_dies_is_reported_and_sync_sends_the_rest(isolated_lab, embedded_uri):
    run = create_run("blue")
    run.log_metric("cost", 1.0, 0)
    run.recorder.flush()
    os.kill(run.recorder.sender_pid, signal.SIGKILL)
    for step in range(1, 20):
        run.log_metric("cost", 1.0 / (step + 1), step)
    with pytest.raises(TrackingError, match=r"the sender process stopped \(exit code -9\)") as raised:
        run.recorder.flush(timeout=10)
    assert "labclient sync" in raised.value.one_line()
    assert run.finish() is False and run.pending  # kept in the journal, not lost
    assert run.journal_path.is_dir()
    [outcome] = list(sync_pending())
    assert outcome.error is None and outcome.events == 20 and outcome.status == "FINISHED"
    assert _history(embedded_uri, run.id, "cost") == [(step, 1.0 / (step + 1)) for step in range(20)]
    assert MlflowClient(embedded_uri).get_run(run.id).info.status == "FINISHED"


TRAINING_PROCESS = """
import signal
import sys
# a terminal's foreground job answers Ctrl-C with Python's KeyboardInterrupt, even when this test runs under a
# runner started in the background, whose SIGINT is ignored (and inherited as ignored)
signal.signal(signal.SIGINT, signal.default_int_handler)
from labclient.tracking.run import start_run
with start_run("blue") as run:
    run.log_metric("cost", 1.0, 0)
    print(run.recorder.sender_pid, run.id, flush=True)
    sys.stdin.readline()  # interrupted or killed here
"""


def _start_training_process():
    """A training process in a session of its own, as a terminal's foreground job is."""
    trainer = subprocess.Popen(
        [sys.executable, "-c", TRAINING_PROCESS],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    sender, run_id = trainer.stdout.readline().split()
    return trainer, int(sender), run_id


def test_ctrl_c_ends_the_run_as_killed_and_the_sender_still_delivers_it(embedded_uri):
    trainer, sender, run_id = _start_training_process()
    try:
        os.killpg(trainer.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
        assert "KeyboardInterrupt" in trainer.communicate(timeout=60)[1]
    finally:
        trainer.kill()
    assert _gone_within(sender, 10)
    logged = MlflowClient(embedded_uri).get_run(run_id)
    assert logged.info.status == "KILLED" and logged.data.metrics == {"cost": 1.0}


def test_the_sender_exits_when_its_training_process_is_killed(embedded_uri):
    trainer, sender, _ = _start_training_process()
    try:
        assert _alive(sender)
        trainer.kill()
        trainer.wait(10)
        assert _gone_within(sender, 10), "the sender outlived its training process"
    finally:
        trainer.kill()
        trainer.wait(10)
        if _alive(sender):
            os.kill(sender, signal.SIGKILL)
