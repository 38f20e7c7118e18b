"""The archive's DIMSE listener: it accepts connections, reads and checks each one's first PDU
itself, admits or rejects the association, and hands it to a transport.

Every connection gets the same treatment whatever it sends: its A-ASSOCIATE-RQ must arrive
whole within the ARTIM time-out (``dicom.artim_timeout``) and be at most
:data:`~.wire.ASSOCIATE_RQ_LIMIT` bytes; anything else (silence, a byte, garbage, an absurd
length) is aborted or closed without reaching a transport, and never counts as an association.
Then one check of the calling AE (:func:`.handlers.admit`), then the per-process limit of
associations (``dicom.max_associations``, A-ASSOCIATE-RJ transient beyond it). Associations that
only store, verify or C-FIND go to the lean transport (:mod:`.lean`, unless
``dicom.fast_store`` is off), the rest to pynetdicom's (:mod:`.pynetdicom_server`).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable

from pynetdicom.pdu import A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import A_ASSOCIATE

from consilium.archive.ingest import ArchiveStore
from consilium.archive.warmup import MetadataWarmer
from consilium.audit import AuditTrail
from consilium.settings import Settings

from . import lean, wire
from .handlers import DimseContext, Peer, admit
from .pynetdicom_server import PynetdicomTransport, make_ae
from .status import ASSOCIATION_REJECTION, AssociationRefusal

log = logging.getLogger(__name__)

# Connections of this process still in their first PDU (each a thread and at most one
# A-ASSOCIATE-RQ of memory for at most the ARTIM time-out); more are closed at once.
PENDING_LIMIT = 512


def open_listener(host: str, port: int) -> socket.socket:
    """The listening socket; the main process makes it and its DIMSE worker processes share it:
    every worker's acceptor blocks in accept(), and Linux wakes the one that has waited
    longest, so associations go round-robin over the workers (SO_REUSEPORT hashes connections
    to processes: four associations often landed 3-1 or 4-0 on two workers)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=128)


