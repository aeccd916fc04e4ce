"""The run journal on the embedded store: what reaches the disk, offline runs, sync and status, resending
without duplicates, crashed writers, a full disk, and a server that is down from the start."""

from __future__ import annotations

import errno
import json
import math
import zlib
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mlflow.tracking import MlflowClient

from labclient.config import get_settings
from labclient.errors import DiskFull, TrackingError
from labclient.store.transport import open_transport
from labclient.tracking import journal as journal_module
from labclient.tracking.journal import Journal
from labclient.tracking.journal_scan import pending_journals
from labclient.tracking.run import create_run
from labclient.tracking.sender import Sender
from labclient.tracking.sync import pending_runs, sync_pending

TRAIN = ("train", "--team", "blue", "--trainer", "mnist-mlp", "--dataset", "digits", "--epochs", "1", "--device", "cpu")


def _events(folder: Path) -> list[dict]:
    lines = (folder / "events.jsonl").read_bytes().splitlines()
    return [json.loads(line) for line in lines]


def _only_journal(home: Path) -> Path:
    folders = [path for path in (home / "data" / "journal").iterdir() if path.name != "synced"]
    assert len(folders) == 1, folders
    return folders[0]


def _runs(uri: str, team: str = "blue") -> list:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(team)
    return client.search_runs([experiment.experiment_id]) if experiment else []


def _history(uri: str, run_id: str, key: str) -> list[tuple[int, int, float]]:
    return sorted((m.step, m.timestamp, m.value) for m in MlflowClient(uri).get_metric_history(run_id, key))


def _journalled(events: list[dict], key: str) -> list[tuple[int, int, float]]:
    return sorted((e["step"], e["timestamp"], e["value"]) for e in events if e["type"] == "metric" and e["key"] == key)


# --- what reaches the disk -------------------------------------------------------------------------------
def test_every_call_is_on_disk_when_it_returns(isolated_lab, tmp_path):
    run = create_run("blue", offline=True)
    notes = tmp_path / "notes.txt"
    notes.write_text("first try")
    run.log_params({"eta": 3.0, "sizes": [784, 30, 10]})
    run.log_metrics({"cost": 0.5, "accuracy": 0.9}, step=3)
    run.log_artifact(notes, "extra")
    notes.unlink()  # the journal has its own copy
    events = _events(run.journal_path)  # read while the run is open: nothing waits in a buffer
    assert [e["seq"] for e in events] == list(range(len(events)))  # the run's start is event 0
    assert [(e["type"], e.get("key")) for e in events] == [
        ("start", None),
        ("param", "eta"),
        ("param", "sizes"),
        ("metric", "cost"),
        ("metric", "accuracy"),
        ("artifact", None),
    ]
    assert events[2]["value"] == "[784, 30, 10]" and events[3]["step"] == 3
    copy = run.journal_path / events[5]["file"]
    assert copy.read_text() == "first try" and events[5]["size"] == len("first try")
    meta = json.loads((run.journal_path / "meta.json").read_text())
    assert meta["team"] == "blue" and meta["offline"] is True and meta["local_name"] == run.name
    assert events[0]["meta"] == meta  # the run's start is in the event log too: meta.json can be rebuilt from it
    assert run.finish() is False and run.pending  # offline: it stays, for sync


def test_many_steps_of_a_metric_go_to_disk_in_one_write(isolated_lab, monkeypatch):
    run = create_run("blue", offline=True)
    writes, real = [], journal_module._write_fd
    monkeypatch.setattr(journal_module, "_write_fd", lambda fd, data: (writes.append(data), real(fd, data)))
    run.log_metric_steps("cost", [0.5, 0.25, 0.125], first_step=6, every=3)
    assert len(writes) == 1
    start, *events = _events(run.journal_path)
    assert start["type"] == "start"
    assert [(e["key"], e["step"], e["value"]) for e in events] == [
        ("cost", 6, 0.5),
        ("cost", 9, 0.25),
        ("cost", 12, 0.125),
    ]
    run.finish()


