"""Blob storage (uploaded files, result files, later checkpoints) behind a small interface over a folder.

Writes are atomic: bytes go to a temp file, are fsynced, then renamed into place, so a crash never leaves
half a blob visible under its key. An object store can implement the same four methods later.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


class BlobWriter:
    """Streams bytes to a temp file while counting and hashing them."""

    def __init__(self, handle: BinaryIO, temp_path: Path) -> None:
        self._handle = handle
        self.temp_path = temp_path
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self._handle.write(chunk)
        self._hash.update(chunk)
        self.size += len(chunk)

    def flush(self) -> None:
        """Make the bytes written so far readable through `temp_path`."""
        self._handle.flush()

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()


class LocalBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._tmp = root / ".partial"
        self._tmp.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError(f"blob key escapes the store: {key!r}")
        return path

    @contextmanager
    def writer(self, key: str) -> Iterator[BlobWriter]:
        """Yield a writer; on normal exit the blob appears under `key` complete, on error not at all.

        The caller may inspect `writer.temp_path` before the block ends (e.g. to validate the bytes) and
        raise to discard them.
        """
        final = self.path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, temp_name = tempfile.mkstemp(dir=self._tmp)
        try:
            with os.fdopen(fd, "w+b") as handle:
                writer = BlobWriter(handle, Path(temp_name))
                yield writer
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp_name, final)
            _fsync_dir(final.parent)
        finally:
            if os.path.exists(temp_name):
                os.unlink(temp_name)

    def open(self, key: str) -> BinaryIO:
        return open(self.path(key), "rb")

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def delete(self, key: str) -> None:
        path = self.path(key)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)

    def discard_partial_writes(self) -> int:
        """Remove temp files a crash left behind; called at start-up. Returns how many were removed."""
        removed = 0
        for leftover in self._tmp.iterdir():
            leftover.unlink(missing_ok=True)
            removed += 1
        return removed


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
