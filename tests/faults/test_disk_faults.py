"""A full disk, for real: a small tmpfs under the journal and the embedded store, filled to the last byte.

Training that runs out of room stops with one line and keeps what it journalled; a store on a full disk
makes `sync` say so in one line (no traceback, and no "when the server is reachable"), and once there is
room again every journalled point arrives once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest

from labclient.errors import LabWarning
from tests.faults.fault_support import assert_exactly_once, events_of, lab_env, labclient, one_journal

pytestmark = pytest.mark.slow

TRAIN = ("train", "--team", "blue", "--trainer", "mnist-mlp", "--dataset", "digits", "--device", "cpu")


@contextmanager
def tmpfs(path: Path, size: str):
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=True)


def _fill(folder: Path) -> Path:
    """Take every free byte of the file system under `folder`."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for block in (1 << 16, 512, 1):  # down to the last byte
            try:
                while True:
                    os.write(fd, b"\0" * block)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


def _home(isolated_lab: Path) -> Path:
    return isolated_lab / "data"  # LAB_HOME: the journal, and the embedded store with its artifacts


@pytest.fixture(autouse=True)
def keep_journals(monkeypatch):
    monkeypatch.setenv("LAB_JOURNAL_KEEP", "1")  # a sent run's events stay, to compare with the store


def test_the_embedded_store_on_a_full_disk_is_one_line_and_sync_sends_it_later(isolated_lab):
    from labclient.tracking.run import create_run

    with tmpfs(_home(isolated_lab), "24m") as home:
        run = create_run("blue")  # on the embedded store, in LAB_HOME: created there, with its number
        for step in range(100):
            run.log_metric("cost", 1 / (step + 1), step)
        run.recorder.flush()
        os.kill(run.recorder.sender_pid, signal.SIGKILL)  # the rest waits in the journal, for sync
        for step in range(100, 300):
            run.log_metric("cost", 1 / (step + 1), step)
        with pytest.warns(LabWarning, match="the sender process stopped"):
            assert run.finish() is False
        events = events_of(run.journal_path)

        filler = _fill(home)
        full = labclient(["sync"], lab_env())
        said = full.stdout + full.stderr
        assert full.returncode == 1, said
        assert "Traceback" not in said and "disk is full" in said and "free some disk space" in said
        assert "when the server is reachable" not in said
        assert len(said.strip().splitlines()) == 2, said  # the run's line and the summary: nothing else
        print(f"\nFIGURE sync onto a full disk said: {said.strip()}")
        assert events_of(run.journal_path) == events  # still pending, all of it

        filler.unlink()
        synced = labclient(["sync"], lab_env())
        assert synced.returncode == 0, synced.stdout + synced.stderr
        assert_exactly_once(f"sqlite:///{home / 'mlflow.db'}", run.id, events, "embedded store on a full disk, sync")


def test_training_that_fills_the_disk_stops_in_one_line_and_keeps_its_journal(isolated_lab, mnist_dir):
    with tmpfs(_home(isolated_lab), "600k") as home:  # 10 epochs journal about 1 MB
        trained = labclient(
            [
                "train",
                "--team",
                "blue",
                "--trainer",
                "mnist-mlp",
                "--dataset",
                "mnist",
                "--data-dir",
                str(mnist_dir),
                "--epochs",
                "10",
                "--device",
                "cpu",
                "--offline",
            ],
            lab_env(),
        )
        said = trained.stdout + trained.stderr
        assert trained.returncode == 1, said
        assert "error: no space left on the device while writing the run journal" in said and "Traceback" not in said
        folder = one_journal(isolated_lab)
        events = events_of(folder)
        assert [event["seq"] for event in events] == list(range(len(events)))  # no half line in the middle
        assert 1000 < len(events) < 8000  # it stopped mid-run (10 epochs are 8,000 steps)

        subprocess.run(["mount", "-o", "remount,size=64m", str(home)], check=True)  # room again
        synced = labclient(["sync"], lab_env())
        assert synced.returncode == 0, synced.stdout + synced.stderr
        ends = [event["status"] for event in events if event["type"] == "end"]  # FAILED, when its line still fit
        said = f"ended {ends[0]}" if ends else "ended KILLED (its training process had died)"
        assert said in synced.stdout
        run_id = json.loads((one_journal(isolated_lab) / "state.json").read_text())["run_id"]
        assert_exactly_once(f"sqlite:///{home / 'mlflow.db'}", run_id, events, "training that filled the disk, sync")


def test_training_onto_a_store_whose_disk_is_full_says_so_and_sync_sends_it_later(isolated_lab, tmp_path):
    store = tmp_path / "store"
    with tmpfs(store, "16m"):
        uri = f"sqlite:///{store / 'mlflow.db'}"
        from labserver.db import migrate

        migrate.upgrade_all(uri)  # the store exists, as it would after earlier runs
        filler = _fill(store)
        trained = labclient([*TRAIN, "--epochs", "1", "--tracking-uri", uri], {**lab_env(), "LAB_DRAIN_TIMEOUT": "2"})
        said = trained.stdout + trained.stderr
        assert trained.returncode == 0, said  # the journal has room: training goes on
        assert "the tracking store's disk is full" in said and "Traceback" not in said
        assert "once there is free space where the store keeps its data" in said
        assert "when the server is reachable" not in said
        [folder] = [path for path in (isolated_lab / "data" / "journal").iterdir() if path.name != "synced"]
        events = events_of(folder)

        filler.unlink()
        synced = labclient(["sync"], lab_env())
        assert synced.returncode == 0, synced.stdout + synced.stderr
        run_id = json.loads((isolated_lab / "data" / "journal" / "synced" / folder.name / "state.json").read_text())
        assert_exactly_once(uri, run_id["run_id"], events, "training onto a store on a full disk, then sync")
