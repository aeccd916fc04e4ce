"""The file-system helpers every layer shares: whole-or-nothing writes, a file's sha256, who holds a lock, a durable
rename."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


def atomic_write(
    path: Path, data: bytes | str, *, durable: bool = False, mode: int | None = None, make_parents: bool = False
) -> None:
    """Write a file whole or not at all: a reader sees the old content or the new, never a torn file.

    The data go to a temporary file in the same folder (mode 0600 unless `mode` says otherwise), which then
    replaces `path`; `durable` fsyncs it first, for files that must survive a power cut."""
    path = Path(path)
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def git_commit(folder: Path) -> str | None:
    """The commit checked out where `folder` lies, if it is in a git work tree and git is installed."""
    import subprocess

    try:
        result = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and len(commit) == 40 else None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def lock_owner(path: Path) -> tuple[bool, int | None]:
    """(known, pid): the process holding the flock on `path` as Linux lists it in /proc/locks, None if nobody
    does; known is False where /proc/locks cannot be read (another system)."""
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as handle:
            listed = handle.read()
    except OSError:
        return False, None
    try:
        stat = os.stat(path)
    except OSError:
        return True, None  # gone: nobody holds it here
    where = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
    for line in listed.splitlines():  # "1: FLOCK  ADVISORY  WRITE 2563 00:2f:1234 0 EOF"
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == where and fields[4].isdigit():
            return True, int(fields[4])
    return True, None


def fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
