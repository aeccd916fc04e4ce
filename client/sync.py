"""Pending runs: journals not yet (fully) on their tracking store, listed by `labclient status` and
published by `labclient sync`.

A run is pending when it was trained `--offline`, when its server was unreachable until the drain
timeout ran out, or when its training process died. A journal whose lock no live process holds and
that has no end event belonged to a process that crashed: sync ends the run as KILLED, never leaves
it RUNNING. Each run goes where it was headed when it was trained, unless `--tracking-uri` says otherwise;
its number is allocated when it is first published, and its local name stays as the tag lab.local_name.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from labclient import tracking
from labclient.config import Settings, get_settings
from labclient.errors import LabError
from labclient.journal import Journal, pending_journals

RECOVERED_TAG = "lab.recovered"


@dataclass
class PendingRun:
    local_name: str
    name: str | None  # the run's name on the store, once it has one
    team: str
    uri: str
    state: str  # "training (pid N)", "ended FINISHED", "interrupted (...)"
    started: dt.datetime
    events: int  # events not yet acknowledged
    files: int
    file_bytes: int
    path: Path


@dataclass
class SyncResult:
    local_name: str
    name: str | None = None
    events: int = 0
    files: int = 0
    file_bytes: int = 0
    status: str | None = None  # the status the run ended with on the store
    recovered: bool = False  # its process died; sync marked the end
    skipped: str | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)


def _summary(journal: Journal) -> tuple[int, int, int, str | None]:
    """Events, files and file bytes not yet acknowledged, and the status of the end event if there is one."""
    acked_seq, _ = journal.acked()
    events = files = size = 0
    end = None
    for event, _ in journal.read_all():
        if event["type"] == "end":
            end = event.get("status")
        if event["seq"] <= acked_seq:
            continue
        events += 1
        if event["type"] == "artifact":
            files, size = files + 1, size + int(event.get("size", 0))
    return events, files, size, end


def pending_runs(settings: Settings | None = None) -> list[PendingRun]:
    settings = settings or get_settings()
    found = []
    for journal in pending_journals(settings.journal_dir):
        meta, state = journal.meta, journal.state()
        events, files, size, end = _summary(journal)
        if journal.in_use():
            condition = f"training (pid {meta.get('pid')})"
        elif end:
            condition = f"ended {end}" + (", offline" if meta.get("offline") else "")
        else:
            condition = f"interrupted (pid {meta.get('pid')} stopped writing it without ending the run)"
        name = tracking.run_name(meta["team"], state["number"]) if state.get("run_id") and state.get("number") else None
        found.append(PendingRun(meta["local_name"], name, meta["team"], meta["uri"], condition,
                                dt.datetime.fromtimestamp(meta["created_ms"] / 1000), events, files, size, journal.root))
    return found


def sync_pending(settings: Settings | None = None, tracking_uri: str | None = None) -> Iterator[SyncResult]:
    """Publish every pending run, oldest first; yields one result per run as it is done."""
    settings = settings or get_settings()
    for journal in pending_journals(settings.journal_dir):
        if not journal.try_lock():
            yield SyncResult(journal.meta["local_name"], skipped=f"still being trained by pid {journal.meta.get('pid')}, "
                                                                  "whose own sender ships it")
            continue
        try:
            yield _sync_one(journal, settings, tracking_uri)
        except LabError as err:
            yield SyncResult(journal.meta["local_name"], error=err.one_line())
        finally:
            journal.close()


def _sync_one(journal: Journal, settings: Settings, tracking_uri: str | None) -> SyncResult:
    from labclient.shipper import Shipper
    from labclient.transport import open_transport

    meta = journal.meta
    journal.open_for_append()
    events, files, size, end = _summary(journal)
    result = SyncResult(meta["local_name"], events=events, files=files, file_bytes=size)
    if end is None:  # the training process died before it could end the run
        last = max((event.get("timestamp", 0) for event, _ in journal.read_all()), default=0) or meta["created_ms"]
        reason = f"the training process (pid {meta.get('pid')} on {meta.get('host')}) ended without finishing the run"
        journal.append([{"type": "tag", "key": RECOVERED_TAG, "value": reason},
                        {"type": "end", "status": "KILLED", "end_time": last}])
        result.recovered = True
    target = tracking.resolve_target(settings, tracking_uri or meta["uri"])
    shipper = Shipper(journal, open_transport(target))
    shipper.bind()
    shipper.ship_pending()
    result.name, result.status, result.warnings = shipper.run_name, shipper.ended_with or end, shipper.warnings
    journal.retire(keep=settings.journal_keep)
    return result