def test_step_costs_are_logged_every_nth_step_in_one_call_up_to_a_nan():
    import torch

    from labclient.errors import TrainingDiverged
    from labclient.training.loop import _StepLog

    class Recording:
        calls: list = []

        def log_metric_steps(self, *args):
            self.calls.append(args)

        def steps(self, count, last):
            pass

    run = Recording()
    steps = _StepLog(run, 3, 4, run)  # steps 4, 5, ...; every third is logged: 6, 9
    for value in [1.0, 2.0, 3.0, 4.0, 5.0]:
        steps.add(torch.tensor(value))
    steps.flush()
    for value in [6.0, float("nan"), 8.0]:
        steps.add(torch.tensor(value))
    with pytest.raises(TrainingDiverged, match="step 10"):
        steps.flush()
    assert run.calls == [("step_train_cost", [3.0], 6, 3), ("step_train_cost", [6.0], 9, 3)]


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=20), st.floats(), st.integers(-(2**62), 2**62), st.integers(0, 2**62))
def test_metric_lines_are_exact_json(key, value, step, timestamp):
    """The hot path formats metric lines by hand; they must read back as the very same point."""
    event = {"type": "metric", "key": key, "value": value, "timestamp": timestamp, "step": step}
    line = journal_module._encode(7, event)
    read = json.loads(line)
    assert read.pop("seq") == 7
    # the checksum covers the rest of the line
    assert read.pop("crc") == zlib.crc32(line[: line.rindex(',"crc":')].encode())
    if math.isnan(value):
        assert math.isnan(read.pop("value")) and read == {k: v for k, v in event.items() if k != "value"}
    else:
        assert read == event and type(read["value"]) is float


def test_a_torn_last_line_is_ignored_and_cut_before_appending(isolated_lab):
    run = create_run("blue", offline=True)
    run.log_metrics({"cost": 1.0}, step=0)
    run.log_metrics({"cost": 0.5}, step=1)
    run.recorder.abandon()  # the process "dies" ...
    with open(run.journal_path / "events.jsonl", "ab") as handle:
        handle.write(b'{"seq":3,"type":"metric","key":"cost","val')  # ... in the middle of a write
    journal = Journal.open(run.journal_path)
    # the start (event 0), then the two steps
    assert [event.get("step") for event, _ in journal.read_all()] == [None, 0, 1]
    assert journal.try_lock()
    journal.open_for_append()
    assert journal.append([{"type": "tag", "key": "k", "value": "v"}]) == 3
    journal.close()
    assert [e["seq"] for e in _events(run.journal_path)] == [0, 1, 2, 3]  # every line parses again


# --- offline runs, status and sync ----------------------------------------------------------------------
@pytest.mark.slow
def test_offline_training_touches_no_store_and_sync_publishes_it(cli, isolated_lab, embedded_uri, tmp_path):
    trained = cli(*TRAIN, "--offline", "--note", "trained on the train")
    assert trained.exit_code == 0, trained.output
    assert "stored locally and pending" in trained.output and "labclient sync" in trained.output
    assert not (isolated_lab / "data" / "mlflow.db").exists()  # --offline contacted no store at all
    folder = _only_journal(isolated_lab)
    local_name = json.loads((folder / "meta.json").read_text())["local_name"]
    journalled = _events(folder)

    status = cli("status")
    assert local_name in status.output and "ended FINISHED, offline" in status.output

    synced = cli("sync")
    assert synced.exit_code == 0, synced.output
    assert journalled[0]["type"] == "start"  # event 0, the copy of meta.json: not sent
    assert f"{local_name} -> blue/run-1: sent {len(journalled) - 1} events" in synced.output
    run = _runs(embedded_uri)[0]
    assert run.info.run_name == "blue/run-1" and run.info.status == "FINISHED"
    assert run.data.tags["lab.local_name"] == local_name and run.data.tags["lab.run_number"] == "1"
    assert len(_history(embedded_uri, run.info.run_id, "step_train_cost")) == 144  # 1,437 digits in batches of 10
    assert _history(embedded_uri, run.info.run_id, "step_train_cost") == _journalled(journalled, "step_train_cost")
    assert run.data.tags["mlflow.note.content"].startswith("# blue/run-1: mnist-mlp on digits")  # drafted at sync
    assert "trained on the train" in run.data.tags["mlflow.note.content"]
    weights = MlflowClient(embedded_uri).download_artifacts(run.info.run_id, "model/model.safetensors", str(tmp_path))
    from labclient.files import sha256_file

    assert sha256_file(Path(weights)) == run.data.tags["lab.weights.sha256"]
    assert "no pending runs" in cli("status").output and not folder.exists()
    assert "nothing to sync" in cli("sync").output


