"""A private PostgreSQL server for tests: its own cluster in a temporary folder, on a free port,
run as the ``postgres`` system user (initdb refuses root)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from tests.conftest import free_port


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError("PostgreSQL server binaries are missing: run .ci/run "
                           "(apt-get install postgresql)")
    return found[-1]


def _as_postgres(*args: str) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *args]
    return list(args)


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yields a SQLAlchemy URL of an empty database; stops and removes the cluster after."""
    root = tempfile.mkdtemp(prefix="consilium-pg-")
    data = os.path.join(root, "data")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    port = free_port()
    subprocess.run(_as_postgres(_bin("initdb"), "-D", data, "-A", "trust", "-U", "consilium",
                                "-E", "UTF8", "--locale=C.UTF-8"),
                   check=True, capture_output=True)
    subprocess.run(_as_postgres(_bin("pg_ctl"), "-D", data, "-w", "-l",
                                os.path.join(root, "log"), "-o",
                                f"-p {port} -k {root} -c listen_addresses=127.0.0.1 "
                                "-c fsync=off", "start"),
                   check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://consilium@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_postgres(_bin("pg_ctl"), "-D", data, "-m", "fast", "stop"),
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


