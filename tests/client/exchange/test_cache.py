"""The content-addressed model cache: layout, verification, tampering, interruptions, concurrency, ls/rm."""

from __future__ import annotations

import hashlib
import json
import threading

import pytest
from mlflow.tracking import MlflowClient

from labclient.config import get_settings
from labclient.errors import CorruptCacheEntry, IntegrityError, TrackingError, UnsafePickle
from labclient.exchange import fetch as exchange
from labclient.exchange.cache import ModelCache, store_key
from tests.client.exchange_support import one_line_error, run_of

# every test reads the runs that the session's exchange_lab fixture trains (tests/client/conftest.py)
pytestmark = pytest.mark.slow


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _models(isolated_lab):
    return isolated_lab / "cache" / "models"


def _refs(isolated_lab, uri):
    """The refs of one tracking store: the same name on another store is another run."""
    return _models(isolated_lab) / "refs" / store_key(uri)


def test_layout_and_checksums(lab, isolated_lab):
    result = exchange.fetch("red/run-2")
    run = run_of(lab.uri, "red/run-2")
    root = _models(isolated_lab)
    assert result.downloaded and result.name == "red/run-2"
    assert (_refs(isolated_lab, lab.uri) / "red" / "run-2").read_text() == run.info.run_id
    assert [path.name for path in (root / "refs").iterdir()] == [store_key(lab.uri)]
    snapshot = root / "snapshots" / run.info.run_id
    assert result.path == snapshot
    weights = snapshot / "model" / "model.safetensors"
    assert weights.is_symlink() and weights.resolve().parent == (root / "blobs").resolve()
    assert _sha(weights) == weights.resolve().name == run.data.tags["lab.weights.sha256"]
    for blob in (root / "blobs").iterdir():
        assert _sha(blob) == blob.name
    meta = json.loads((snapshot / "run.json").read_text())
    assert meta["params"]["hidden"] == "[30]" and meta["metrics"]["test_accuracy"] == run.data.metrics["test_accuracy"]
    assert meta["tags"]["lab.hw.cpu.cores"] and len(meta["history"]["epoch_test_cost"]) == 2
    assert set(meta["files"]) == {"model/model.safetensors", "model/spec.json", "model/config.json"}
    assert meta["parameters"] == 64 * 30 + 30 + 30 * 10 + 10
    assert (root / "last_fetched").read_text() == run.info.run_id
    assert not list((root / ".tmp").iterdir())


def test_second_fetch_downloads_nothing(lab, monkeypatch):
    first = exchange.fetch("red/run-2")

    def no_download(*args, **kwargs):
        raise AssertionError("a cached run was downloaded again")

    monkeypatch.setattr(MlflowClient, "download_artifacts", no_download)
    for reference in ("red/run-2", first.run_id, "red/latest"):
        again = exchange.fetch(reference)
        assert not again.downloaded and again.run_id == first.run_id


def test_force_downloads_again(lab):
    exchange.fetch("red/run-1")
    assert exchange.fetch("red/run-1", force=True).downloaded


def test_tampered_blob_is_caught_and_refetch_repairs_it(lab, isolated_lab):
    result = exchange.fetch("red/run-1")
    blob = (result.path / "model" / "model.safetensors").resolve()
    blob.write_bytes(blob.read_bytes()[:-1] + b"\x00")
    with pytest.raises(CorruptCacheEntry) as caught:
        exchange.fetch("red/run-1")
    assert "fails its sha256 check" in str(caught.value) and "labclient fetch red/run-1 --force" in caught.value.remedy
    with pytest.raises(CorruptCacheEntry):
        exchange.fetch(result.run_id)
    repaired = exchange.fetch("red/run-1", force=True)
    assert (
        _sha(repaired.path / "model" / "model.safetensors")
        == run_of(lab.uri, "red/run-1").data.tags["lab.weights.sha256"]
    )


def test_cli_offers_to_refetch_a_corrupt_entry(cli, lab, monkeypatch):
    from labclient.cli import exchange as cli_exchange

    result = exchange.fetch("red/run-1")
    (result.path / "model" / "spec.json").resolve().write_text("{}")
    one_line_error(cli("fetch", "red/run-1"), "cached copy of red/run-1 is corrupt", "model/spec.json", "--force")
    monkeypatch.setattr(cli_exchange, "_interactive", lambda: True)
    answered = cli("fetch", "red/run-1", input="y\n")
    assert answered.exit_code == 0, answered.output
    assert "Download red/run-1 again now?" in answered.output and "downloaded and verified" in answered.output


