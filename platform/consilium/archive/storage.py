"""Files of the archive: written once, atomically, durably; addressed by their content.

A stored file's path is derived from the SHA-256 of its bytes (``<study>/<sha256>.dcm``), so a
file is never rewritten in place: a new version of an instance is a new file, and two writers of
the same SOP instance can never interleave.

Writing, and why each step:

1. write a temporary file in ``.tmp/`` (same file system) and fsync it;
2. *link* it to its final path and fsync the directory: the file is now durable where the index
   will point;
3. the caller indexes it (one transaction) and acknowledges;
4. the caller :func:`settle` s the write: the temporary name is removed.

Step 2's directory fsync may be deferred (``sync_directory=False``) to the caller, who must then
call :func:`sync_directories` on ``StoredFile.directories`` before the index commit: the ingest's
group commit syncs each directory once for all the instances of a round.

The temporary name, which encodes the final path, is the journal: if the process dies between
2 and 4, :func:`resolve_pending` at the next start finds it and removes the final file unless
the index references it. So a crash leaves neither a half-written file nor an unindexed one, and
an acknowledged instance always has both its file and its index row.

With fsync on, step 1 writes with ``O_DIRECT`` where the file system allows it (``direct=True``,
the default): the bytes go from one reused, page-aligned buffer per thread straight to the disk
instead of being copied into new page-cache pages. Measured on the reference VM (ext4 on
virtio): 512 KB written and fsynced in 0.55 ms instead of 1.7 ms, of which 1.1 ms was CPU spent
faulting in fresh page-cache pages. A file written so is not in the page cache until read.
File systems without direct I/O (EINVAL at open) fall back to buffered writes.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import mmap
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

TMP_SUFFIX = ".part"
TMP_DIR = ".tmp"
_HOST = socket.gethostname().replace(".", "_")


@dataclass(frozen=True)
class StoredFile:
    relative_path: str
    size: int
    sha256: str
    pending: Path | None = None  # the journal entry, until settled
    created: bool = False  # False: the same content was already there
    directories: tuple[Path, ...] = ()  # still to be fsynced (``sync_directory=False``)


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


# Study folders whose own entry (in its parent, and the parent's in the grandparent) this
# process has made durable. Whoever sees a folder may not be the one who created it (another
# thread or process may still be about to sync its parents), so each process syncs a folder's
# parents once itself before it relies on the folder: two extra fsyncs per study and process.
_durable_dirs: set[Path] = set()
_durable_lock = threading.Lock()


def sync_directories(directories: set[Path] | list[Path] | tuple[Path, ...]) -> None:
    """Make the entries linked into ``directories`` (study folders) durable: one fsync each,
    plus the parent and grandparent the first time this process relies on a folder."""
    for directory in directories:
        _fsync_dir(directory)
        with _durable_lock:
            known = directory in _durable_dirs
        if not known:
            _fsync_dir(directory.parent)
            _fsync_dir(directory.parent.parent)
            with _durable_lock:
                if len(_durable_dirs) > 4096:
                    _durable_dirs.clear()
                _durable_dirs.add(directory)


# -- direct I/O ------------------------------------------------------------------------------

_DIRECT_ALIGN = 4096  # memory address, file offset and length (covers 512 B and 4 KB sectors)
_DIRECT_BUFFER = 4 << 20  # per thread; a bigger file streams through it
_direct_unsupported: set[Path] = set()  # storage roots whose file system refused O_DIRECT
_local = threading.local()


def _direct_buffer() -> mmap.mmap:
    buffer: mmap.mmap | None = getattr(_local, "buffer", None)
    if buffer is None:  # anonymous mmap: page aligned, reused by every write of this thread
        buffer = mmap.mmap(-1, _DIRECT_BUFFER)
        _local.buffer = buffer
    return buffer


def _open_direct(path: Path, root: Path) -> int | None:
    """``path`` created for direct writes, or None where the file system has no direct I/O."""
    if root in _direct_unsupported or not hasattr(os, "O_DIRECT"):
        return None
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DIRECT, 0o640)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        log.info("no direct I/O on the file system of %s; buffered writes", root)
        _direct_unsupported.add(root)
        return None


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        data = data[os.write(fd, data) :]


def _write_direct(fd: int, chunks: list[bytes | memoryview], size: int) -> None:
    """Write ``chunks`` through the thread's aligned buffer in whole aligned blocks; the last
    block is padded with zeros, then the file is cut to ``size``."""
    buffer = _direct_buffer()
    view = memoryview(buffer)
    filled = 0
    try:
        for chunk in chunks:
            data = memoryview(chunk).cast("B")
            while data:
                take = min(len(data), _DIRECT_BUFFER - filled)
                view[filled : filled + take] = data[:take]
                filled += take
                data = data[take:]
                if filled == _DIRECT_BUFFER:
                    _write_all(fd, view)
                    filled = 0
        if filled:
            padded = -(-filled // _DIRECT_ALIGN) * _DIRECT_ALIGN
            view[filled:padded] = bytes(padded - filled)
            _write_all(fd, view[:padded])
    finally:
        view.release()
    if size % _DIRECT_ALIGN:
        os.ftruncate(fd, size)


def _write_buffered(fd: int, chunks: list[bytes | memoryview], size: int) -> None:
    written = os.writev(fd, chunks)
    if written < size:  # a short write (rare): finish chunk by chunk
        _write_all(fd, memoryview(b"".join(chunks))[written:])


def _journal_name(relative: str) -> str:
    return f"{_HOST}.{os.getpid()}.{threading.get_ident()}.{relative.replace('/', '!')}{TMP_SUFFIX}"


def _parse_journal_name(name: str) -> tuple[str, int, str] | None:
    """(host, pid, relative path) of a journal entry."""
    if not name.endswith(TMP_SUFFIX):
        return None
    parts = name[: -len(TMP_SUFFIX)].split(".", 3)
    if len(parts) != 4 or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1]), parts[3].replace("!", "/")


def write_atomic(
    root: Path,
    chunks: list[bytes | memoryview],
    sha256: str,
    study_uid: str,
    fsync: bool = True,
    sync_directory: bool = True,
    direct: bool = True,
) -> StoredFile:
    """Make ``chunks`` (the whole file) durable at its content address under ``root``.

    Idempotent: if the content is already there, nothing is written (and nothing is pending).
    With ``sync_directory=False`` the file's bytes are durable on return but its directory entry
    is not: the caller passes ``directories`` to :func:`sync_directories` before indexing it.
    """
    relative = content_path(sha256, study_uid)
    target = root / relative
    size = sum(len(c) for c in chunks)
    directory = target.parent
    # the same content linked by another writer: its bytes are durable (fsynced before the
    # link), its directory entry perhaps not yet (that writer's commit round may come later)
    linked_by_other = StoredFile(relative, size, sha256,
                                 directories=(directory,) if fsync and not sync_directory else ())
    if target.exists() and target.stat().st_size == size:
        return linked_by_other
    created_dir = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    if created_dir:  # (re)created: its entry in the parent is not durable, whatever we knew
        with _durable_lock:
            _durable_dirs.discard(directory)
    tmp_dir = root / TMP_DIR
    tmp_dir.mkdir(exist_ok=True)
    tmp = tmp_dir / _journal_name(relative)
    # direct I/O only pays with fsync: without it, a buffered write returns before the disk
    fd = _open_direct(tmp, root) if fsync and direct else None
    writer = _write_direct if fd is not None else _write_buffered
    if fd is None:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    try:
        try:
            writer(fd, chunks, size)
        except OSError as exc:  # direct I/O refused at write time (alignment): buffered
            if writer is not _write_direct or exc.errno != errno.EINVAL:
                raise
            log.info("direct write refused on %s (%s); buffered writes", root, exc)
            _direct_unsupported.add(root)
            os.close(fd)
            fd = -1
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
            _write_buffered(fd, chunks, size)
        if fsync:
            os.fsync(fd)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    try:
        os.link(tmp, target)
    except FileExistsError:  # a concurrent writer of the same content won the race
        tmp.unlink(missing_ok=True)
        return linked_by_other
    if fsync and not sync_directory:
        return StoredFile(relative, size, sha256, pending=tmp, created=True,
                          directories=(directory,))
    if fsync:
        _fsync_dir(directory)
        if created_dir:  # the new study folders must survive a crash as well
            _fsync_dir(directory.parent)
            _fsync_dir(directory.parent.parent)
    return StoredFile(relative, size, sha256, pending=tmp, created=True)


def settle(stored: StoredFile) -> None:
    """The write is indexed (or deliberately dropped): forget its journal entry."""
    if stored.pending is not None:
        stored.pending.unlink(missing_ok=True)


def discard(root: Path, stored: StoredFile) -> None:
    """Remove a file this write created (refused after writing), then settle it."""
    if stored.created:
        (root / stored.relative_path).unlink(missing_ok=True)
    settle(stored)


def _alive(host: str, pid: int) -> bool:
    if host != _HOST:
        return True  # another machine's writer on shared storage: not ours to judge
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # our own pid: a previous process that had it is gone (resolve runs before any write)
    return pid != os.getpid()


def resolve_pending(root: Path, is_indexed: Callable[[str], bool]) -> tuple[int, int]:
    """After a crash: for each journal entry of a dead writer, keep the final file if the index
    references it, otherwise delete it (it was never acknowledged). Returns (kept, removed)."""
    tmp_dir = root / TMP_DIR
    kept = removed = 0
    if not tmp_dir.exists():
        return kept, removed
    for entry in tmp_dir.iterdir():
        parsed = _parse_journal_name(entry.name)
        if parsed is None:
            entry.unlink(missing_ok=True)
            continue
        host, pid, relative = parsed
        if _alive(host, pid):
            continue
        final = root / relative
        if final.exists() and not is_indexed(relative):
            final.unlink()
            removed += 1
            log.warning("removed %s: written but never indexed before a crash", relative)
        else:
            kept += 1
        entry.unlink(missing_ok=True)
    return kept, removed
