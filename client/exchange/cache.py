"""The local model cache, content-addressed in the style of huggingface_hub:

    <cache_dir>/models/
        blobs/<sha256>                      each file once, named by its content
        refs/<store>/<team>/run-<N>         the run id a run name points to on one tracking store (<store>: the
                                            first 16 hex digits of the sha256 of its URI)
        snapshots/<run_id>/<artifact path>  links (or copies, where links are impossible) into blobs/
        snapshots/<run_id>/run.json         run metadata and the sha256 of every file; written last, so a
                                            snapshot without it is incomplete and ignored
        last_fetched                        the run id `labclient compare` uses by default

A blob enters the cache only after its sha256 matched the one recorded at upload; it is written to a
temporary file first and moved into place with os.replace. Writers of one run serialise on a file lock,
and every change to the shared folders (blobs, links, refs, removal) holds the cache-wide lock.

A ref is written only for the reference a user resolved (`fetch red/run-42`), after the store confirmed that
name from facts no team can write (labclient/refs.py), and only after every part of its path was validated:
what a fetched run's tags say never decides where anything is written.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labclient.errors import CorruptCacheEntry, IntegrityError, NotCached, UnsafeCachePath
from labclient.files import atomic_write, sha256_file
from labserver.names import is_valid_team

CACHE_FORMAT = "labcache/1"
RUN_FILE = "run.json"
LOCK_TIMEOUT_S = 600
STALE_TEMP_S = 3600
RUN_ID = re.compile(r"[0-9a-f]{32}")


def store_key(tracking_uri: str) -> str:
    """The folder of one tracking store's refs: the same team name on two stores names two different runs."""
    return hashlib.sha256(tracking_uri.encode()).hexdigest()[:16]


@dataclass
class CacheEntry:
    run_id: str
    path: Path  # the snapshot folder
    meta: dict[str, Any]

    @property
    def name(self) -> str:
        return self.meta.get("name") or self.run_id

    @property
    def files(self) -> dict[str, dict[str, Any]]:
        return self.meta.get("files", {})

    @property
    def weights_path(self) -> Path:
        return self.path / self.meta["weights"]

    @property
    def size(self) -> int:
        return sum(int(info.get("size", 0)) for info in self.files.values())

    def file(self, artifact_path: str) -> Path | None:
        return self.path / artifact_path if artifact_path in self.files else None


@dataclass(frozen=True)
class VerifiedFile:
    """A downloaded file whose sha256 matched the recorded one; only these can be committed."""

    path: Path
    sha256: str
    size: int


