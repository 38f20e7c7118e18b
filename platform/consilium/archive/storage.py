"""Files of the archive: written once, atomically, durably; addressed by their content.

A stored file's path is derived from the SHA-256 of its bytes (``<study>/<sha256>.dcm``), so a
file is never rewritten in place: a new version of an instance is a new file, and two writers of
the same SOP instance can never interleave. Writing is: temporary file in ``.tmp/`` (same file
system), write, fsync, rename into place, fsync of the directory. The index is committed after
that and the instance is acknowledged after the commit, so an acknowledged instance always has
both its file and its index row. A crash can leave only temporaries (cleared at start) and, in
the short window between rename and commit, a file nobody references (``consilium fsck``).
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path

TMP_SUFFIX = ".part"
TMP_DIR = ".tmp"


@dataclass(frozen=True)
class StoredFile:
    relative_path: str
    size: int
    sha256: str


def content_path(sha256: str, study_uid: str) -> str:
    """``<study folder>/<sha256>.dcm``: a study's files together, each named by its content."""
    study = hashlib.sha1(study_uid.encode(), usedforsecurity=False).hexdigest()
    return f"{study[:2]}/{study[2:20]}/{sha256}.dcm"


def sha256_of(chunks: list[bytes | memoryview]) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(
    root: Path,
    chunks: list[bytes | memoryview],
    sha256: str,
    study_uid: str,
    fsync: bool = True,
) -> StoredFile:
    """Write ``chunks`` (the whole file) to its content address under ``root``.

    Idempotent: if the content is already there, nothing is written.
    """
    relative = content_path(sha256, study_uid)
    target = root / relative
    size = sum(len(c) for c in chunks)
    if target.exists() and target.stat().st_size == size:
        return StoredFile(relative, size, sha256)
    directory = target.parent
    created = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    tmp_dir = root / TMP_DIR
    tmp_dir.mkdir(exist_ok=True)
    tmp = tmp_dir / f"{sha256}.{os.getpid()}.{threading.get_ident()}{TMP_SUFFIX}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    try:
        written = os.writev(fd, chunks)
        if written < size:  # a short write (rare): finish chunk by chunk
            rest = memoryview(b"".join(chunks))[written:]
            while rest:
                rest = rest[os.write(fd, rest) :]
        if fsync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, target)
    if fsync:
        _fsync_dir(directory)
        if created:  # the new fan-out directories must survive a crash as well
            _fsync_dir(directory.parent)
            _fsync_dir(directory.parent.parent)
    return StoredFile(relative, size, sha256)


def remove_stale_temporaries(root: Path) -> int:
    """Delete temporary files a crash left behind (never acknowledged); return how many."""
    removed = 0
    tmp_dir = root / TMP_DIR
    if not tmp_dir.exists():
        return 0
    for tmp in tmp_dir.iterdir():
        tmp.unlink(missing_ok=True)
        removed += 1
    return removed


def read_file(root: Path, relative_path: str) -> bytes:
    return (root / relative_path).read_bytes()
