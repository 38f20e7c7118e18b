"""The files of consult cases (attachments and conclusion PDFs), kept by content.

A file is ``<files_dir>/<sha256>``, written atomically (temporary file, fsync, rename, fsync of
the folder) before the database row that names it is committed. A crash in between leaves an
unreferenced file, never a row without its file; :func:`sweep_partial_files` removes the
temporary files a crash left behind.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from pathlib import Path

from consilium.archive import storage
from consilium.consult.context import DocumentsConfig

log = logging.getLogger(__name__)

PARTIAL_MAX_AGE = 3600.0  # seconds: a write goes from its temporary name to its own in ms


def write_file(config: DocumentsConfig, data: bytes) -> str:
    """Keep ``data`` at ``<files_dir>/<sha256>`` durably; idempotent. Returns the hash."""
    sha256 = hashlib.sha256(data).hexdigest()
    target = config.files_dir / sha256
    if target.exists() and target.stat().st_size == len(data):
        return sha256
    config.files_dir.mkdir(parents=True, exist_ok=True)
    tmp = config.files_dir / f".{sha256}.{os.getpid()}.{threading.get_ident()}.part"
    with tmp.open("wb") as out:
        out.write(data)
        out.flush()
        if config.fsync:
            os.fsync(out.fileno())
    os.replace(tmp, target)
    if config.fsync:  # the entry (and the folder's own, the first time this process needs it)
        storage.sync_directories([config.files_dir])
    return sha256


def read_file(config: DocumentsConfig, sha256: str) -> bytes | None:
    """The file's bytes, or None when it is missing or does not match its hash (logged)."""
    path = config.files_dir / sha256
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    if hashlib.sha256(data).hexdigest() != sha256:
        log.error("document file %s does not match its hash; not served", path)
        return None
    return data


def sweep_partial_files(files_dir: Path, older_than: float = PARTIAL_MAX_AGE) -> int:
    """Remove temporary files that a crash left behind (never referenced: the row is written
    after the rename). By age, not by process id: several hosts may share the folder."""
    if not files_dir.is_dir():
        return 0
    limit = time.time() - older_than
    removed = 0
    for path in files_dir.glob(".*.part"):
        try:
            if path.stat().st_mtime < limit:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    if removed:
        log.info("removed %d temporary files left in %s by an interrupted write", removed,
                 files_dir)
    return removed
