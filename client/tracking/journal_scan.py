"""Finding the journals that wait to be sent, and the folders among them that cannot be read."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from labclient.tracking.journal import (
    RETIRED,
    SYNCED,
    Journal,
    JournalError,
    JournalVanished,
    start_order,
)


@dataclass
class UnreadableJournal:
    """A journal folder whose run cannot be read: `status` and `sync` list it, with what to do."""

    path: Path
    reason: str
    remedy: str | None

    def one_line(self) -> str:
        return f"{self.path}: {self.reason}" + (f" ({self.remedy})" if self.remedy else "")


def scan_journals(journal_dir: Path) -> tuple[list[Journal], list[UnreadableJournal]]:
    """Journals not yet fully sent, in the order their runs started, and the folders that cannot be read."""
    journals: list[Journal] = []
    unreadable: list[UnreadableJournal] = []
    journal_dir = Path(journal_dir)
    if not journal_dir.is_dir():
        return journals, unreadable
    for folder in sorted(journal_dir.iterdir()):
        if folder.name.startswith(RETIRED):  # sent, and its sender died before removing it
            shutil.rmtree(folder, ignore_errors=True)
        if folder.name == SYNCED or folder.name.startswith(".") or not folder.is_dir():
            continue
        try:
            journals.append(Journal.open(folder))
        except JournalVanished:
            continue
        except JournalError as err:
            unreadable.append(UnreadableJournal(folder, str(err), err.remedy))
    journals.sort(key=lambda journal: (start_order(journal.meta), journal.root.name))
    return journals, unreadable


def pending_journals(journal_dir: Path) -> list[Journal]:
    """Journals not yet fully sent, oldest first (folders that cannot be read: see scan_journals)."""
    return scan_journals(journal_dir)[0]
