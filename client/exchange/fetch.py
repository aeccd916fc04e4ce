"""Model exchange, the Python API the CLI wraps: `fetch` another team's run into the verified cache,
`load_model` it without running their code, and `push` weights trained elsewhere as a new run.

Everything goes through MlflowClient calls (search, get_run, download_artifacts, get_metric_history), so it
works unchanged on the embedded store and against a labserver.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from labclient.config import Settings, get_settings
from labclient.errors import (
    ArchitectureError,
    IntegrityError,
    InvalidReference,
    NoWeights,
    TrackingError,
)
from labclient.exchange.cache import CacheEntry, ModelCache, store_key
from labclient.store import refs
from labserver.names import display_name, identity
from labserver.tags import WEIGHTS_BYTES_TAG

Progress = Callable[[str, int, int], None]  # (artifact path, bytes so far, total bytes)
WEIGHTS_ARTIFACT = "model/model.safetensors"
SIDE_FILES = ("model/spec.json", "model/config.json")
HISTORY_KEYS = ("epoch_train_cost", "epoch_test_cost", "epoch_test_accuracy", "epoch_time_s", "step_train_cost")
MAX_HISTORY_POINTS = 2000
MAX_SIDE_FILE_BYTES = 1 << 20  # spec.json and config.json: a few kB each, read whole into memory
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class FetchResult:
    entry: CacheEntry
    downloaded: bool
    seconds: float
    bytes_downloaded: int = 0

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def run_id(self) -> str:
        return self.entry.run_id

    @property
    def path(self) -> Path:
        return self.entry.path

    def load_model(self):
        return load_model(self.entry)


@dataclass
class LoadedModel:
    """A fetched model rebuilt from its spec: an eval-mode torch module, never the author's code."""

    module: Any
    spec: dict
    config: dict
    cost: str
    entry: CacheEntry


# --- fetch ---------------------------------------------------------------------------------------
def fetch(
    reference: str,
    *,
    force: bool = False,
    tracking_uri: str | None = None,
    settings: Settings | None = None,
    on_progress: Progress | None = None,
) -> FetchResult:
    """Fetch a run's weights, spec, config and metadata into the cache, verified; a cached copy is re-used."""
    from labclient.store.target import resolve_target

    settings = settings or get_settings()
    cache = ModelCache.from_settings(settings)
    target = resolve_target(settings, tracking_uri)
    store = store_key(target.uri)
    started = time.perf_counter()
    hit = None if force else _pinned_hit(cache, reference, store)
    if hit is not None:
        cache.mark_last_fetched(hit.run_id)
        return FetchResult(hit, False, time.perf_counter() - started)
    from labclient.store.client import open_client

    client = open_client(target)
    run = refs.resolve(client, reference)
    run_id = run.info.run_id
    team, number = identity(client, run)
    ref = _ref_to_write(reference, team, number, store)
    with cache.lock(run_id):
        entry = None if force else cache.entry(run_id)
        if entry is not None:
            cache.verify(entry)
            downloaded = 0
            if ref:
                cache.write_ref(ref, run_id)
        else:
            entry = _download(client, cache, run, (team, number), target.uri, on_progress, ref)
            downloaded = entry.size
    cache.mark_last_fetched(run_id)
    return FetchResult(entry, downloaded > 0, time.perf_counter() - started, downloaded)


def _pinned_hit(cache: ModelCache, reference: str, store: str) -> CacheEntry | None:
    """`red/run-42` or a run id already in the cache: answered without the server (but re-verified)."""
    try:
        parsed = refs.parse(reference)
    except InvalidReference:
        return None
    run_id = cache.run_id_for(parsed, store) if parsed.is_pinned else None
    entry = cache.entry(run_id) if run_id else None
    if entry is not None:
        cache.verify(entry)
    return entry


def _ref_to_write(reference: str, team: str | None, number: int | None, store: str) -> tuple[str, str, int] | None:
    """The ref for the reference the user resolved: only `TEAM/run-N`, and only when the store's own facts (the
    run's experiment, the number the server gave it) say the run is exactly that."""
    parsed = refs.parse(reference)
    if parsed.selector != "number":
        return None
    if (team, number) != (parsed.team, parsed.number):
        raise IntegrityError(
            f"the store answered {reference} with a run it does not record as {reference}",
            "report this to the server admin",
        )
    return store, team, number


@dataclass
class _Plan:
    weights: str
    expected: dict[str, str]  # artifact path -> sha256 recorded at upload
    sizes: dict[str, int]


