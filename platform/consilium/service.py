"""Start-up and shut-down of a Consilium process: the pieces every command needs, in order."""

from __future__ import annotations

import functools
import logging
import multiprocessing
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from consilium.archive.access import ArchiveAccess
from consilium.archive.catalog import institution_of_study, patient_of_study
from consilium.archive.context import ArchiveContext
from consilium.archive.ingest import ArchiveStore
from consilium.archive.pixel_guard import PixelLimits
from consilium.archive.recovery import resolve_pending_writes
from consilium.audit import AuditTrail
from consilium.db import analyze, make_engine, migrate
from consilium.processes import end_with_parent, wait_for_termination
from consilium.settings import Settings

if TYPE_CHECKING:
    from consilium.archive.dimse.listener import DicomServer

log = logging.getLogger(__name__)


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    store: ArchiveStore
    audit: AuditTrail
    access: ArchiveAccess  # the one gate of every read of patient data on the web side

    @property
    def archive(self) -> ArchiveContext:
        """What the archive's web adapters work with (the domains get their own small
        contexts from the app, never the runtime itself)."""
        return ArchiveContext(self.settings, self.engine, self.store, self.audit, self.access)

    def close(self) -> None:
        """Write what the audit writer still holds, then stop it (on shut-down and SIGTERM;
        an interpreter exit does the same for a process that did not call this)."""
        self.audit.close()


def open_runtime(settings: Settings, run_migrations: bool = True) -> Runtime:
    """Data folders, database (migrated) and the archive store."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.storage_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.effective_database_url)
    if run_migrations:
        migrate(engine)
    audit = AuditTrail(engine, settings.audit_syslog_host, settings.audit_syslog_port,
                       patient_of_study=functools.partial(patient_of_study, engine),
                       institution_of_study=functools.partial(institution_of_study, engine))
    store = ArchiveStore(
        engine=engine,
        storage_dir=settings.storage_dir,
        fsync=settings.storage_fsync,
        duplicate_policy=settings.dicom_duplicate_policy,
        direct_io=settings.storage_direct_io,
        pixel_limits=PixelLimits.of(settings),
        audit=audit,
    )
    if run_migrations:  # a main process, before it writes anything
        resolve_pending_writes(store)
        analyze(engine)
        _start_planner_statistics(engine)
    return Runtime(settings, engine, store, audit, ArchiveAccess(engine, audit, store))


STATISTICS_INTERVAL = 600.0  # seconds between ANALYZE runs while the archive grows


def _start_planner_statistics(engine: Engine) -> None:
    def loop() -> None:
        while True:
            time.sleep(STATISTICS_INTERVAL)
            try:
                analyze(engine)
            except Exception as exc:  # statistics are an optimisation, never a failure
                log.warning("ANALYZE failed: %s", exc)

    threading.Thread(target=loop, name="planner-statistics", daemon=True).start()


def _dicom_worker(settings: Settings, listener: socket.socket, tls_listener: socket.socket | None,
                  parent_pid: int) -> None:
    """A DIMSE worker process: it ends on SIGTERM, which it also gets when the main process is
    gone (else it would go on accepting associations on the shared socket, unsupervised)."""
    configure_logging(settings)
    from consilium.archive.dimse.listener import DicomServer

    end_with_parent(parent_pid)
    runtime = open_runtime(settings, run_migrations=False)
    server = DicomServer(settings, runtime.store, runtime.audit, listener=listener,
                         tls_listener=tls_listener)
    server.start()
    wait_for_termination()
    server.stop()
    runtime.close()


class DicomService:
    """The DIMSE listener: a thread of this process, or ``dicom_workers`` processes that
    accept in turn on one listening socket made here (associations go round-robin)."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self.processes: list[BaseProcess] = []
        self.server: DicomServer | None = None
        self.listener: socket.socket | None = None
        self.tls_listener: socket.socket | None = None

    def start(self) -> None:
        from consilium.archive.dimse.listener import DicomServer, open_listener

        settings = self.runtime.settings
        if settings.dicom_workers == 1:
            self.server = DicomServer(settings, self.runtime.store, self.runtime.audit)
            self.server.start()
            return
        self.listener = open_listener(settings.dicom_host, settings.dicom_port)
        if settings.dicom_tls_port is not None:
            self.tls_listener = open_listener(settings.dicom_host, settings.dicom_tls_port)
        context = multiprocessing.get_context("spawn")
        for index in range(settings.dicom_workers):
            process = context.Process(
                target=_dicom_worker,
                args=(settings, self.listener, self.tls_listener, os.getpid()),
                name=f"dicom-{index + 1}", daemon=True,
            )
            process.start()
            self.processes.append(process)

    @property
    def port(self) -> int:
        """The port listened on (``dicom_port`` 0 lets the system choose one)."""
        if self.server is not None:
            return self.server.port
        assert self.listener is not None
        return int(self.listener.getsockname()[1])

    @property
    def tls_port(self) -> int | None:
        """The DICOM TLS port, if there is one."""
        if self.server is not None:
            return self.server.tls_port
        return int(self.tls_listener.getsockname()[1]) if self.tls_listener else None

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join(timeout=5)
        for listener in (self.listener, self.tls_listener):
            if listener is not None:
                listener.close()
        self.listener = self.tls_listener = None