class ModelCache:
    def __init__(self, root: Path):
        self.root = Path(root)

    @classmethod
    def from_settings(cls, settings) -> ModelCache:
        return cls(Path(settings.cache_dir).expanduser() / "models")

    # --- locations -------------------------------------------------------------------------------
    def blob(self, sha256: str) -> Path:
        return self.root / "blobs" / sha256

    def snapshot(self, run_id: str) -> Path:
        if not RUN_ID.fullmatch(str(run_id)):
            raise UnsafeCachePath(
                f"refusing to cache a run under the id {str(run_id)[:40]!r}", "report this to the server admin"
            )
        return self.root / "snapshots" / run_id

    def ref(self, store: str, team: str, number: int) -> Path:
        if not (
            re.fullmatch(r"[0-9a-f]{16}", store) and is_valid_team(team) and isinstance(number, int) and number > 0
        ):
            raise UnsafeCachePath(
                f"refusing to write a cache ref for {team!r}/{number!r}", "report this to the server admin"
            )
        return self.root / "refs" / store / team / f"run-{number}"

    # --- locks and temporary files -----------------------------------------------------------------
    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        from filelock import FileLock

        folder = self.root / ".locks"
        folder.mkdir(parents=True, exist_ok=True)
        with FileLock(str(folder / f"{name}.lock"), timeout=LOCK_TIMEOUT_S):
            yield

    @contextmanager
    def temp_dir(self) -> Iterator[Path]:
        """A scratch folder on the cache's own file system, so os.replace into blobs/ is atomic."""
        folder = self.root / ".tmp"
        folder.mkdir(parents=True, exist_ok=True)
        self._remove_stale_temps(folder)
        path = Path(tempfile.mkdtemp(dir=folder, prefix="fetch-"))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    @staticmethod
    def _remove_stale_temps(folder: Path) -> None:
        # left behind only by a killed process; anything this old is not in use
        cutoff = time.time() - STALE_TEMP_S
        for child in folder.iterdir():
            try:
                if child.stat().st_mtime < cutoff:
                    shutil.rmtree(child, ignore_errors=True)
            except OSError:
                pass

    # --- lookups -----------------------------------------------------------------------------------
    def run_id_for(self, reference, store: str) -> str | None:
        """The cached run a pinned reference (team/run-N or a run id) names on a store, without asking it."""
        if reference.selector == "run_id":
            return reference.run_id
        if reference.selector == "number":
            path = self.ref(store, reference.team, reference.number)
            try:
                return path.read_text().strip() or None
            except OSError:
                return None
        return None

    def entry(self, run_id: str) -> CacheEntry | None:
        """The complete snapshot of a run, or None; an unreadable run.json counts as corruption."""
        path = self.snapshot(run_id) / RUN_FILE
        if not path.is_file():
            return None
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
            if (
                meta.get("format") != CACHE_FORMAT
                or meta.get("run_id") != run_id
                or meta.get("weights") not in meta.get("files", {})
            ):
                raise ValueError("unexpected content")
        except (OSError, ValueError) as err:
            raise CorruptCacheEntry(
                f"the cached metadata of run {run_id} is unreadable ({err})",
                f"run `labclient fetch {run_id} --force`",
                run_id,
            ) from None
        return CacheEntry(run_id, path.parent, meta)

    def entries(self) -> list[CacheEntry]:
        folder = self.root / "snapshots"
        found = []
        for child in sorted(folder.iterdir()) if folder.is_dir() else []:
            try:
                entry = self.entry(child.name)
            except CorruptCacheEntry:
                entry = CacheEntry(child.name, child, {"name": f"{child.name} (corrupt)", "files": {}})
            if entry is not None:
                found.append(entry)
        return found

    def verify(self, entry: CacheEntry) -> None:
        """Re-hash every file of a snapshot; a mismatch raises CorruptCacheEntry with the re-fetch command."""
        for artifact_path, info in entry.files.items():
            path = entry.path / artifact_path
            problem = None
            if not path.is_file():
                problem = "is missing"
            elif sha256_file(path) != info["sha256"]:
                problem = "fails its sha256 check"
            if problem:
                raise CorruptCacheEntry(
                    f"the cached copy of {entry.name} is corrupt: {artifact_path} {problem}",
                    f"run `labclient fetch {entry.name} --force` to download it again",
                    entry.name,
                )

    def last_fetched(self) -> str | None:
        try:
            return (self.root / "last_fetched").read_text().strip() or None
        except OSError:
            return None

    # --- writing -----------------------------------------------------------------------------------
    @staticmethod
    def verify_download(path: Path, expected: str, label: str) -> VerifiedFile:
        """Hash a downloaded file; a mismatch is an IntegrityError and the file never enters the cache."""
        actual = sha256_file(path)
        if actual != expected:
            path.unlink(missing_ok=True)
            raise IntegrityError(
                f"{label} fails its integrity check: sha256 {actual[:16]}... is not the {expected[:16]}... recorded "
                "at upload",
                "the stored file was altered or damaged; ask its team to upload it again",
            )
        return VerifiedFile(path, actual, path.stat().st_size)

    def commit(
        self,
        run_id: str,
        downloads: dict[str, VerifiedFile],
        meta: dict[str, Any],
        ref: tuple[str, str, int] | None = None,
    ) -> CacheEntry:
        """Move verified downloads into blobs/, link them into the snapshot, then write run.json and, when the
        user resolved a numbered reference, its ref (store, team, number)."""
        files = {artifact_path: {"sha256": item.sha256, "size": item.size} for artifact_path, item in downloads.items()}
        snapshot = self.snapshot(run_id)
        ref_path = self.ref(*ref) if ref else None  # both validated before anything is written
        with self.lock("cache"):
            for artifact_path, item in downloads.items():
                blob = self.blob(item.sha256)
                blob.parent.mkdir(parents=True, exist_ok=True)
                os.replace(item.path, blob)
                self._link(blob, snapshot / artifact_path)
            meta = {**meta, "format": CACHE_FORMAT, "run_id": run_id, "files": files}
            atomic_write(
                snapshot / RUN_FILE, json.dumps(meta, indent=1, sort_keys=True, default=str), make_parents=True
            )
            if ref_path is not None:
                atomic_write(ref_path, run_id, make_parents=True)
        return CacheEntry(run_id, snapshot, meta)

    def write_ref(self, ref: tuple[str, str, int], run_id: str) -> None:
        """Point a resolved numbered reference at a run already in the cache."""
        path = self.ref(*ref)
        self.snapshot(run_id)  # validates the id
        with self.lock("cache"):
            atomic_write(path, run_id, make_parents=True)

    def mark_last_fetched(self, run_id: str) -> None:
        atomic_write(self.root / "last_fetched", run_id, make_parents=True)

    def _link(self, blob: Path, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        temp.unlink(missing_ok=True)
        try:
            os.symlink(os.path.relpath(blob, target.parent), temp)
        except (OSError, NotImplementedError):  # no symlinks here (Windows without developer mode): copy
            shutil.copyfile(blob, temp)
        os.replace(temp, target)

    # --- removal -----------------------------------------------------------------------------------
    def remove(self, run_id: str) -> int:
        """Delete a run's snapshot and ref, then every blob no snapshot uses; returns the bytes freed."""
        snapshot = self.snapshot(run_id)
        if not snapshot.exists():
            raise NotCached(f"run {run_id} is not in the cache", "see `labclient cache ls`")
        with self.lock("cache"):
            freed = _tree_size(snapshot, follow=False)
            shutil.rmtree(snapshot)
            self._drop_refs_to(run_id)
            if self.last_fetched() == run_id:
                (self.root / "last_fetched").unlink(missing_ok=True)
            return freed + self._collect_garbage()

    def _drop_refs_to(self, run_id: str) -> None:
        refs = self.root / "refs"
        for ref in refs.glob("*/*/*") if refs.is_dir() else []:
            if ref.is_file() and ref.read_text().strip() == run_id:
                ref.unlink()

    def _collect_garbage(self) -> int:
        used = set()
        for entry in self.entries():
            used.update(info["sha256"] for info in entry.files.values())
        freed = 0
        blobs = self.root / "blobs"
        for blob in blobs.iterdir() if blobs.is_dir() else []:
            if blob.name not in used:
                freed += blob.stat().st_size
                blob.unlink()
        return freed


def _tree_size(folder: Path, follow: bool) -> int:
    total = 0
    for path in folder.rglob("*"):
        if path.is_file() and (follow or not path.is_symlink()):
            total += path.stat().st_size
    return total
