"""Several `labclient sync` processes at once over the same journal, and the order pending runs are numbered in.

Any number of syncs may run together: each exits 0, each reports the runs it sent itself, a run another
sync is sending is said to be so (not "still being trained"), and every run is published exactly once.
Pending runs get their numbers in the order they started, even within one second.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest
from mlflow.tracking import MlflowClient

from bench.servers import BIN
from labclient.tracking.run import create_run
from tests.faults.fault_support import events_of, lab_env, point_at, points
from tests.servers import sqlite_lab_server

pytestmark = pytest.mark.slow

TEAM = "blue"
SENT = re.compile(r"^(\S+) -> (\S+): sent (\d+) events", re.M)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = sqlite_lab_server(tmp_path_factory.mktemp("concurrent-sync"), teams=(TEAM,))
    yield server
    server.stop()


def _offline_runs(count: int, steps: int) -> list:
    runs = []
    for index in range(count):
        run = create_run(TEAM, offline=True)
        run.log_params({"index": index})
        run.log_metric_steps("cost", [1 / (step + 1) for step in range(steps)])
        run.finish()
        runs.append(run)
    return runs


def _store_runs(server) -> dict[str, object]:
    client = MlflowClient(server.url)
    experiment = client.get_experiment_by_name(TEAM).experiment_id
    found: dict[str, list] = {}
    for run in client.search_runs([experiment], max_results=1000):
        found.setdefault(run.data.tags.get("lab.local_name"), []).append(run)
    return found


def test_three_syncs_at_once_each_report_their_own_and_publish_every_run_once(server, isolated_lab, monkeypatch):
    point_at(monkeypatch, server.url, TEAM, server.tokens[TEAM])
    runs = _offline_runs(40, 50)
    journalled = {run.local_name: points(events_of(run.journal_path)) for run in runs}
    environment = {**{key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}, **lab_env()}
    syncs = [
        subprocess.Popen(
            [str(BIN / "labclient"), "sync"],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [sync.communicate(timeout=600)[0] for sync in syncs]

    for sync, output in zip(syncs, outputs):
        assert sync.returncode == 0, output
        assert "Traceback" not in output and "Error" not in output and "still being trained" not in output
    reported = [match[0] for output in outputs for match in SENT.findall(output)]
    assert sorted(reported) == sorted(journalled)  # every run reported as sent, by exactly one sync
    for output in outputs:
        for line in output.splitlines():
            if "skipped" in line:
                assert "being sent by another `labclient sync`" in line, line

    published = _store_runs(server)
    client = MlflowClient(server.url)
    total = 0
    for local_name, expected in journalled.items():
        [run] = published[local_name]  # one run per journal: never published twice
        stored = sorted((m.step, m.timestamp, m.value) for m in client.get_metric_history(run.info.run_id, "cost"))
        assert stored == expected["cost"], local_name
        total += len(stored)
    print(
        f"\nFIGURE 3 concurrent syncs over 40 runs: {total} points journalled, {total} stored, 0 lost, 0 duplicated; "
        f"runs sent per sync: {[len(SENT.findall(output)) for output in outputs]}"
    )


def test_pending_runs_are_numbered_in_the_order_they_started(server, cli, isolated_lab, monkeypatch):
    point_at(monkeypatch, server.url, TEAM, server.tokens[TEAM])
    runs = _offline_runs(20, 1)  # well within a second or two: same-second local ids, random suffixes
    synced = cli("sync")
    assert synced.exit_code == 0, synced.output
    numbers = {local: int(name.rsplit("-", 1)[1]) for local, name, _ in SENT.findall(synced.output)}
    assert [numbers[run.local_name] for run in runs] == sorted(numbers.values())
