"""What the journal asks of the file system beyond reading and writing: who holds a lock, a durable rename."""

from __future__ import annotations

import os
from pathlib import Path


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
