"""The run journal: every log call lands here, on local disk, before anything is sent anywhere.

    <home>/journal/<local id>/
        meta.json     team, target, local name, start time, tags (written once, before any event)
        events.jsonl  one JSON line per event, numbered by "seq" and checksummed (labclient/journal_lines.py):
                      start (a copy of meta.json), metric, param, tag, artifact, draft, end
        files/<n>/    copies of logged artifacts, made at log time, so the caller may delete its own file
        state.json    the run on the tracking store once it has one: experiment id, run number, run id
        acked.json    the highest "seq" the store acknowledged, and the byte offset just after it
        lock          flock held by the process that writes or sends the journal; the kernel drops it when
                      that process dies, even by SIGKILL, which is how `labclient sync` tells a crash. The
                      holder writes who it is into the file, so others can say what holds a run.

Each call appends its lines with one write() to the page cache, so a crash of the process loses
nothing that a log call returned; fsync (against a crash of the machine) runs in batches on a
thread of the recorder, and before each round of the sender process. A torn last line is ignored on
read. A failed write is cut off again (ftruncate), so a full disk never leaves a half line in the
middle of the journal. A folder appears only complete (it is made under a hidden name and renamed),
and leaves the same way: a journal that was sent is renamed away while its lock is still held, so a
second `labclient sync` either finds it whole or not at all. A lost or damaged meta.json is rebuilt
from the start event.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from labclient.errors import DiskFull, JournalError, JournalVanished, LabError
from labclient.files import atomic_write, fsync_dir, lock_owner
from labclient.tracking.journal_lines import (  # noqa: F401  (re-exported)
    FORMAT,
    LEGACY_FORMATS,
    _encode,
    decode_line,
    encode_line,
    meta_from_start_event,
    new_meta,
    start_order,
    valid_meta,
)

SYNCED = "synced"  # <home>/journal/synced/: events of sent runs, kept only with LAB_JOURNAL_KEEP=1
CREATING = ".creating-"  # a journal being made: hidden until it is complete
RETIRED = ".retired-"  # a sent journal on its way out: hidden, then removed
READ_CHUNK = 1 << 20
_COPY_CHUNK = 1 << 20


def _write_fd(fd: int, data: bytes) -> None:
    """The one place bytes reach the events file (tests replace it to simulate a full disk)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _disk_error(err: OSError, where: str) -> LabError:
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFull(
            where,
            "free some disk space; everything logged before is kept in the journal, and `labclient sync` sends it",
        )
    return JournalError(f"cannot write {where}: {err.strerror or err}", "check the disk and LAB_HOME")


def write_json_atomic(path: Path, data: dict, durable: bool = False) -> None:
    try:
        atomic_write(path, json.dumps(data), durable=durable, mode=0o644)
    except OSError as err:
        raise _disk_error(err, str(path)) from None


