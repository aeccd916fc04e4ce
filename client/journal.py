"""The run journal: every log call lands here, on local disk, before anything is sent anywhere.

    <home>/journal/<local id>/
        meta.json     team, target, local name, start time, tags (written once, before any event)
        events.jsonl  one JSON object per line, numbered by "seq": metric, param, tag, artifact, draft, end
        files/<n>/    copies of logged artifacts, made at log time, so the caller may delete its own file
        state.json    the run on the tracking store once it has one: experiment id, run number, run id
        acked.json    the highest "seq" the store acknowledged, and the byte offset just after it
        lock          flock held by the process that writes the journal; the kernel drops it when that
                      process dies, even by SIGKILL, which is how `labclient sync` tells a crash

Each call appends its lines with one write() to the page cache, so a crash of the process loses
nothing that a log call returned; fsync (against a crash of the machine) runs in batches on a
thread of the recorder, and before each round of the sender process. A torn last line is ignored on
read. A failed write is cut off again (ftruncate), so a full disk never leaves a half line in the
middle of the journal.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import math
import os
import secrets
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator

from labclient.errors import DiskFull, LabError

FORMAT = "labjournal/1"
SYNCED = "synced"  # <home>/journal/synced/: events of sent runs, kept only with LAB_JOURNAL_KEEP=1
READ_CHUNK = 1 << 20
_COPY_CHUNK = 1 << 20


class JournalError(LabError):
    """The journal folder cannot be written or read."""


def _write_fd(fd: int, data: bytes) -> None:
    """The one place bytes reach the events file (tests replace it to simulate a full disk)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


_METRIC_KEYS: dict[str, str] = {}  # JSON-escaped metric names, so the hot path formats a line without json.dumps


def _encode(seq: int, event: dict[str, Any]) -> str:
    """One journal line. Metrics, by far the most frequent, are formatted directly (5x faster than json.dumps)."""
    if event["type"] == "metric":
        key = _METRIC_KEYS.get(event["key"])
        if key is None:
            key = json.dumps(event["key"])
            if len(_METRIC_KEYS) < 10_000:
                _METRIC_KEYS[event["key"]] = key
        value = event["value"]
        text = repr(value) if math.isfinite(value) else json.dumps(value)  # repr of a finite float is valid JSON
        return f'{{"seq":{seq},"type":"metric","key":{key},"value":{text},"timestamp":{event["timestamp"]},"step":{event["step"]}}}'
    return json.dumps({"seq": seq, **event}, separators=(",", ":"))


def _disk_error(err: OSError, where: str) -> LabError:
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFull(where, "free some disk space; everything logged before is kept in the journal, and "
                               "`labclient sync` sends it")
    return JournalError(f"cannot write {where}: {err.strerror or err}", "check the disk and LAB_HOME")


def write_json_atomic(path: Path, data: dict, durable: bool = False) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(data, handle)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise _disk_error(err, str(path)) from None


def new_meta(team: str, uri: str, kind: str, tags: dict[str, Any], offline: bool) -> dict[str, Any]:
    suffix = secrets.token_hex(4)
    return {
        "format": FORMAT,
        "local_id": f"{time.strftime('%Y%m%d-%H%M%S')}-{suffix}",
        "local_name": f"{team}/local-{suffix}",
        "team": team,
        "uri": uri,
        "kind": kind,
        "offline": offline,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "created_ms": int(time.time() * 1000),
        "tags": {str(key): str(value) for key, value in (tags or {}).items()},
    }