def test_tampered_artifact_never_enters_the_cache(lab, isolated_lab):
    with pytest.raises(IntegrityError, match="mallory/run-1: model/model.safetensors fails its integrity check"):
        exchange.fetch("mallory/run-1")
    root = _models(isolated_lab)
    assert not list((root / "blobs").glob("*")) and not (root / "snapshots").exists()
    assert not list((root / ".tmp").iterdir())


def test_malicious_pickle_run_is_refused_and_nothing_runs(lab, isolated_lab):
    with pytest.raises(UnsafePickle, match="posix.system"):
        exchange.fetch("mallory/run-2")
    assert not lab.pwned_fetch.exists()
    assert not (_models(isolated_lab) / "snapshots").exists()


def test_interrupted_download_leaves_nothing(lab, isolated_lab, monkeypatch):
    real = MlflowClient.download_artifacts

    def dies_halfway(self, run_id, path, dst_path=None):
        if path.endswith("model.safetensors"):
            local = real(self, run_id, path, dst_path)
            with open(local, "r+b") as handle:
                handle.truncate(100)
            raise ConnectionError("connection reset by peer")
        return real(self, run_id, path, dst_path)

    monkeypatch.setattr(MlflowClient, "download_artifacts", dies_halfway)
    with pytest.raises(TrackingError, match="connection reset"):
        exchange.fetch("red/run-2")
    root = _models(isolated_lab)
    assert not (root / "snapshots").exists() and not (root / "refs").exists()
    assert not list((root / ".tmp").iterdir()) and not list((root / "blobs").glob("*"))
    monkeypatch.setattr(MlflowClient, "download_artifacts", real)
    assert exchange.fetch("red/run-2").downloaded


def test_tracking_errors_during_download_are_one_line(lab, monkeypatch):
    from mlflow.exceptions import MlflowException

    def refused(self, run_id, path, dst_path=None):
        raise MlflowException("503 Service Unavailable")

    monkeypatch.setattr(MlflowClient, "download_artifacts", refused)
    with pytest.raises(TrackingError, match="downloading model/model.safetensors of run .* failed: 503"):
        exchange.fetch("red/run-1")


def test_concurrent_fetches_download_once(lab, isolated_lab, monkeypatch):
    real, downloads, lock = MlflowClient.download_artifacts, [], threading.Lock()

    def counted(self, run_id, path, dst_path=None):
        with lock:
            downloads.append(path)
        return real(self, run_id, path, dst_path)

    monkeypatch.setattr(MlflowClient, "download_artifacts", counted)
    barrier, results, errors = threading.Barrier(4), [], []

    def worker():
        barrier.wait()
        try:
            results.append(exchange.fetch("blue/latest"))
        except Exception as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert sum(result.downloaded for result in results) == 1
    assert downloads.count("model/model.safetensors") == 1
    cache = ModelCache.from_settings(get_settings())
    cache.verify(cache.entry(results[0].run_id))


def test_progress_is_reported(lab):
    seen = []
    exchange.fetch("red/run-2", on_progress=lambda path, done, total: seen.append((path, done, total)))
    final = {path: (done, total) for path, done, total in seen}
    assert final["model/model.safetensors"][0] == final["model/model.safetensors"][1] > 0


def test_ls_and_rm_keep_shared_blobs(cli, lab, isolated_lab):
    red, blue = exchange.fetch("red/run-2"), exchange.fetch("blue/run-1")
    shared = (red.path / "model" / "spec.json").resolve()
    assert shared == (blue.path / "model" / "spec.json").resolve()  # same architecture, one blob
    listing = cli("cache", "ls")
    assert listing.exit_code == 0 and "red/run-2" in listing.output and "* blue/run-1" in listing.output
    removed = cli("cache", "rm", "red/run-2")
    assert removed.exit_code == 0 and "removed 1 run(s)" in removed.output
    root = _models(isolated_lab)
    assert not red.path.exists() and not (_refs(isolated_lab, lab.uri) / "red" / "run-2").exists()
    assert shared.exists() and not (root / "blobs" / red.entry.files["model/model.safetensors"]["sha256"]).exists()
    one_line_error(cli("cache", "rm", "red/run-2"), "not in the cache")
    assert cli("cache", "rm", "--all").exit_code == 0
    assert not list((root / "blobs").iterdir()) and "empty" in cli("cache", "ls").output