def _download(
    client,
    cache: ModelCache,
    run,
    identity: tuple,
    tracking_uri: str,
    on_progress: Progress | None,
    ref: tuple[str, str, int] | None,
) -> CacheEntry:
    from labclient.models.fitting import fit_tensors
    from labclient.models.loading import inspect_weights

    name = display_name(*identity, run.info.run_id)
    with cache.temp_dir() as scratch:
        plan = _plan(client, run, scratch, name)
        verified = {}
        for artifact_path, expected in plan.expected.items():
            local = _download_file(
                client, run.info.run_id, artifact_path, scratch / "files", plan.sizes.get(artifact_path, 0), on_progress
            )
            verified[artifact_path] = cache.verify_download(local, expected, f"{name}: {artifact_path}")
        weights = inspect_weights(verified[plan.weights].path)  # hostile or broken files stop here, outside the cache
        spec_file = verified.get("model/spec.json")
        spec = (_read_json(spec_file.path, "model/spec.json") if spec_file else None) or weights.spec
        if spec is not None:
            fit_tensors(spec, weights.tensors)  # so does a spec that does not fit the weights
        meta = _metadata(client, run, identity, plan, weights, tracking_uri)
        return cache.commit(run.info.run_id, verified, meta, ref)


def _plan(client, run, scratch: Path, name: str) -> _Plan:
    manifest = _manifest(client, run.info.run_id, scratch)
    tagged = run.data.tags.get(refs.WEIGHTS_TAG)
    weights = (
        WEIGHTS_ARTIFACT
        if tagged
        else next((path for path in manifest if path.lower().endswith(_weight_suffixes())), None)
    )
    if weights is None:
        others = _other_runs_with_weights(client, run)
        raise NoWeights(
            f"{name} has no weights (a comparison, or a run that ended before saving them)",
            others or "pick a run made by `labclient train` or `labclient push`",
        )
    recorded = manifest.get(weights, {}).get("sha256")
    if tagged and recorded and recorded != tagged:
        raise IntegrityError(
            f"{name}: manifest.json and the run's tag record different sha256 for {weights}",
            "the stored run was altered; ask its team to upload it again",
        )
    expected = {weights: tagged or recorded}
    expected.update({path: manifest[path].get("sha256") for path in SIDE_FILES if path in manifest})
    for path, sha in expected.items():
        _check_artifact_path(path)
        if not isinstance(sha, str) or not _SHA256.match(sha):
            raise IntegrityError(
                f"{name}: no valid sha256 is recorded for {path}",
                "only runs logged by labclient can be verified; upload the weights with `labclient push`",
            )
    sizes = {path: int(info.get("size", 0)) for path, info in manifest.items() if isinstance(info, dict)}
    sizes.setdefault(weights, int(run.data.tags.get(WEIGHTS_BYTES_TAG, 0) or 0))
    return _Plan(weights, expected, sizes)


def _weight_suffixes() -> tuple[str, ...]:
    from labclient.models.loading import WEIGHT_SUFFIXES

    return WEIGHT_SUFFIXES


def _manifest(client, run_id: str, scratch: Path) -> dict[str, dict]:
    from mlflow.exceptions import MlflowException

    folder = scratch / "manifest"
    folder.mkdir()
    try:
        path = client.download_artifacts(run_id, "manifest.json", str(folder))
        files = json.loads(Path(path).read_text(encoding="utf-8")).get("files", {})
    except MlflowException:
        return {}
    except (OSError, ValueError, AttributeError):
        raise IntegrityError(
            f"the manifest.json of run {run_id} is unreadable", "ask its team to upload the run again"
        ) from None
    return files if isinstance(files, dict) else {}


def _check_artifact_path(path: str) -> None:
    parts = path.split("/")
    if path.startswith(("/", "\\")) or ".." in parts or "" in parts or "\\" in path:
        raise IntegrityError(
            f"refusing artifact path {path!r}: it points outside the run", "ask its team to upload the run again"
        )


def _other_runs_with_weights(client, run) -> str | None:
    team, _ = identity(client, run)
    if not team:
        return None
    names = [refs.run_name(team, number) for number, _, has_weights in refs.team_runs(client, team) if has_weights][:5]
    return f"runs of {team} with weights: {', '.join(names)}" if names else None


def _download_file(
    client, run_id: str, artifact_path: str, folder: Path, size: int, on_progress: Progress | None
) -> Path:
    from mlflow.exceptions import MlflowException

    folder.mkdir(exist_ok=True)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # ours is a rich bar in the CLI
    try:
        if on_progress is None:
            return Path(client.download_artifacts(run_id, artifact_path, str(folder)))
        local = _download_watched(client, run_id, artifact_path, folder, size, on_progress)
        on_progress(artifact_path, local.stat().st_size, size)
        return local
    except (MlflowException, OSError) as err:  # OSError covers dropped connections and full disks
        raise TrackingError(
            f"downloading {artifact_path} of run {run_id} failed: {' '.join(str(err).split())[:300]}",
            "check the server and try again",
        ) from None


def _download_watched(client, run_id: str, artifact_path: str, folder: Path, size: int, on_progress: Progress) -> Path:
    """Download on a daemon thread while this one reports the growing file; Ctrl-C here stops at once
    (the temporary folder is removed, and a daemon thread never holds the process open)."""
    import threading

    outcome: dict = {}

    def work():
        try:
            outcome["path"] = Path(client.download_artifacts(run_id, artifact_path, str(folder)))
        except BaseException as err:  # handed to the waiting thread
            outcome["error"] = err

    worker = threading.Thread(target=work, name="lab-fetch", daemon=True)
    worker.start()
    partial = folder / artifact_path
    while worker.is_alive():
        on_progress(artifact_path, partial.stat().st_size if partial.exists() else 0, size)
        worker.join(0.1)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["path"]