@pytest.mark.slow  # a run on a store: its sender process starts (about 2 s of MLflow imports)
@pytest.mark.usefixtures("migrated_store")
def test_resending_everything_duplicates_nothing(isolated_lab, embedded_uri):
    run = create_run("blue")
    for step in range(50):
        run.log_metric("cost", 1 / (step + 1), step)
    run.log_params({"eta": 0.5})
    run.set_tags({"phase": "warm-up"})
    run.recorder.flush()
    stats = run.recorder.stats()
    assert stats["acked"] == stats["logged"] == 52 and stats["requests"] >= 1 and stats["request_seconds"]

    journal = run.recorder.journal
    events = _events(run.journal_path)
    journal.mark_acked(0, 0)  # every acknowledgement was lost: all of it goes again
    again = Sender(journal, open_transport(run.target))
    assert again.send_pending() == 52
    lost_create = Sender(journal, open_transport(run.target))
    lost_create.state = {"number": run.number}  # the answer to "create the run" never came back
    assert lost_create.bind()["run_id"] == run.id
    assert run.finish() is True

    assert len(_runs(embedded_uri)) == 1
    assert _history(embedded_uri, run.id, "cost") == _journalled(events, "cost")
    assert len(_history(embedded_uri, run.id, "cost")) == 50
    assert MlflowClient(embedded_uri).get_run(run.id).data.params == {"eta": "0.5"}


@pytest.mark.slow  # a run on a store: its sender process starts (about 2 s of MLflow imports)
@pytest.mark.usefixtures("migrated_store")
def test_an_entry_the_store_refuses_is_skipped_and_said_the_rest_arrives(embedded_uri):
    run = create_run("blue")
    run.log_params({"eta": 3.0})
    run.log_params({"eta": 0.5, "epochs": 2})  # MLflow never lets a param change its value
    run.log_metric("cost", 0.25, 1)
    assert run.finish() is True
    [warning] = run.recorder.warnings
    assert warning.startswith("not sent: param 'eta'") and "Changing param values is not allowed" in warning
    logged = MlflowClient(embedded_uri).get_run(run.id)
    assert logged.data.params == {"eta": "3.0", "epochs": "2"} and logged.data.metrics == {"cost": 0.25}
    assert logged.info.status == "FINISHED"


@pytest.mark.slow  # a run on a store: its sender process starts (about 2 s of MLflow imports)
@pytest.mark.usefixtures("migrated_store")
def test_a_run_whose_process_died_is_synced_as_killed(cli, isolated_lab, embedded_uri):
    run = create_run("blue")
    for step in range(30):
        run.log_metric("cost", 2.0 - step / 30, step)
    events = _events(run.journal_path)
    run.recorder.abandon()  # no end event, and the lock is free: what a SIGKILL leaves
    assert "interrupted" in cli("status").output
    synced = cli("sync")
    assert synced.exit_code == 0, synced.output
    assert "its training process had died" in synced.output
    logged = MlflowClient(embedded_uri).get_run(run.id)
    assert logged.info.status == "KILLED" and "ended without finishing" in logged.data.tags["lab.recovered"]
    assert _history(embedded_uri, run.id, "cost") == _journalled(events, "cost")