class DicomServer:
    """The DIMSE listener of one process; ``start`` listens (on its own socket, or on
    ``listener``, a worker process's share of the main process's socket), ``stop`` ends."""

    def __init__(self, settings: Settings, store: ArchiveStore, audit: AuditTrail | None = None,
                 listener: socket.socket | None = None,
                 tls_listener: socket.socket | None = None) -> None:
        self.settings = settings
        self.tls = tls_context(settings) if settings.dicom_tls_port is not None else None
        self.tls_listener = tls_listener
        self._active = 0  # associations being served
        self.context = DimseContext(settings, store, audit, WarmWhenIdle(
            MetadataWarmer(store, settings.data_dir), lambda: self._active > 0))
        self.ae = make_ae(settings)
        self.pynetdicom = PynetdicomTransport(self.context, self.ae)
        self.listener = listener
        self._shared = listener is not None
        self._associations = threading.BoundedSemaphore(settings.dicom_max_associations)
        self._pending = 0
        self._lock = threading.Lock()
        self._stopping = False
        self._threads: list[threading.Thread] = []

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        settings = self.settings
        if self.listener is None:
            self.listener = open_listener(settings.dicom_host, settings.dicom_port)
        if self.tls is not None and self.tls_listener is None:
            assert settings.dicom_tls_port is not None
            self.tls_listener = open_listener(settings.dicom_host, settings.dicom_tls_port)
        for sock, tls in ((self.listener, False), (self.tls_listener, True)):
            if sock is None:
                continue
            # blocking, no time-out: a time-out would make Python poll() first, waking every
            # worker for each connection instead of the one that waited longest
            sock.settimeout(None)
            thread = threading.Thread(target=self._accept_forever, args=(sock, tls),
                                      name="dicom-tls-listener" if tls else "dicom-listener",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("DICOM %s listening on %s:%d%s", settings.dicom_ae_title, settings.dicom_host,
                 self.port, f" and TLS on {self.tls_port}" if self.tls_port else "")

    @property
    def port(self) -> int:
        assert self.listener is not None
        return int(self.listener.getsockname()[1])

    @property
    def tls_port(self) -> int | None:
        return int(self.tls_listener.getsockname()[1]) if self.tls_listener else None

    def stop(self) -> None:
        """Stop accepting. Own sockets are shut down, which wakes the acceptors; shared ones
        only lose this process's descriptor (shutting them down would stop the other workers,
        and the acceptors, daemon threads blocked in accept(), end with the process)."""
        self._stopping = True
        for sock in (self.listener, self.tls_listener):
            if sock is None:
                continue
            if not self._shared:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        if not self._shared:
            for thread in self._threads:
                thread.join(timeout=5)

    def _accept_forever(self, listener: socket.socket, tls: bool) -> None:
        while not self._stopping:
            try:
                conn, address = listener.accept()
            except OSError as exc:
                if self._stopping:
                    return
                log.warning("accept failed: %s", exc)  # e.g. out of descriptors: back off
                time.sleep(0.1)
                continue
            with self._lock:
                crowded = self._pending >= PENDING_LIMIT
                if not crowded:
                    self._pending += 1
            if crowded:
                log.warning("connection from %s closed: %d connections are still opening",
                            address[0], PENDING_LIMIT)
                conn.close()
                continue
            threading.Thread(target=self._connection, args=(conn, address, tls),
                             name=f"dicom-{address[0]}", daemon=True).start()

    # -- one connection ----------------------------------------------------------------------------

    def _connection(self, conn: socket.socket, address: tuple[str, int], tls: bool) -> None:
        try:
            with conn:
                opened = self._open(conn, address, tls)
                if opened is not None:
                    with opened[0]:
                        self._associate(*opened, address)
        except Exception:
            log.exception("connection from %s failed", address[0])

    def _open(self, conn: socket.socket, address: tuple[str, int], tls: bool
              ) -> tuple[socket.socket, bytes, A_ASSOCIATE] | None:
        """The connection (its TLS session set up first on the TLS port) and its
        A-ASSOCIATE-RQ, each step within the ARTIM time-out; None if there is none (the
        connection was answered as it deserved)."""
        host = address[0]
        artim = self.settings.dicom_artim_timeout
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tls:
                assert self.tls is not None
                conn.settimeout(artim)
                conn = self.tls.wrap_socket(conn, server_side=True)  # handshake within ARTIM
            raw = wire.read_first_pdu(conn, artim)
            return conn, raw, _decode_request(raw)
        except ssl.SSLError as exc:
            log.warning("TLS connection from %s refused: %s", host, exc)
        except wire.ProtocolError as exc:
            log.warning("connection from %s aborted before association: %s", host, exc)
            wire.send_abort(conn, exc.reason)
            wire.drain_until_closed(conn, self.settings.dicom_artim_timeout)
        except (wire.PeerGone, OSError) as exc:
            log.info("connection from %s closed before association: %s", host, exc)
        finally:
            with self._lock:
                self._pending -= 1
        conn.close()  # the TLS session, if there is one (the caller closes the connection)
        return None

    def _associate(self, conn: socket.socket, raw: bytes, request: A_ASSOCIATE,
                   address: tuple[str, int]) -> None:
        host = address[0]
        calling_ae = str(request.calling_ae_title).strip()
        admitted = admit(self.settings, calling_ae, host)
        if isinstance(admitted, AssociationRefusal):
            self._reject(conn, admitted)
            return
        if not self._associations.acquire(blocking=False):
            log.warning("association from %s (%s) refused: %d associations are served already",
                        calling_ae, host, self.settings.dicom_max_associations)
            self._reject(conn, AssociationRefusal.TOO_MANY_ASSOCIATIONS)
            return
        with self._lock:
            self._active += 1
        try:
            peer = Peer(admitted, host)
            if self.settings.dicom_fast_store and lean.serves(request):
                association = lean.LeanAssociation(self.context, conn, peer,
                                                   self.ae.supported_contexts)
                association.run(request)
            else:
                self.pynetdicom.serve(conn, conn.getsockname(), address, raw, request, peer)
        finally:
            with self._lock:
                self._active -= 1
            self._associations.release()

    def _reject(self, conn: socket.socket, refusal: AssociationRefusal) -> None:
        with contextlib.suppress(OSError):
            conn.sendall(wire.reject_pdu(*ASSOCIATION_REJECTION[refusal]))
        wire.drain_until_closed(conn, self.settings.dicom_artim_timeout)


def tls_context(settings: Settings) -> ssl.SSLContext:
    """The TLS port's context: TLS 1.2 or later (BCP 195), our certificate, and when
    ``dicom.tls_ca`` is set a peer certificate signed by it is required."""
    if settings.dicom_tls_certificate is None or settings.dicom_tls_key is None:
        raise ValueError("dicom.tls_port needs dicom.tls_certificate and dicom.tls_key")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.dicom_tls_certificate, settings.dicom_tls_key)
    if settings.dicom_tls_ca is not None:
        context.load_verify_locations(cafile=settings.dicom_tls_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


class WarmWhenIdle:
    """Hands newly stored studies to the metadata warmer once this process has served no
    association for :data:`WARM_AFTER_IDLE` seconds: warmed at once, a study that one
    association finished took CPU from the others still storing (it reads back every file)."""

    def __init__(self, warmer: MetadataWarmer, busy: Callable[[], bool]) -> None:
        self._warmer = warmer
        self._busy = busy
        self._pending: dict[str, None] = {}
        self._last = 0.0
        self._changed = threading.Condition()
        threading.Thread(target=self._run, name="warm-when-idle", daemon=True).start()

    def submit(self, study_uids: list[str]) -> None:
        with self._changed:
            self._pending.update(dict.fromkeys(study_uids))
            self._last = time.monotonic()
            self._changed.notify()

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._pending:
                    self._changed.wait()
                quiet = time.monotonic() - self._last
                if quiet < WARM_AFTER_IDLE or self._busy():
                    self._changed.wait(WARM_AFTER_IDLE - quiet if quiet < WARM_AFTER_IDLE
                                       else WARM_AFTER_IDLE)
                    continue
                studies, self._pending = list(self._pending), {}
            self._warmer.submit(studies)


WARM_AFTER_IDLE = 1.0


def _decode_request(raw: bytes) -> A_ASSOCIATE:
    try:
        pdu = A_ASSOCIATE_RQ()
        pdu.decode(raw)
        primitive: A_ASSOCIATE = pdu.to_primitive()
    except Exception as exc:  # pynetdicom's decoder raises many kinds on garbage
        raise wire.ProtocolError(f"undecodable A-ASSOCIATE-RQ: {exc}",
                                 wire.ABORT_INVALID_PARAMETER) from exc
    if primitive.calling_ae_title is None or not primitive.presentation_context_definition_list:
        raise wire.ProtocolError("A-ASSOCIATE-RQ without calling AE title or presentation "
                                 "contexts", wire.ABORT_INVALID_PARAMETER)
    return primitive
