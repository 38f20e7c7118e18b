"""Files that hold keys (the demo provider's signing key, any secret Consilium generates itself):
readable by the service's user only (0600), whatever the process umask, written atomically."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_MODE = 0o600


def write_private_file(path: Path, data: bytes) -> None:
    """Create or replace ``path`` with ``data``, mode 0600 from the first byte on (the file is
    never readable by others, not even between creation and a chmod)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)  # a leftover of a crash may have any mode: never reuse it
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    try:
        os.fchmod(fd, PRIVATE_MODE)  # O_CREAT's mode is filtered by the umask, never widened
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    tmp.replace(path)


def read_private_file(path: Path) -> bytes:
    """The content of a key file; a file that others may read (copied in, restored from a
    backup) is narrowed to 0600 first."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("%s was readable by others (mode %o); narrowed to 0600", path, mode)
        path.chmod(PRIVATE_MODE)
    return path.read_bytes()