@pytest.mark.slow  # a run on a store: its sender process starts (about 2 s of MLflow imports)
def test_a_journal_in_use_is_left_to_its_writer(cli, isolated_lab):
    run = create_run("blue", offline=True)
    run.log_metric("cost", 1.0)
    assert "training (pid" in cli("status").output
    assert "skipped, still being trained" in cli("sync").output
    run.finish()


# --- a full disk -----------------------------------------------------------------------------------
@contextmanager
def _disk_full_after(writes: int):
    """Every write to the journal after the first `writes` fails as on a full disk."""
    real = journal_module._write_fd
    count = {"writes": 0}

    def write(fd, data):
        count["writes"] += 1
        if count["writes"] > writes:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd, data)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(journal_module, "_write_fd", write)
        yield


@pytest.mark.slow
@pytest.mark.usefixtures("migrated_store")
def test_disk_full_while_journalling_is_one_line_and_the_journal_stays_readable(cli, isolated_lab, embedded_uri):
    with _disk_full_after(6):  # setup takes 5 writes, the step costs one per 50 steps: fails mid-epoch
        result = cli(*TRAIN)
    assert result.exit_code == 1
    assert "error: no space left on the device while writing the run journal" in result.output
    assert "labclient sync" in result.output and "Traceback" not in result.output
    folder = _only_journal(isolated_lab)
    events = _events(folder)  # every line parses: the failed writes left no half line behind
    assert [e["seq"] for e in events] == list(range(len(events)))  # from the start, event 0
    assert not list((folder / "files").glob("*/manifest.json"))  # the copy that failed was removed

    synced = cli("sync")
    assert synced.exit_code == 0, synced.output
    run = _runs(embedded_uri)[0]
    assert run.info.status == "KILLED"
    assert _history(embedded_uri, run.info.run_id, "step_train_cost") == _journalled(events, "step_train_cost")


def test_disk_full_while_copying_an_artifact(isolated_lab, tmp_path):
    run = create_run("blue", offline=True)
    big = tmp_path / "weights.bin"
    big.write_bytes(b"\0" * 3_000_000)
    with _disk_full_after(1), pytest.raises(DiskFull, match="no space left"):
        run.log_artifact(big, "model")
    assert not any((run.journal_path / "files").iterdir())
    run.log_metric("cost", 1.0)  # the journal goes on once there is room
    assert [e["type"] for e in _events(run.journal_path)] == ["start", "metric"]
    run.finish()


# --- a server that is down from the start --------------------------------------------------------------
@pytest.mark.slow
def test_unreachable_server_at_start_trains_and_keeps_the_run_pending(cli, isolated_lab, monkeypatch):
    from bench.servers import free_port

    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("LAB_TRACKING_URI", url)
    monkeypatch.setenv("LAB_TEAM", "blue")
    monkeypatch.setenv("LAB_TOKEN", "lab_secret_token_never_shown_1234")
    monkeypatch.setenv("LAB_DRAIN_TIMEOUT", "0.5")
    result = cli(*TRAIN)
    assert result.exit_code == 0, result.output
    assert "cannot reach the server" in result.output and "training goes on" in result.output
    assert "stored locally and pending" in result.output
    assert url in cli("status").output
    synced = cli("sync")
    assert synced.exit_code == 1 and "not sent: cannot reach the server" in synced.output
    assert "lab_secret_token_never_shown" not in result.output + synced.output
    assert len(pending_journals(get_settings().journal_dir)) == 1  # nothing lost


@pytest.mark.usefixtures("migrated_store")
def test_flush_of_an_offline_run_says_why_it_cannot(isolated_lab):
    run = create_run("blue", offline=True)
    with pytest.raises(TrackingError, match="offline"):
        run.recorder.flush()
    run.finish()
    assert [item.local_name for item in pending_runs()] == [run.local_name]
    results = list(sync_pending())
    assert results[0].name == "blue/run-1" and results[0].status == "FINISHED"