class Journal:
    def __init__(self, root: Path, meta: dict[str, Any]):
        self.root = Path(root)
        self.meta = meta
        self.seq = 0  # the last sequence number written
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._size = 0
        self._dirty = False
        self._files = 0
        self._mutex = threading.Lock()

    # --- creating and opening ----------------------------------------------------------------
    @classmethod
    def create(cls, journal_dir: Path, meta: dict[str, Any]) -> "Journal":
        root = Path(journal_dir) / meta["local_id"]
        try:
            (root / "files").mkdir(parents=True)
        except OSError as err:
            raise _disk_error(err, f"the journal folder {root}") from None
        journal = cls(root, meta)
        if not journal.try_lock():
            raise JournalError(f"the journal {root} is in use", "report this as a bug")
        write_json_atomic(root / "meta.json", meta, durable=True)
        journal._open_events()
        return journal

    @classmethod
    def open(cls, root: Path) -> "Journal":
        """A journal written before (by this or another process); not locked, not writable yet."""
        try:
            meta = json.loads((Path(root) / "meta.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise JournalError(f"the journal {root} has no readable meta.json ({err})", "delete the folder") from None
        return cls(Path(root), meta)

    def open_for_append(self) -> None:
        """Continue a journal (sync marks a crashed run's end): cut a torn tail, find the last number."""
        last_seq, end = 0, 0
        for event, offset in self.read_all():
            last_seq, end = event["seq"], offset
        self.seq = last_seq
        with open(self.events_path, "r+b") as handle:
            handle.truncate(end)
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

    # --- locking: the writer holds it while it lives -------------------------------------------
    def try_lock(self) -> bool:
        if self._lock_fd is not None:
            return True
        fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    def in_use(self) -> bool:
        """True while another live process (or another Journal of this one) writes this journal."""
        if self._lock_fd is not None:
            return False
        if self.try_lock():
            self.unlock()
            return False
        return True

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # --- writing ---------------------------------------------------------------------------------
    def append(self, events: list[dict[str, Any]]) -> int:
        """Number the events and write them with one write(); returns the last number."""
        with self._mutex:
            first = self.seq + 1
            lines = [_encode(first + index, event) for index, event in enumerate(events)]
            data = ("\n".join(lines) + "\n").encode("utf-8")
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
        return {"type": "artifact", "file": file, "artifact_path": artifact_path, "sha256": digest.hexdigest(), "size": size}

    def persist(self) -> None:
        """fsync what was written since the last call (the recorder calls this every fraction of a second)."""
        with self._mutex:  # fsync itself runs outside the lock, so log calls never wait for the disk
            fd = self._fd if self._dirty else None
            self._dirty = False
        if fd is not None:
            os.fsync(fd)

    # --- reading ---------------------------------------------------------------------------------
    def read(self, offset: int = 0, max_bytes: int = READ_CHUNK) -> list[tuple[dict[str, Any], int]]:
        """Complete events from `offset` on, each with the offset just after it; a torn line is skipped."""
        try:
            with open(self.events_path, "rb") as handle:
                handle.seek(offset)
                data = handle.read(max_bytes)
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n")
        if end < 0:
            if len(data) == max_bytes:  # one line longer than a chunk: read on until its end
                return self.read(offset, max_bytes * 4)
            return []
        events, position = [], offset
        for line in data[: end + 1].splitlines(keepends=True):
            position += len(line)
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and isinstance(event.get("seq"), int):
                events.append((event, position))
        return events

    def read_all(self, offset: int = 0) -> Iterator[tuple[dict[str, Any], int]]:
        while True:
            chunk = self.read(offset)
            if not chunk:
                return
            yield from chunk
            offset = chunk[-1][1]

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
    def close(self) -> None:
        with self._mutex:
            if self._fd is not None:
                try:
                    os.fsync(self._fd)
                except OSError:
                    pass
                os.close(self._fd)
                self._fd = None
        self.unlock()

    def retire(self, keep: bool = False) -> None:
        """Everything was acknowledged: remove the journal, or keep its events (without file copies)."""
        self.close()
        shutil.rmtree(self.root / "files", ignore_errors=True)
        if keep:
            synced = self.root.parent / SYNCED
            synced.mkdir(exist_ok=True)
            os.replace(self.root, synced / self.root.name)
        else:
            shutil.rmtree(self.root, ignore_errors=True)

    def discard(self) -> None:
        """A run that never started (its start was refused): nothing in it is worth keeping."""
        self.close()
        shutil.rmtree(self.root, ignore_errors=True)


def pending_journals(journal_dir: Path) -> list[Journal]:
    """Journals not yet fully sent, oldest first; folders without a readable meta.json are skipped."""
    found = []
    if not Path(journal_dir).is_dir():
        return found
    for folder in sorted(Path(journal_dir).iterdir()):
        if folder.name == SYNCED or not folder.is_dir() or not (folder / "meta.json").is_file():
            continue
        try:
            found.append(Journal.open(folder))
        except JournalError:
            continue
    return found
