"""files.py: whole-or-nothing writes and a file's sha256, shared by the config, the cache, the journal and data."""

from __future__ import annotations

import hashlib
import os
import stat

import pytest

from labclient.files import atomic_write, sha256_file


def test_a_write_replaces_the_file_whole(tmp_path):
    path = tmp_path / "ref"
    atomic_write(path, "old")
    atomic_write(path, b"new bytes")
    assert path.read_bytes() == b"new bytes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ref"]  # no temporary file left behind


def test_a_failed_write_keeps_the_old_content_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "config.toml"
    atomic_write(path, "team = 'blue'\n")

    class Exploding(str):
        def encode(self, *args):
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        atomic_write(path, Exploding("team = 'red'\n"))
    assert path.read_text() == "team = 'blue'\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]


def test_modes_parents_and_durability(tmp_path):
    secret = tmp_path / "deep" / "er" / "token"
    atomic_write(secret, "s3cret", make_parents=True, durable=True)
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600  # private unless asked otherwise
    public = tmp_path / "meta.json"
    atomic_write(public, "{}", mode=0o644)
    assert stat.S_IMODE(os.stat(public).st_mode) == 0o644
    with pytest.raises(FileNotFoundError):
        atomic_write(tmp_path / "missing" / "x", "y")  # parents only on request: a vanished folder stays gone


def test_sha256_of_a_file_larger_than_one_read(tmp_path):
    data = os.urandom(3 * (1 << 20) + 17)
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
