"""Shared by the fault tests: real `labclient` processes, their journals, and the measure every fault test
ends with: the points a run journalled against the points the store holds, read with MLflow's own client.

Each test prints one `FIGURE` line (run pytest with -s to see them); the README's guarantees quote them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

from bench.servers import BIN


def events_of(folder: Path) -> list[dict]:
    """Every event line of a journal that parses (a torn last line is left out), the start (event 0) included."""
    events = []
    for line in (folder / "events.jsonl").read_bytes().splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            pass
    return events


def points(events: list[dict]) -> dict[str, list[tuple]]:
    found: dict[str, list[tuple]] = {}
    for event in events:
        if event["type"] == "metric":
            found.setdefault(event["key"], []).append((event["step"], event["timestamp"], event["value"]))
    return {key: sorted(values) for key, values in found.items()}


def assert_exactly_once(uri: str, run_id: str, events: list[dict], what: str, leave_out: set[int] = frozenset()) -> int:
    """Every journalled point (but the sequence numbers in `leave_out`) is on the store once, nothing else is;
    prints the figure and returns how many points that is."""
    client = MlflowClient(uri)
    expected = points([event for event in events if event["seq"] not in leave_out])
    assert expected, "nothing was journalled"
    logged = stored = 0
    for key, journalled in expected.items():
        on_store = sorted((m.step, m.timestamp, m.value) for m in client.get_metric_history(run_id, key))
        assert on_store == journalled, f"{key}: {len(on_store)} points on the store, {len(journalled)} journalled"
        logged, stored = logged + len(journalled), stored + len(on_store)
    left_out = f" ({len(leave_out)} damaged lines left out, reported and tagged)" if leave_out else ""
    print(f"\nFIGURE {what}: {logged} points journalled{left_out}, {stored} stored, 0 lost, 0 duplicated")
    return stored


def trainer(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    """`labclient train ...` in a process (and session) of its own; stdout and stderr together."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    environment.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", COLUMNS="200", **env)
    return subprocess.Popen(
        [str(BIN / "labclient"), "train", *args],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def labclient(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    environment.update(PYTHONUNBUFFERED="1", COLUMNS="200", **env)
    return subprocess.run(
        [str(BIN / "labclient"), *args], env=environment, capture_output=True, text=True, timeout=timeout
    )


def lab_env() -> dict[str, str]:
    """The test's labclient settings (conftest's isolated_lab put them in os.environ)."""
    return {key: value for key, value in os.environ.items() if key.startswith("LAB_")}


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def one_journal(home: Path, timeout: float = 120) -> Path:
    """The one journal folder of this test, pending or (with LAB_JOURNAL_KEEP) synced."""
    root = home / "data" / "journal"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [path.parent for path in root.glob("*/meta.json") if path.parent.name != "synced"]
        found += [path.parent for path in root.glob("synced/*/meta.json")]
        if found:
            assert len(found) == 1, found
            return found[0]
        time.sleep(0.2)
    raise TimeoutError(f"no journal under {root}")


def acked(folder: Path) -> int:
    try:
        return json.loads((folder / "acked.json").read_text())["seq"]
    except (OSError, ValueError):
        return 0


def wait_for(condition, timeout: float, what: str, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the trainer exited before {what}:\n{process.stdout.read()}")
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.1)


def point_at(monkeypatch, uri: str, team: str, token: str | None = None) -> None:
    """This test's labclient settings (and MLflow's client, reading as the team) point at `uri`."""
    from labclient.config import reset_settings

    settings = {"LAB_TRACKING_URI": uri, "LAB_TEAM": team, "LAB_JOURNAL_KEEP": "1"}
    if token:
        settings.update(LAB_TOKEN=token, MLFLOW_TRACKING_USERNAME=team, MLFLOW_TRACKING_PASSWORD=token)
    for key, value in settings.items():
        monkeypatch.setenv(key, value)
    reset_settings()