class Journal:
    def __init__(self, root: Path, meta: dict[str, Any]):
        self.root = Path(root)
        self.meta = meta
        self.checked = meta.get("format") not in LEGACY_FORMATS  # its lines carry checksums
        self.seq = 0  # the last sequence number written
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._size = 0
        self._dirty = False
        self._files = 0
        self._mutex = threading.Lock()

    # --- creating and opening ----------------------------------------------------------------
    @classmethod
    def create(cls, journal_dir: Path, meta: dict[str, Any]) -> Journal:
        """A new journal, locked by this process, with meta.json and the start event in place."""
        journal_dir = Path(journal_dir)
        final = journal_dir / meta["local_id"]
        journal = cls(journal_dir / f"{CREATING}{meta['local_id']}", meta)
        try:
            (journal.root / "files").mkdir(parents=True)
        except OSError as err:
            raise _disk_error(err, f"the journal folder {final}") from None
        try:
            if not journal.try_lock("training"):
                raise JournalError(f"the journal {final} is in use", "report this as a bug")
            write_json_atomic(journal.root / "meta.json", meta, durable=True)
            journal._open_events()
            journal.seq = -1  # the start is event 0: the run's own events are numbered from 1, as before it existed
            journal.append([{"type": "start", "meta": meta}])  # meta.json can be rebuilt from this line
            os.fsync(journal._fd)
            os.rename(journal.root, final)
            journal.root = final
            fsync_dir(journal_dir)
        except OSError as err:
            journal.discard()
            raise _disk_error(err, f"the journal folder {final}") from None
        except BaseException:
            journal.discard()
            raise
        return journal

    @classmethod
    def open(cls, root: Path) -> Journal:
        """A journal written before (by this or another process); not locked, not writable yet. A missing or
        damaged meta.json is rebuilt from the start event; JournalVanished if the folder is gone."""
        root = Path(root)
        try:
            meta = json.loads((root / "meta.json").read_text(encoding="utf-8"))
            why = None if valid_meta(meta) else "meta.json lacks the run's team, target or local id"
        except FileNotFoundError:
            if not root.is_dir():
                raise JournalVanished(f"the journal {root} is gone") from None
            meta, why = None, "meta.json is missing"
        except (OSError, ValueError) as err:
            meta, why = None, f"meta.json is unreadable ({type(err).__name__}: {err})"
        if why is None:
            return cls(root, meta)
        meta = meta_from_start_event(root / "events.jsonl")
        if meta is None:
            if not root.is_dir():
                raise JournalVanished(f"the journal {root} is gone")
            raise JournalError(
                f"{why}, and events.jsonl does not begin with the run's start, so the run cannot be told where to go",
                f"restore {root / 'meta.json'} from a backup, or move the folder "
                "out of the journal once you no longer need its events",
            )
        try:
            write_json_atomic(root / "meta.json", meta, durable=True)
        except LabError:
            pass  # a full disk: the copy in memory serves this time, the start event stays for the next
        return cls(root, meta)

    def open_for_append(self) -> None:
        """Continue a journal (sync marks a crashed run's end): cut a torn tail, find the last number. A last
        event that lost only its newline is complete: the newline is put back, not the event cut."""
        last_seq, end = 0, 0
        for event, offset in self.read_all():
            last_seq, end = event["seq"], offset
        self.seq = last_seq
        with open(self.events_path, "r+b") as handle:
            handle.truncate(end)
            if end:
                handle.seek(end - 1)
                if handle.read(1) != b"\n":
                    handle.write(b"\n")
        self._open_events()

    def _open_events(self) -> None:
        self._fd = os.open(self.events_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._size = os.fstat(self._fd).st_size

    # --- where things are ------------------------------------------------------------------------
    @property
    def events_path(self) -> Path:
        return self.root / "events.jsonl"

    @property
    def local_id(self) -> str:
        return self.meta["local_id"]

    # --- locking: the writer (or one sync) holds it while it lives -------------------------------
    def try_lock(self, holder: str | None = None) -> bool:
        """Take the lock; `holder` ("training", "sync") says what holds it, for the others to read. False when
        another process holds it, or when the folder was renamed away by a sync that sent it (see `vanished`)."""
        if self._lock_fd is not None:
            return True
        try:
            fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(fd).st_ino != os.stat(self.root / "lock").st_ino:
                raise FileNotFoundError  # locked after its sender renamed it away: it is not here any more
        except OSError:
            os.close(fd)
            return False
        self._lock_fd = fd
        if holder:
            said = json.dumps({"by": holder, "pid": os.getpid(), "host": socket.gethostname()}).encode()
            try:  # written over the last holder's words, then cut to length: never an empty file to read
                os.pwrite(fd, said, 0)
                os.ftruncate(fd, len(said))
            except OSError:
                pass  # a full disk: the others cannot say what holds it, which is no reason not to hold it
        return True

    @property
    def vanished(self) -> bool:
        """The folder is gone: a sync sent the run and removed it."""
        return not self.root.is_dir()

    def holder(self, patience_s: float = 2.0) -> dict[str, Any]:
        """What holds the lock, as it said when it took it: {"by": "training" or "sync", "pid", "host", "held"}.
        The kernel knows which process holds it (/proc/locks); one that has just taken it may not have said
        so yet, so the file is read again for up to `patience_s` until it names that process. "held" is False
        when the lock turned out to be free after all (its holder let go a moment ago). A journal of an older
        format says nothing, and was then held by its training process."""
        deadline = time.monotonic() + patience_s
        while True:
            known, owner = lock_owner(self.root / "lock")
            try:
                said = json.loads((self.root / "lock").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                said = None
            if known and owner is None:
                return {**(said if isinstance(said, dict) else {}), "held": False}
            if isinstance(said, dict) and (owner is None or said.get("pid") == owner):
                return {**said, "held": True}
            if time.monotonic() > deadline:
                training = owner is None or owner == self.meta.get("pid")
                return {
                    "by": "training" if training else "another process",
                    "pid": owner or self.meta.get("pid"),
                    "host": self.meta.get("host"),
                    "held": True,
                }
            time.sleep(0.02)

    def in_use(self) -> bool:
        """True while another live process (or another Journal of this one) writes or sends this journal."""
        if self._lock_fd is not None:
            return False
        if self.try_lock():
            self.unlock()
            return False
        return not self.vanished

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # --- writing ---------------------------------------------------------------------------------
    def append(self, events: list[dict[str, Any]]) -> int:
        """Number the events and write them with one write(); returns the last number."""
        with self._mutex:
            first = self.seq + 1
            data = b"".join([encode_line(first + index, event) for index, event in enumerate(events)])
            try:
                _write_fd(self._fd, data)
            except OSError as err:
                os.ftruncate(self._fd, self._size)  # a half-written line must not stay in the middle
                raise _disk_error(err, f"the run journal {self.events_path}") from None
            self._size += len(data)
            self._dirty = True
            self.seq = first + len(events) - 1
            return self.seq

    def add_file(self, source: Path, artifact_path: str | None) -> dict[str, Any]:
        """Copy a file into the journal, hashing it on the way; returns its artifact event (not yet appended)."""
        source = Path(source)
        with self._mutex:
            self._files += 1
            folder = self.root / "files" / f"{self._files:05d}"
        target = folder / source.name
        digest, size = hashlib.sha256(), 0
        with open(source, "rb") as src:  # a missing source is the caller's error, raised as it is
            try:
                folder.mkdir(parents=True, exist_ok=True)
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    while chunk := src.read(_COPY_CHUNK):
                        digest.update(chunk)
                        _write_fd(fd, chunk)
                        size += len(chunk)
                    os.fsync(fd)  # the event line that names it must never outlive its content
                finally:
                    os.close(fd)
            except OSError as err:
                shutil.rmtree(folder, ignore_errors=True)
                raise _disk_error(err, f"a copy of {source.name} into the run journal") from None
        file = str(target.relative_to(self.root))
        return {
            "type": "artifact",
            "file": file,
            "artifact_path": artifact_path,
            "sha256": digest.hexdigest(),
            "size": size,
        }

    def persist(self) -> None:
        """fsync what was written since the last call (the recorder calls this every fraction of a second)."""
        with self._mutex:  # fsync itself runs outside the lock, so log calls never wait for the disk
            fd = self._fd if self._dirty else None
            self._dirty = False
        if fd is not None:
            os.fsync(fd)

    # --- reading ---------------------------------------------------------------------------------
    def read(self, offset: int = 0, max_bytes: int = READ_CHUNK) -> list[tuple[dict[str, Any], int]]:
        """Readable events from `offset` on, each with the offset just after it (see `scan`)."""
        return self.scan(offset, max_bytes)[0]

    def scan(self, offset: int = 0, max_bytes: int = READ_CHUNK) -> tuple[list[tuple[dict[str, Any], int]], int]:
        """Readable events from `offset` on, and the offset after the last whole line looked at. A damaged
        line is left out: the gap in "seq" it leaves is how the sender tells and reports it. An unfinished
        last line is left out too, unless it is a whole event that lacks only its newline."""
        try:
            with open(self.events_path, "rb") as handle:
                handle.seek(offset)
                data = handle.read(max_bytes)
        except FileNotFoundError:
            return [], offset
        *lines, tail = data.split(b"\n")
        if not lines and tail and len(data) == max_bytes:  # one line longer than a chunk: read on until its end
            return self.scan(offset, max_bytes * 4)
        events, position = [], offset
        for line in lines:
            position += len(line) + 1
            event = decode_line(line, self.checked) if line.strip() else None
            if event is not None:
                events.append((event, position))
        if tail and len(data) < max_bytes:  # the end of the file
            event = decode_line(tail, self.checked)
            if event is not None:
                position += len(tail)
                events.append((event, position))
        return events, position

    def read_all(self, offset: int = 0) -> Iterator[tuple[dict[str, Any], int]]:
        while True:
            chunk, end = self.scan(offset)
            yield from chunk
            if end == offset:
                return
            offset = end

    def acked(self) -> tuple[int, int]:
        try:
            data = json.loads((self.root / "acked.json").read_text(encoding="utf-8"))
            return int(data["seq"]), int(data["offset"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0, 0

    def mark_acked(self, seq: int, offset: int) -> None:
        # not fsync'd: a lost mark only means events are sent again, and sending is idempotent
        write_json_atomic(self.root / "acked.json", {"seq": seq, "offset": offset})

    def state(self) -> dict[str, Any]:
        try:
            return json.loads((self.root / "state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def save_state(self, state: dict[str, Any]) -> None:
        write_json_atomic(self.root / "state.json", state, durable=True)

    # --- the end -----------------------------------------------------------------------------
    def _close_events(self) -> None:
        with self._mutex:
            if self._fd is not None:
                try:
                    os.fsync(self._fd)
                except OSError:
                    pass
                os.close(self._fd)
                self._fd = None

    def close(self) -> None:
        self._close_events()
        self.unlock()

    def retire(self, keep: bool = False) -> None:
        """Everything was acknowledged: remove the journal, or keep its events (without file copies). It is
        renamed away before the lock is let go, so no other process can take the lock of a sent journal."""
        self._close_events()
        if keep:
            synced = self.root.parent / SYNCED
            synced.mkdir(exist_ok=True)
            target = synced / self.root.name
        else:
            target = self.root.parent / f"{RETIRED}{self.root.name}-{os.getpid()}"
        os.replace(self.root, target)
        self.root = target
        self.unlock()
        shutil.rmtree(target / "files" if keep else target, ignore_errors=True)

    def discard(self) -> None:
        """A run that never started (its start was refused): nothing in it is worth keeping."""
        self.close()
        shutil.rmtree(self.root, ignore_errors=True)