def _metadata(client, run, identity: tuple, plan: _Plan, weights, tracking_uri: str) -> dict[str, Any]:
    tags = run.data.tags
    team, number = identity
    tensors = {name: _describe_tensor(value) for name, value in weights.tensors.items()}
    return {
        "name": display_name(team, number, run.info.run_id),
        "team": team,
        "number": number,
        "experiment_id": run.info.experiment_id,
        "status": run.info.status,
        "start_time": run.info.start_time,
        "end_time": run.info.end_time,
        "tracking_uri": tracking_uri,
        "params": dict(run.data.params),
        "metrics": dict(run.data.metrics),
        "tags": dict(tags),
        "history": _histories(client, run),
        "weights": plan.weights,
        "weights_format": weights.format,
        "tensors": tensors,
        "parameters": sum(_count(shape) for _, shape in tensors.values()),
        "fetched_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _describe_tensor(value) -> tuple[str, list[int]]:
    if isinstance(value, tuple):  # (dtype, shape) straight from a safetensors header
        return str(value[0]), [int(dim) for dim in value[1]]
    return str(value.dtype).replace("torch.", ""), [int(dim) for dim in value.shape]


def _count(shape: list[int]) -> int:
    total = 1
    for dim in shape:
        total *= dim
    return total


def _histories(client, run) -> dict[str, list[list[float]]]:
    histories = {}
    for key in HISTORY_KEYS:
        if key in run.data.metrics:
            points = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
            histories[key] = _downsample(points)
    return histories


def _downsample(points: list[tuple[int, float]]) -> list[list[float]]:
    if len(points) <= MAX_HISTORY_POINTS:
        return [[step, value] for step, value in points]
    size = -(-len(points) // MAX_HISTORY_POINTS)
    blocks = [points[start : start + size] for start in range(0, len(points), size)]
    return [[block[-1][0], sum(value for _, value in block) / len(block)] for block in blocks]


def uncache(
    references: tuple[str, ...] = (),
    *,
    remove_all: bool = False,
    tracking_uri: str | None = None,
    settings: Settings | None = None,
) -> tuple[int, int]:
    """Remove cached runs (TEAM/run-N of the current store, or run ids), or all of them, and every blob no other
    run uses; returns (runs removed, bytes freed). Nothing is removed unless every reference is in the cache."""
    from labclient.errors import ConfigError, NotCached
    from labclient.store.target import resolve_target

    settings = settings or get_settings()
    cache = ModelCache.from_settings(settings)
    if not references and not remove_all:
        raise ConfigError("nothing to remove", "name runs (TEAM/run-N or run ids) or pass --all")
    store = store_key(resolve_target(settings, tracking_uri).uri)
    run_ids = [entry.run_id for entry in cache.entries()] if remove_all else []
    for reference in references:
        run_id = cache.run_id_for(refs.parse(reference), store)
        if run_id is None or not cache.snapshot(run_id).exists():
            raise NotCached(f"{reference} is not in the cache", "see `labclient cache ls`")
        run_ids.append(run_id)
    unique = list(dict.fromkeys(run_ids))
    return len(unique), sum(cache.remove(run_id) for run_id in unique)


# --- loading a fetched model ---------------------------------------------------------------------
def load_model(entry: CacheEntry) -> LoadedModel:
    from labclient.models.loading import build_model, read_weights
    from labclient.models.spec import cost_of

    weights = read_weights(entry.weights_path, entry.meta.get("weights_format"))
    spec = _json_file(entry, "model/spec.json") or weights.spec
    if spec is None:
        raise ArchitectureError(
            f"{entry.name} has weights but no model spec",
            "its team can upload them again with `labclient push FILE --arch SPEC`",
        )
    config = _json_file(entry, "model/config.json") or weights.config or {}
    if weights.network is not None and not config:
        config = {"trainer": "push", "config": {"cost": weights.network.cost}}
    module = build_model(spec, weights.tensors)
    return LoadedModel(module, spec, config, cost_of(spec, config, entry.meta.get("params")), entry)


def _json_file(entry: CacheEntry, artifact_path: str) -> dict | None:
    path = entry.file(artifact_path)
    return None if path is None else _read_json(path, artifact_path)


def _read_json(path: Path, artifact_path: str) -> dict | None:
    """A run's JSON side file, or None where it is unreadable; one too large to be a spec or config is refused."""
    try:
        size = path.stat().st_size
        if size > MAX_SIDE_FILE_BYTES:
            raise ArchitectureError(
                f"{artifact_path} is {size:,} bytes, too large for a model spec or config",
                "ask its team to upload the run again",
            )
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None
