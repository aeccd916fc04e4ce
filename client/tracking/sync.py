"""Pending runs: journals not yet (fully) on their tracking store, listed by `labclient status` and
published by `labclient sync`.

A run is pending when it was trained `--offline`, when its server was unreachable until the drain
timeout ran out, or when its training process died. A journal whose lock no live process holds and
that has no end event belonged to a process that crashed: sync ends the run as KILLED, never leaves
it RUNNING. Each run goes where it was headed when it was trained, unless `--tracking-uri` says otherwise;
its number is allocated when it is first published, and its local name stays as the tag lab.local_name.

Runs are published in the order they started. Any number of syncs may run at once: each takes a run's
lock before sending it, and a run that another sync holds is left to it (and said so). A run whose
store does not answer is tried SYNC_TRIES times with backoff, then left pending; the other runs bound
for that store are not tried again in the same sync. Journal folders that cannot be read are listed,
with the reason and what to do: they are never skipped in silence.
"""

from __future__ import annotations

import datetime as dt
import random
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from labclient.config import Settings, get_settings
from labclient.errors import DiskFull, LabError, ServerUnreachable, StoreFull
from labclient.store.target import resolve_target
from labclient.tracking.journal import Journal
from labclient.tracking.journal_scan import UnreadableJournal, scan_journals
from labserver.names import run_name
from labserver.tags import RECOVERED_TAG

SYNC_TRIES = 4  # per run; 0.5 s, 1 s and 2 s apart
SYNC_RETRY_FIRST_S = 0.5


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
    damaged: int = 0  # lines not yet sent that cannot be read (a gap in the sequence numbers)


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
    cause: str | None = None  # why it was not sent: "unreachable", "disk", "unreadable" or "refused"
    warnings: list[str] = field(default_factory=list)


def _summary(journal: Journal) -> tuple[int, int, int, str | None, int]:
    """Events, files and file bytes not yet acknowledged, the status of the end event if there is one, and
    how many of the lines not yet acknowledged cannot be read."""
    acked_seq, _ = journal.acked()
    events = files = size = damaged = 0
    end, expected = None, acked_seq + 1
    for event, _ in journal.read_all():
        if event["type"] == "end":
            end = event.get("status")
        if event["seq"] <= acked_seq:
            continue
        damaged += max(event["seq"] - expected, 0)
        expected = event["seq"] + 1
        events += 1
        if event["type"] == "artifact":
            files, size = files + 1, size + int(event.get("size", 0))
    return events, files, size, end, damaged


def _held_by(journal: Journal, sync: bool = False, holder: dict | None = None) -> str:
    """What holds a journal's lock: in `status`'s words, or in `sync`'s (why it leaves the run alone)."""
    holder = holder or journal.holder()
    elsewhere = holder.get("host") not in (None, socket.gethostname())
    pid = f"pid {holder.get('pid')}" + (f" on {holder['host']}" if elsewhere else "")
    if holder.get("by") == "sync":
        return f"being sent by another `labclient sync` ({pid})"
    if holder.get("by") != "training":
        return f"held by {holder.get('by')} ({pid})"
    return f"still being trained by {pid}, whose own sender sends it" if sync else f"training ({pid})"


def pending_runs(settings: Settings | None = None) -> list[PendingRun]:
    return scan_pending(settings)[0]


def scan_pending(settings: Settings | None = None) -> tuple[list[PendingRun], list[UnreadableJournal]]:
    """Pending runs in the order they started, and the journal folders that cannot be read."""
    settings = settings or get_settings()
    found = []
    journals, unreadable = scan_journals(settings.journal_dir)
    for journal in journals:
        meta, state = journal.meta, journal.state()
        events, files, size, end, damaged = _summary(journal)
        if journal.vanished:  # sent by a sync a moment ago
            continue
        if journal.in_use():
            condition = _held_by(journal)
        elif end:
            condition = f"ended {end}" + (", offline" if meta.get("offline") else "")
        else:
            condition = f"interrupted (pid {meta.get('pid')} stopped writing it without ending the run)"
        name = run_name(meta["team"], state["number"]) if state.get("run_id") and state.get("number") else None
        found.append(
            PendingRun(
                meta["local_name"],
                name,
                meta["team"],
                meta["uri"],
                condition,
                dt.datetime.fromtimestamp(meta["created_ms"] / 1000),
                events,
                files,
                size,
                journal.root,
                damaged,
            )
        )
    return found, unreadable


