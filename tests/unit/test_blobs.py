from __future__ import annotations

import pytest

from tunehouse.store.blobs import LocalBlobStore


def test_blob_appears_only_when_complete(tmp_path):
    store = LocalBlobStore(tmp_path)
    with store.writer("files/a") as writer:
        writer.write(b"hello ")
        writer.write(b"world")
        assert not store.exists("files/a")
    assert store.path("files/a").read_bytes() == b"hello world"
    assert writer.size == 11 and len(writer.sha256) == 64


def test_failed_write_leaves_nothing(tmp_path):
    store = LocalBlobStore(tmp_path)
    with pytest.raises(RuntimeError):
        with store.writer("files/b") as writer:
            writer.write(b"half")
            raise RuntimeError("client went away")
    assert not store.exists("files/b")
    assert list((tmp_path / ".partial").iterdir()) == []


def test_partial_writes_from_a_crash_are_discarded(tmp_path):
    LocalBlobStore(tmp_path)  # makes the .partial folder a crash would leave a file in
    (tmp_path / ".partial" / "tmpabc").write_bytes(b"half a file")
    assert LocalBlobStore(tmp_path).discard_partial_writes() == 1


def test_keys_cannot_escape_the_store(tmp_path):
    with pytest.raises(ValueError):
        LocalBlobStore(tmp_path).path("../outside")
