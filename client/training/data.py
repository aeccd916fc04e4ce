"""Datasets: MNIST in IDX format (data directory, local cache, verified download) and scikit-learn's
bundled 8x8 digits, which needs no network at all."""

from __future__ import annotations

import gzip
import hashlib
import struct
import tempfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from labclient.errors import DatasetError
from labclient.files import atomic_write

DATASETS = {
    "mnist": "MNIST handwritten digits, 28x28, IDX files from --data-dir, the local cache, or a verified download",
    "digits": "scikit-learn's bundled 8x8 digits (1,797 images), works offline with no download",
}

# sha256 of the *decompressed* canonical files: gzip headers differ between mirrors, the content does not.
MNIST_FILES = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
_IDX_MAGIC = {1: 0x00000801, 3: 0x00000803}


@dataclass(frozen=True)
class Dataset:
    name: str
    train_x: np.ndarray  # float32, N x C x H x W, scaled to [0, 1]
    train_y: np.ndarray  # int64 class indices
    test_x: np.ndarray
    test_y: np.ndarray
    num_classes: int
    fingerprint: str
    source: str
    canonical: bool

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])

    def describe(self) -> dict[str, object]:
        return {
            "dataset": self.name,
            "dataset_train_size": len(self.train_y),
            "dataset_test_size": len(self.test_y),
            "dataset_input_shape": "x".join(map(str, self.input_shape)),
            "dataset_num_classes": self.num_classes,
            "dataset_fingerprint": self.fingerprint[:16],
            "dataset_canonical": self.canonical,
        }


def load_dataset(name: str, data_dir: Path | None, cache_dir: Path, mirrors: tuple[str, ...] = ()) -> Dataset:
    if name == "digits":
        return _load_digits()
    if name == "mnist":
        return load_mnist(data_dir, cache_dir, mirrors)
    raise DatasetError(f"unknown dataset {name!r}", f"choose one of: {', '.join(DATASETS)}")


def load_mnist(data_dir: Path | None, cache_dir: Path, mirrors: tuple[str, ...] = ()) -> Dataset:
    """Read from data_dir if given, else from the cache; fetch what is missing into that folder."""
    folder = Path(data_dir).expanduser() if data_dir else cache_dir / "datasets" / "mnist"
    missing = [stem for stem in MNIST_FILES if _find_file(folder, stem) is None]
    if missing:
        _download(folder, missing, mirrors)
    digests, arrays = {}, {}
    for stem in MNIST_FILES:
        raw = _read_raw(_find_file(folder, stem))
        digests[stem] = hashlib.sha256(raw).hexdigest()
        arrays[stem] = _parse_idx(raw, stem)
    canonical = all(digests[stem] == MNIST_FILES[stem] for stem in MNIST_FILES)
    if data_dir is None and not canonical:
        bad = next(stem for stem in MNIST_FILES if digests[stem] != MNIST_FILES[stem])
        raise DatasetError(
            f"cached MNIST file {bad} fails its sha256 check",
            f"delete {folder} and run again to re-download, or pass --data-dir",
        )
    train_x, train_y = _pair(arrays, "train")
    test_x, test_y = _pair(arrays, "t10k")
    return Dataset(
        name="mnist",
        train_x=train_x,
        train_y=train_y,
        test_x=test_x,
        test_y=test_y,
        num_classes=10,
        fingerprint=_combine(digests.values()),
        source=str(folder),
        canonical=canonical,
    )


def _pair(arrays: dict[str, np.ndarray], split: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = arrays[f"{split}-images-idx3-ubyte"], arrays[f"{split}-labels-idx1-ubyte"]
    if len(images) != len(labels):
        raise DatasetError(
            f"MNIST {split} files disagree: {len(images)} images but {len(labels)} labels",
            "the data directory mixes files from different sets; replace them",
        )
    if labels.size and labels.max() > 9:
        raise DatasetError(f"MNIST {split} labels go up to {labels.max()}, expected 0-9", "replace the labels file")
    return (images.astype(np.float32) / 255.0)[:, None, :, :], labels.astype(np.int64)


def _find_file(folder: Path, stem: str) -> Path | None:
    for base in (folder, folder / "MNIST" / "raw"):
        for candidate in (base / f"{stem}.gz", base / stem):
            if candidate.is_file():
                return candidate
    return None


def _read_raw(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        raise DatasetError(f"{path} is corrupt ({err})", "delete it and run again to re-download it") from None


def _parse_idx(raw: bytes, stem: str) -> np.ndarray:
    ndim = 3 if "images" in stem else 1
    header_size = 4 + 4 * ndim
    if len(raw) < header_size or struct.unpack(">I", raw[:4])[0] != _IDX_MAGIC[ndim]:
        raise DatasetError(f"{stem} is not an IDX file with {ndim} dimensions", "replace it with the MNIST original")
    dims = struct.unpack(f">{ndim}I", raw[4:header_size])
    expected = int(np.prod(dims))
    if len(raw) - header_size != expected:
        raise DatasetError(
            f"{stem} is truncated or padded: header says {expected} bytes, file has {len(raw) - header_size}",
            "delete it and run again to re-download it",
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(dims)


def _download(folder: Path, stems: list[str], mirrors: tuple[str, ...]) -> None:
    _ensure_writable(folder)
    for stem in stems:
        errors = []
        for mirror in mirrors:
            try:
                _download_one(folder, stem, mirror.rstrip("/") + f"/{stem}.gz")
                break
            except (OSError, urllib.error.URLError, DatasetError) as err:
                errors.append(f"{mirror}: {getattr(err, 'reason', err)}")
        else:
            raise DatasetError(
                f"MNIST file {stem} is not in {folder} and could not be downloaded "
                f"({'; '.join(errors) or 'no mirror'})",
                "put the four IDX files there or pass --data-dir PATH, or train offline with --dataset digits",
            )


def _download_one(folder: Path, stem: str, url: str) -> None:
    with urllib.request.urlopen(url, timeout=30) as response:
        payload = response.read()
    try:
        raw = gzip.decompress(payload)
    except (OSError, EOFError, zlib.error) as err:
        raise DatasetError(f"download of {stem} is not gzip data ({err})") from None
    if hashlib.sha256(raw).hexdigest() != MNIST_FILES[stem]:
        raise DatasetError(f"download of {stem} failed its sha256 check")
    atomic_write(folder / f"{stem}.gz", payload)


def _ensure_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise DatasetError(
            f"data directory {folder} is not writable ({err.strerror or err})",
            "choose another with --data-dir or LAB_DATA_DIR",
        ) from None


def _load_digits() -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    labels = bunch.target.astype(np.int64)
    # a fixed split keeps runs comparable across teams: the last 20% is held out
    split = int(len(labels) * 0.8)
    return Dataset(
        name="digits",
        train_x=images[:split],
        train_y=labels[:split],
        test_x=images[split:],
        test_y=labels[split:],
        num_classes=10,
        fingerprint=_combine([hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()]),
        source="scikit-learn bundled digits",
        canonical=True,
    )


def _combine(digests) -> str:
    return hashlib.sha256("".join(digests).encode()).hexdigest()
