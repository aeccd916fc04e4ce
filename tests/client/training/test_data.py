"""The MNIST loader: real IDX parsing, checksums, a cache, a verified download and clear errors."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import shutil
import threading
from functools import partial

import numpy as np
import pytest

from labclient.errors import DatasetError
from labclient.training import data


def test_reads_the_shared_split(mnist_dir, tmp_path):
    dataset = data.load_mnist(mnist_dir, tmp_path)
    assert dataset.train_x.shape == (8000, 1, 28, 28) and dataset.test_x.shape == (2000, 1, 28, 28)
    assert dataset.train_x.dtype == np.float32 and dataset.train_x.min() >= 0.0 and dataset.train_x.max() <= 1.0
    assert np.bincount(dataset.train_y).tolist() == [773, 905, 834, 803, 788, 723, 756, 813, 787, 818]
    assert np.bincount(dataset.test_y).tolist() == [207, 230, 198, 207, 194, 169, 202, 215, 187, 191]
    assert not dataset.canonical  # an 8,000/2,000 split is not the published MNIST


def test_canonical_checksums_match_the_real_test_set(mnist_t10k_dir):
    for stem in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        raw = gzip.decompress((mnist_t10k_dir / f"{stem}.gz").read_bytes())
        assert hashlib.sha256(raw).hexdigest() == data.MNIST_FILES[stem]
    labels = data._parse_idx(
        gzip.decompress((mnist_t10k_dir / "t10k-labels-idx1-ubyte.gz").read_bytes()), "t10k-labels-idx1-ubyte"
    )
    assert labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def test_digits_work_offline():
    dataset = data.load_dataset("digits", None, None)
    assert dataset.input_shape == (1, 8, 8) and len(dataset.train_y) + len(dataset.test_y) == 1797


def _copy(mnist_dir, folder):
    folder.mkdir()
    for path in mnist_dir.iterdir():
        shutil.copy(path, folder / path.name)
    return folder


def test_truncated_file_is_reported(mnist_dir, tmp_path):
    folder = _copy(mnist_dir, tmp_path / "copy")
    raw = gzip.decompress((folder / "t10k-labels-idx1-ubyte.gz").read_bytes())
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(raw[:-5]))
    with pytest.raises(DatasetError, match="truncated"):
        data.load_mnist(folder, tmp_path)


def test_corrupt_gzip_is_reported(mnist_dir, tmp_path):
    folder = _copy(mnist_dir, tmp_path / "copy")
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b\x08garbage")
    with pytest.raises(DatasetError, match="corrupt"):
        data.load_mnist(folder, tmp_path)


def test_mismatched_counts_are_reported(mnist_dir, mnist_t10k_dir, tmp_path):
    folder = _copy(mnist_dir, tmp_path / "copy")
    shutil.copy(mnist_t10k_dir / "t10k-labels-idx1-ubyte.gz", folder / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(DatasetError, match="disagree"):
        data.load_mnist(folder, tmp_path)


@pytest.fixture
def mirror(mnist_dir):
    """A real HTTP mirror on loopback serving the shared files."""
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(mnist_dir))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def _digests(folder):
    return {
        stem: hashlib.sha256(gzip.decompress((folder / f"{stem}.gz").read_bytes())).hexdigest()
        for stem in data.MNIST_FILES
    }


def test_download_verifies_and_caches(mirror, mnist_dir, tmp_path, monkeypatch):
    # the shared split stands in for the published files: make its digests the expected ones
    monkeypatch.setattr(data, "MNIST_FILES", _digests(mnist_dir))
    dataset = data.load_mnist(None, tmp_path, ("http://127.0.0.1:9/", mirror))
    assert dataset.canonical and len(dataset.train_y) == 8000
    cached = tmp_path / "datasets" / "mnist"
    assert sorted(p.name for p in cached.iterdir()) == sorted(f"{stem}.gz" for stem in data.MNIST_FILES)
    # the second load comes from the cache: no mirror needed
    assert data.load_mnist(None, tmp_path, ()).fingerprint == dataset.fingerprint
    # a cached file that changed is caught by its checksum
    (cached / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x01\x03"))
    with pytest.raises(DatasetError):
        data.load_mnist(None, tmp_path, ())


def test_download_with_wrong_checksum_leaves_nothing(mirror, tmp_path):
    with pytest.raises(DatasetError, match="could not be downloaded"):
        data.load_mnist(None, tmp_path, (mirror,))  # the shared split is not the published MNIST
    assert list((tmp_path / "datasets" / "mnist").iterdir()) == []
