"""Storage writes: direct I/O and buffered writes leave the same bytes at the same address."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from consilium.archive import storage


def _chunks(size: int, seed: int) -> list[bytes | memoryview]:
    """A file as the ingest hands it over: a small meta part and a big dataset part."""
    data = hashlib.shake_256(seed.to_bytes(8, "little")).digest(size)
    return [data[:132 + seed % 300], memoryview(data)[132 + seed % 300 :]]


@pytest.mark.parametrize("size", [
    700,  # smaller than one aligned block
    4096 * 3,  # a whole number of blocks: no padding, no truncation
    524_288 + 1234,  # a 512x512 CT slice with its header
    (4 << 20) * 2 + 777,  # bigger than the thread's buffer: streamed through it
])
def test_direct_and_buffered_writes_store_identical_files(tmp_path: Path, size: int) -> None:
    for direct in (True, False):
        root = tmp_path / ("direct" if direct else "buffered")
        chunks = _chunks(size, size)
        digest = storage.sha256_of(chunks)
        stored = storage.write_atomic(root, chunks, digest, "1.2.3.4", fsync=True, direct=direct)
        storage.settle(stored)
        path = root / stored.relative_path
        data = path.read_bytes()
        assert len(data) == size == stored.size
        assert hashlib.sha256(data).hexdigest() == digest
        assert data == b"".join(bytes(c) for c in chunks)
        assert not any((root / storage.TMP_DIR).iterdir())  # the journal entry is gone
    assert (tmp_path / "direct" / stored.relative_path).read_bytes() == (
        tmp_path / "buffered" / stored.relative_path).read_bytes()


def test_direct_writes_from_many_threads_keep_each_file_intact(tmp_path: Path) -> None:
    """Each thread has its own aligned buffer: concurrent writers never mix their bytes."""
    results: dict[int, tuple[str, storage.StoredFile]] = {}
    errors: list[BaseException] = []

    def write(seed: int) -> None:
        try:
            chunks = _chunks(300_000 + seed * 4099, seed)
            digest = storage.sha256_of(chunks)
            results[seed] = (digest, storage.write_atomic(tmp_path, chunks, digest, f"1.2.{seed}"))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(seed,)) for seed in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(results) == 16
    for digest, stored in results.values():
        assert hashlib.sha256((tmp_path / stored.relative_path).read_bytes()).hexdigest() == digest


def test_the_file_system_of_the_tests_takes_direct_io(tmp_path: Path) -> None:
    """The speed of C-STORE depends on it (bench/README): CI's disk must not fall back."""
    (tmp_path / "probe").mkdir()
    fd = storage._open_direct(tmp_path / "probe" / "f", tmp_path)
    assert fd is not None
    os.close(fd)