def sync_pending(settings: Settings | None = None, tracking_uri: str | None = None) -> Iterator[SyncResult]:
    """Publish every pending run in the order they started; yields one result per run as it is done, and one
    per journal folder that cannot be read."""
    settings = settings or get_settings()
    journals, unreadable = scan_journals(settings.journal_dir)
    for folder in unreadable:
        yield SyncResult(folder.path.name, error=f"cannot be read: {folder.one_line()}", cause="unreadable")
    down: dict[str, ServerUnreachable] = {}  # stores that did not answer: their other runs wait for the next sync
    for journal in journals:
        held = _take(journal)
        if held is not None:
            if held:  # "" when it is gone: another sync sent it, and reports it
                yield SyncResult(journal.meta["local_name"], skipped=held)
            continue
        uri = tracking_uri or journal.meta["uri"]
        try:
            if uri in down:
                raise type(down[uri])(f"not tried: {down[uri]}", down[uri].remedy)
            yield _sync_one(journal, settings, tracking_uri)
        except ServerUnreachable as err:
            down.setdefault(uri, err)
            yield SyncResult(journal.meta["local_name"], error=err.one_line(), cause=_cause(err))
        except LabError as err:
            yield SyncResult(journal.meta["local_name"], error=err.one_line(), cause=_cause(err))
        finally:
            journal.close()


def _take(journal: Journal) -> str | None:
    """Lock the journal for this sync: None when it did, else why not ("" when another sync sent it away)."""
    for _ in range(3):
        if journal.try_lock("sync"):
            return None
        holder = journal.holder()
        if journal.vanished:
            return ""
        if holder["held"]:
            return _held_by(journal, sync=True, holder=holder)
    return _held_by(journal, sync=True)  # let go and taken again, three times over: someone else is at it


def _cause(err: LabError) -> str:
    if isinstance(err, (StoreFull, DiskFull)):
        return "disk"
    return "unreachable" if isinstance(err, ServerUnreachable) else "refused"


def _send_with_retries(sender, tries: int = 0) -> None:
    """Bind and send, retrying an outage with backoff; the last failure is raised, saying how often it was tried."""
    tries, delay, started = tries or SYNC_TRIES, SYNC_RETRY_FIRST_S, time.monotonic()
    for attempt in range(1, tries + 1):
        try:
            sender.bind()
            sender.send_pending()
            return
        except ServerUnreachable as err:
            if attempt == tries:
                tried = f"{err} (tried {tries} times in {time.monotonic() - started:.0f} s)"
                raise type(err)(tried, err.remedy) from None
            time.sleep(delay * random.uniform(0.8, 1.2))
            delay *= 2


def _sync_one(journal: Journal, settings: Settings, tracking_uri: str | None) -> SyncResult:
    from labclient.store.transport import LazyTransport
    from labclient.tracking.sender import Sender

    meta = journal.meta
    journal.open_for_append()
    events, files, size, end, _ = _summary(journal)
    result = SyncResult(meta["local_name"], events=events, files=files, file_bytes=size)
    if end is None:  # the training process died before it could end the run
        last = max((event.get("timestamp", 0) for event, _ in journal.read_all()), default=0) or meta["created_ms"]
        reason = f"the training process (pid {meta.get('pid')} on {meta.get('host')}) ended without finishing the run"
        journal.append(
            [
                {"type": "tag", "key": RECOVERED_TAG, "value": reason},
                {"type": "end", "status": "KILLED", "end_time": last},
            ]
        )
        result.recovered = True
    target = resolve_target(settings, tracking_uri or meta["uri"])
    sender = Sender(journal, LazyTransport(target))
    _send_with_retries(sender)
    result.name, result.status, result.warnings = sender.run_name, sender.ended_with or end, sender.warnings
    journal.retire(keep=settings.journal_keep)
    return result
