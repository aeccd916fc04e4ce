"""Damaged journals, published to the embedded store (SQLite) by `labclient status` and `sync`.

A lost or damaged meta.json is rebuilt from the run's start (event 0); a folder that cannot be read at all
is listed with the reason and what to do, never skipped in silence. A damaged line anywhere but a torn
last one is reported with its sequence number and tags the run `lab.journal.gaps`; a bit flipped inside a
line that still parses as JSON is caught by the line's checksum. A last event that lost only its newline
still counts.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from labclient.tracking.run import create_run
from tests.faults.fault_support import assert_exactly_once, events_of

pytestmark = pytest.mark.slow


def _finished_offline_run(points: int = 30) -> Path:
    run = create_run("blue", offline=True)
    for step in range(points):
        run.log_metric("cost", 1 / (step + 1), step)
    assert run.finish() is False  # offline: pending
    return run.journal_path


def _run_of(uri: str, folder: Path):
    """The run on the store of a journal folder (named by the run's local id), once synced."""
    local_id = folder.name
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("blue").experiment_id
    [run] = client.search_runs([experiment], f"tags.`lab.local_id` = '{local_id}'")
    return run


def _rewrite_line(folder: Path, seq: int, change) -> None:
    path = folder / "events.jsonl"
    lines = path.read_bytes().split(b"\n")
    index = next(i for i, line in enumerate(lines) if line.startswith(b'{"seq":%d,' % seq))
    lines[index] = change(lines[index])
    path.write_bytes(b"\n".join(lines))


def test_a_lost_or_damaged_meta_json_is_rebuilt_and_an_unreadable_folder_is_listed(cli, embedded_uri):
    lost, damaged, hopeless = _finished_offline_run(), _finished_offline_run(), _finished_offline_run()
    expected = {folder: events_of(folder) for folder in (lost, damaged)}
    meta = {folder: json.loads((folder / "meta.json").read_text()) for folder in (lost, damaged)}
    (lost / "meta.json").unlink()
    (damaged / "meta.json").write_text('{"team": "bl')  # torn by a crash of the machine
    (hopeless / "meta.json").unlink()
    _rewrite_line(hopeless, 0, lambda line: line.replace(b'"start"', b'"stort"'))  # and its start is damaged too

    status = cli("status")
    assert status.exit_code == 0, status.output
    assert "2 pending run(s)" in status.output
    assert meta[lost]["local_name"] in status.output and meta[damaged]["local_name"] in status.output
    assert (
        f"cannot read the journal folder {hopeless}: meta.json is missing, and events.jsonl does not begin "
        "with the run's start"
    ) in status.output
    assert "restore" in status.output and "move the folder out of the journal" in status.output
    for folder in (lost, damaged):
        assert json.loads((folder / "meta.json").read_text()) == meta[folder]  # rebuilt from event 0

    synced = cli("sync")
    assert synced.exit_code == 1 and f"{hopeless.name}: not sent: cannot be read" in synced.output
    assert "restore or move the folders that cannot be read" in synced.output and "Traceback" not in synced.output
    for folder in (lost, damaged):
        assert f"{meta[folder]['local_name']} -> blue/run-" in synced.output
        assert_exactly_once(
            embedded_uri,
            _run_of(embedded_uri, folder).info.run_id,
            expected[folder],
            "journal whose meta.json was lost or damaged",
        )
    assert hopeless.is_dir()  # nothing was deleted


def test_damaged_lines_in_the_middle_are_reported_by_number_and_tag_the_run(cli, embedded_uri):
    folder = _finished_offline_run(100)
    expected = events_of(folder)
    _rewrite_line(folder, 40, lambda line: line.replace(b'"value":0.0', b'"value":0.9', 1))  # JSON still: the crc tells
    _rewrite_line(folder, 70, lambda line: b"\0" * len(line))  # zeros, as a crash of the machine leaves them
    assert "2 damaged lines cannot be sent" in cli("status").output

    synced = cli("sync")
    assert synced.exit_code == 0, synced.output
    assert "warning: event 40 is damaged" in synced.output and "warning: event 70 is damaged" in synced.output
    run = _run_of(embedded_uri, folder)
    assert run.data.tags["lab.journal.gaps"] == "40,70" and run.info.status == "FINISHED"
    assert_exactly_once(
        embedded_uri,
        run.info.run_id,
        expected,
        "journal with two damaged lines (sent without them)",
        leave_out={40, 70},
    )


def test_an_end_event_that_lost_only_its_newline_still_ends_the_run(cli, embedded_uri):
    folder = _finished_offline_run()
    expected = events_of(folder)
    path = folder / "events.jsonl"
    path.write_bytes(path.read_bytes()[:-1])  # the writer is gone; its last newline never reached the disk
    assert "ended FINISHED" in cli("status").output

    synced = cli("sync")
    assert synced.exit_code == 0, synced.output
    assert "ended FINISHED" in synced.output and "warning" not in synced.output
    run = _run_of(embedded_uri, folder)
    assert run.info.status == "FINISHED" and "lab.journal.gaps" not in run.data.tags
    assert_exactly_once(embedded_uri, run.info.run_id, expected, "end event without its newline")


def test_a_torn_last_line_is_the_one_damage_passed_over_in_silence(cli, embedded_uri):
    run = create_run("blue", offline=True)
    for step in range(30):
        run.log_metric("cost", 1 / (step + 1), step)
    run.recorder.abandon()  # the process dies ...
    expected = events_of(run.journal_path)
    with open(run.journal_path / "events.jsonl", "ab") as handle:
        handle.write(b'{"seq":31,"type":"metric","key":"cost","value":0.03')  # ... in the middle of a write

    synced = cli("sync")
    assert synced.exit_code == 0, synced.output
    assert "ended KILLED" in synced.output and "warning" not in synced.output
    logged = _run_of(embedded_uri, run.journal_path)
    assert "lab.journal.gaps" not in logged.data.tags
    assert_exactly_once(embedded_uri, logged.info.run_id, expected, "torn last line (a writer killed mid-write)")
