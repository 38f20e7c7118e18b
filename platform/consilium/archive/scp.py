"""DIMSE service provider: Verification, Storage, Query/Retrieve FIND/MOVE/GET (pynetdicom).

Thin adapters: each handler reads the event, calls the archive's plain functions and turns the
outcome into a DIMSE status with an Error Comment. Storage-only associations are served on the
lean receive path of :mod:`consilium.archive.fast_store` when enabled; every other association
(and every association when it is disabled) is served by pynetdicom here.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom import AE, _config, evt
from pynetdicom.association import Association
from pynetdicom.presentation import PresentationContext, build_context
from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

from consilium.archive import query as q
from consilium.archive.ingest import ArchiveStore, IngestSource, Outcome, Refusal, ingest_dataset
from consilium.archive.sop import (
    ACCEPTED_TRANSFER_SYNTAXES,
    PATIENT_ROOT_FIND,
    PATIENT_ROOT_GET,
    PATIENT_ROOT_MOVE,
    STORAGE_SOP_CLASSES,
    STUDY_ROOT_FIND,
    STUDY_ROOT_GET,
    STUDY_ROOT_MOVE,
    VERIFICATION,
    is_uncompressed,
)
from consilium.archive.warmup import MetadataWarmer
from consilium.audit import Actor, AuditAction, AuditOutcome, AuditTrail
from consilium.identity.policy import (
    DicomCaller,
    dicom_visible_institutions,
    may_move_to,
    resolve_dicom_caller,
    store_owner,
)
from consilium.settings import Settings

log = logging.getLogger(__name__)

FIND_MODELS = {PATIENT_ROOT_FIND: "patient", STUDY_ROOT_FIND: "study"}
MOVE_MODELS = {PATIENT_ROOT_MOVE: "patient", STUDY_ROOT_MOVE: "study"}
GET_MODELS = {PATIENT_ROOT_GET: "patient", STUDY_ROOT_GET: "study"}

# C-STORE statuses (PS3.4 B.2.3; 0x0111 from PS3.7 C.4)
STORE_STATUS = {
    Refusal.UNREADABLE: 0xC210,  # Error: Cannot understand
    Refusal.MISSING_UID: 0xC211,  # Error: Cannot understand
    Refusal.MISMATCH: 0xA900,  # Error: Data Set does not match SOP Class
    Refusal.CONFLICT: 0x0111,  # Failure: Duplicate SOP Instance
    Refusal.UNKNOWN_SOURCE: 0xC212,
    Refusal.OUT_OF_RESOURCES: 0xA700,  # Refused: Out of Resources
    Refusal.FOREIGN: 0xC213,  # Error: another institution's or patient's study (ingest's rule)
    Refusal.TOO_LARGE: 0xC214,  # Error: declared pixels over the pixels.* limits
}


class StoredInstance(Dataset):
    """A stored file to send as C-STORE sub-operation without decoding it.

    pynetdicom's C-GET/C-MOVE service classes only accept Dataset objects from handlers and
    would re-encode them; :func:`_send_stored` (installed on :class:`Association`) sends the
    file's bytes as they are instead, so a retrieved instance is byte-identical to the stored one.
    """

    def __init__(self, sop_class: str, sop_instance: str, transfer_syntax: str, path: Path,
                 study_uid: str = ""):
        super().__init__()
        self.SOPClassUID = UID(sop_class)
        self.SOPInstanceUID = UID(sop_instance)
        self.__dict__["stored_path"] = path
        self.__dict__["stored_transfer_syntax"] = transfer_syntax
        self.__dict__["study_uid"] = study_uid


_original_send_c_store = Association.send_c_store


def _send_stored(self: Association, dataset: Any, *args: Any, **kwargs: Any) -> Dataset:
    if not isinstance(dataset, StoredInstance):
        return _original_send_c_store(self, dataset, *args, **kwargs)
    # sub-operations wait for each response: Nagle would add ~40 ms to every one (C-MOVE's
    # outgoing association is opened by pynetdicom, so the option is set here)
    raw_socket = getattr(getattr(self.dul, "socket", None), "socket", None)
    if raw_socket is not None:
        with contextlib.suppress(OSError):
            raw_socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    path: Path = dataset.__dict__["stored_path"]
    ts = UID(dataset.__dict__["stored_transfer_syntax"])
    exact = [
        cx for cx in self.accepted_contexts
        if cx.abstract_syntax == dataset.SOPClassUID and cx.transfer_syntax[0] == ts
        and cx.as_scu
    ]
    if exact:
        return _original_send_c_store(self, path, *args, **kwargs)  # raw bytes, chunked
    if is_uncompressed(ts) and ts != "1.2.840.10008.1.2.2":
        # the peer accepted another little endian uncompressed syntax: pynetdicom re-encodes the
        # decoded dataset (it cannot convert big endian, which is retired; such data is sent
        # only to peers that accept it)
        return _original_send_c_store(self, dcmread(path), *args, **kwargs)
    raise ValueError(
        f"peer accepted no presentation context for {dataset.SOPClassUID} in {ts.name}"
    )


Association.send_c_store = _send_stored  # type: ignore[method-assign]
_config.STORE_SEND_CHUNKED_DATASET = True  # only used for the path form above
_config.LOG_HANDLER_LEVEL = "none"
# pynetdicom formats every identifier for its log even when nobody reads it (~9% of C-FIND)
_config.LOG_REQUEST_IDENTIFIERS = False
_config.LOG_RESPONSE_IDENTIFIERS = False


class StoreLedger:
    """What each association stored, per study, so that the audit trail gets one ``store``
    event per association and study instead of one per image."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[int, dict[str, tuple[str, int]]] = {}

    def add(self, association: int, study_uid: str, patient_id: str) -> None:
        with self._lock:
            studies = self._open.setdefault(association, {})
            _, count = studies.get(study_uid, (patient_id, 0))
            studies[study_uid] = (patient_id, count + 1)

    def take(self, association: int) -> dict[str, tuple[str, int]]:
        with self._lock:
            return self._open.pop(association, {})


def dimse_actor(caller: DicomCaller, address: str) -> Actor:
    return Actor(f"AE:{caller.ae_title}", caller.ae_title, caller.institution_id or "",
                 address, "dimse")


class DicomServer:
    """The archive's DIMSE listener; ``start`` binds, ``stop`` closes."""

    def __init__(
        self, settings: Settings, store: ArchiveStore, audit: AuditTrail | None = None,
        listener: socket.socket | None = None,
    ):
        self.settings = settings
        self.store = store
        self.audit = audit
        self.ledger = StoreLedger()
        self.listener = listener  # a worker process's share of the main process's socket
        self.warmer = MetadataWarmer(store, settings.data_dir)
        self.ae = self._make_ae()
        self.server: ThreadedAssociationServer | None = None
        self._thread: threading.Thread | None = None

    # -- configuration ---------------------------------------------------------------------

    def _make_ae(self) -> AE:
        ae = AE(ae_title=self.settings.dicom_ae_title)
        ae.maximum_pdu_size = self.settings.dicom_max_pdu
        ae.network_timeout = self.settings.dicom_network_timeout
        ae.acse_timeout = 30
        ae.dimse_timeout = self.settings.dicom_network_timeout
        ae.maximum_associations = 64
        ae.implementation_version_name = "CONSILIUM_01"
        if not self.settings.dicom_accept_unknown_ae:
            # pynetdicom rejects others at association: rejected-permanent, service user,
            # "calling AE title not recognized" (PS3.8 9.3.4)
            ae.require_calling_aet = [
                node.ae_title for inst in self.settings.institutions for node in inst.nodes
            ] or ["-NOBODY-"]
        for sop in STORAGE_SOP_CLASSES:
            # scp_role/scu_role: accept the SCP/SCU role selection a C-GET requestor proposes
            ae.add_supported_context(sop, ACCEPTED_TRANSFER_SYNTAXES, scu_role=True, scp_role=True)
        ae.add_supported_context(VERIFICATION, ACCEPTED_TRANSFER_SYNTAXES[:2])
        for model in (*FIND_MODELS, *MOVE_MODELS, *GET_MODELS):
            # little endian only: the lean C-FIND path encodes identifiers itself
            ae.add_supported_context(model, ACCEPTED_TRANSFER_SYNTAXES[:2])
        return ae

    def handlers(self) -> Any:
        return [
            (evt.EVT_C_ECHO, self.on_echo),
            (evt.EVT_C_STORE, self.on_store),
            (evt.EVT_C_FIND, self.on_find),
            (evt.EVT_C_MOVE, self.on_move),
            (evt.EVT_C_GET, self.on_get),
            (evt.EVT_CONN_CLOSE, self.on_close),
        ]

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        settings = self.settings
        request_handler: Any = RequestHandler
        if settings.dicom_fast_store:
            from consilium.archive.fast_store import make_request_handler

            request_handler = make_request_handler(self)
        server_cls: Any = ThreadedAssociationServer
        if self.listener is not None:
            server_cls = _shared_listener_server(self.listener)
        self.server = server_cls(
            self.ae,
            (settings.dicom_host, settings.dicom_port),
            settings.dicom_ae_title,
            self.ae.supported_contexts,
            None,
            self.handlers(),
            request_handler,
        )
        self.ae._servers.append(self.server)  # so that AE.shutdown() and server.shutdown() agree
        serve = (self.server.accept_forever if isinstance(self.server, _SharedListenerServer)
                 else self.server.serve_forever)
        self._thread = threading.Thread(target=serve, name="dicom-listener", daemon=True)
        self._thread.start()
        log.info(
            "DICOM %s listening on %s:%d", settings.dicom_ae_title,
            settings.dicom_host, self.server.server_address[1],
        )

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.server_address[1])

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    # -- handlers --------------------------------------------------------------------------

    def _caller(self, event: Any) -> Any:
        return resolve_dicom_caller(self.settings, event.assoc.requestor.ae_title)

    def on_echo(self, event: Any) -> int:
        return 0x0000

    def _address(self, event: Any) -> str:
        return str(event.assoc.requestor.address)

    def record_stores(self, caller: DicomCaller, address: str,
                      stored: dict[str, tuple[str, int]]) -> None:
        """One audit event per study an association stored into; the studies' web metadata is
        then computed in the background."""
        self.warmer.submit(list(stored))
        if self.audit is None:
            return
        for study_uid, (patient_id, count) in stored.items():
            self.audit.record(dimse_actor(caller, address), AuditAction.STORE,
                              study_uid=study_uid, patient_id=patient_id,
                              detail={"instances": count})

    def on_close(self, event: Any) -> None:
        stored = self.ledger.take(id(event.assoc))
        if stored:
            self.record_stores(self._caller(event), self._address(event), stored)

    def on_store(self, event: Any) -> Dataset:
        caller = self._caller(event)
        request = event.request
        result = ingest_dataset(
            self.store,
            event.request.DataSet.getbuffer(),
            str(event.context.transfer_syntax),
            str(request.AffectedSOPClassUID),
            str(request.AffectedSOPInstanceUID),
            IngestSource(store_owner(caller), caller.ae_title, "dimse"),
        )
        if result.outcome is Outcome.STORED:
            self.ledger.add(id(event.assoc), result.study_uid, result.patient_id)
        return store_status(result.outcome, result.refusal, result.reason, caller.ae_title,
                            result.sop_instance_uid or str(request.AffectedSOPInstanceUID))

    def on_find(self, event: Any) -> Iterator[tuple[int, Dataset | None]]:
        caller = self._caller(event)
        root = FIND_MODELS.get(event.request.AffectedSOPClassUID, "study")
        try:
            query = q.parse_identifier(event.identifier, root)
        except (q.QueryError, ValueError, KeyError) as exc:
            log.warning("C-FIND from %s refused: %s", caller.ae_title, exc)
            yield _failure(0xC310, str(exc))  # Unable to process
            return
        visible = dicom_visible_institutions(caller)
        count = 0
        for identifier in q.find(self.store.engine, query, visible):
            if event.is_cancelled:
                yield 0xFE00, None
                return
            count += 1
            yield 0xFF00, identifier
        self.record_find(caller, self._address(event), query, count)
        yield 0x0000, None

    def record_find(self, caller: DicomCaller, address: str, query: q.Query, count: int) -> None:
        """One audit event per C-FIND (both receive paths)."""
        log.info("C-FIND %s from %s: %d matches", query.level, caller.ae_title, count)
        if self.audit is None:
            return
        patient_id = query.keys.get("PatientID", "")
        study_uid = query.keys.get("StudyInstanceUID", "")
        self.audit.record(
            dimse_actor(caller, address), AuditAction.QUERY,
            patient_id=patient_id if patient_id and "*" not in patient_id
            and "?" not in patient_id else "",
            study_uid=study_uid if "\\" not in study_uid else "",
            detail={"level": query.level.value, "matches": count,
                    "keys": {k: v for k, v in query.keys.items() if v}},
        )

    def _retrieve_set(self, event: Any, root: str) -> list[StoredInstance]:
        """The instances a C-MOVE/C-GET identifier names, within what the caller may see.

        A malformed identifier raises; pynetdicom answers that with 0xC511/0xC411 (unable to
        process) and logs it.
        """
        caller = self._caller(event)
        query = q.parse_identifier(event.identifier, root)
        rows = q.instance_files(self.store.engine, query, dicom_visible_institutions(caller))
        return [
            StoredInstance(cls, uid, ts, self.store.path_of(path), study)
            for cls, uid, ts, path, study in rows
        ]

    def _audit_retrieve(self, event: Any, matches: list[StoredInstance], how: str,
                        destination: str = "") -> None:
        if self.audit is None:
            return
        uids = sorted({m.__dict__["study_uid"] for m in matches})
        caller = self._caller(event)
        for uid in uids:  # the audit trail names each study's patient itself
            count = sum(1 for m in matches if m.__dict__["study_uid"] == uid)
            self.audit.record(dimse_actor(caller, self._address(event)), AuditAction.RETRIEVE,
                              study_uid=uid,
                              detail={"service": how, "instances": count,
                                      "destination": destination})

    def on_move(self, event: Any) -> Iterator[Any]:
        caller = self._caller(event)
        destination = event.move_destination.decode("ascii", "replace").strip() \
            if isinstance(event.move_destination, bytes) else str(event.move_destination).strip()
        found = self.settings.node_by_ae(destination)
        if found is None or not found[1].reachable:
            log.warning("C-MOVE from %s: unknown destination %r", caller.ae_title, destination)
            yield None, None  # 0xA801 Move Destination unknown
            return
        owner, node = found
        if not may_move_to(caller, owner.id):
            # sending a hospital's images to another hospital's node is a sharing decision
            # (a consult case), never a side effect of a C-MOVE
            log.warning("C-MOVE from %s refused: destination %s belongs to %s", caller.ae_title,
                        destination, owner.id)
            if self.audit is not None:
                self.audit.record(dimse_actor(caller, self._address(event)), AuditAction.DENIED,
                                  AuditOutcome.DENIED,
                                  detail={"service": "C-MOVE", "destination": destination})
            yield None, None  # 0xA801: not a destination for this caller
            return
        matches = self._retrieve_set(event, MOVE_MODELS.get(event.request.AffectedSOPClassUID,
                                                            "study"))
        yield node.host, node.port, {"contexts": proposed_contexts(matches)}
        yield len(matches)
        self._audit_retrieve(event, matches, "C-MOVE", destination)
        log.info("C-MOVE from %s to %s: %d instances", caller.ae_title, destination, len(matches))
        for instance in matches:
            if event.is_cancelled:
                yield 0xFE00, None
                return
            yield 0xFF00, instance

    def on_get(self, event: Any) -> Iterator[Any]:
        caller = self._caller(event)
        matches = self._retrieve_set(event, GET_MODELS.get(event.request.AffectedSOPClassUID,
                                                           "study"))
        yield len(matches)
        self._audit_retrieve(event, matches, "C-GET")
        log.info("C-GET from %s: %d instances", caller.ae_title, len(matches))
        for instance in matches:
            if event.is_cancelled:
                yield 0xFE00, None
                return
            yield 0xFF00, instance


def proposed_contexts(matches: list[StoredInstance]) -> list[PresentationContext]:
    """Contexts for a C-MOVE association: each SOP class in each stored transfer syntax, plus
    explicit and implicit little endian for uncompressed data; at most 128 (PS3.8 limit)."""
    wanted: dict[str, set[str]] = {}
    for m in matches:
        wanted.setdefault(str(m.SOPClassUID), set()).add(m.__dict__["stored_transfer_syntax"])
    contexts: list[PresentationContext] = []
    for sop_class, syntaxes in wanted.items():
        for ts in sorted(syntaxes):
            contexts.append(build_context(sop_class, [ts]))
        if any(is_uncompressed(UID(t)) for t in syntaxes):
            contexts.append(build_context(sop_class, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]))
    if len(contexts) > 128:
        log.warning("C-MOVE needs %d presentation contexts; proposing the first 128",
                    len(contexts))
    return contexts[:128]


def _failure(status: int, comment: str) -> tuple[int, Dataset | None]:
    ds = Dataset()
    ds.Status = status
    ds.ErrorComment = comment[:64]
    return status, ds


def store_status(
    outcome: Outcome, refusal: Refusal | None, reason: str, calling_ae: str, sop_uid: str
) -> Dataset:
    """The C-STORE-RSP status dataset for an ingest outcome; logs every refusal."""
    status = Dataset()
    if outcome is not Outcome.REFUSED:
        status.Status = 0x0000
        return status
    assert refusal is not None
    status.Status = STORE_STATUS[refusal]
    status.ErrorComment = reason[:64]  # LO: 64 characters
    log.warning("C-STORE from %s refused (0x%04X %s) %s: %s", calling_ae, status.Status,
                refusal.value, sop_uid, reason)
    return status


def open_listener(host: str, port: int) -> socket.socket:
    """The listening socket that the main process makes and its DIMSE worker processes share."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=128)


class _SharedListenerServer(ThreadedAssociationServer):
    """A worker process's server on the listening socket shared by all workers.

    Why not SO_REUSEPORT: it hashes each connection to one process, so four associations
    landed 2-1-1-0 or 3-1 on four workers as often as not, and two workers often got 4-0
    (one process doing all the work). Here every worker's acceptor thread blocks in
    ``accept()``; Linux wakes blocked acceptors one at a time, first come first served, so
    associations go round-robin over the workers."""

    shared: socket.socket
    _stopping = False

    def server_bind(self) -> None:
        if self.socket is not None:
            self.socket.close()  # the one TCPServer made: ours is the shared one
        self.socket = self.shared
        self.server_address = self.shared.getsockname()

    def server_activate(self) -> None:
        pass  # the main process listens

    def accept_forever(self) -> None:
        # blocking, no timeout: a timeout would make Python poll() first, waking every
        # worker for each connection instead of the one that waited longest
        self.shared.settimeout(None)
        while not self._stopping:
            try:
                request, address = self.get_request()
            except OSError as exc:
                if self._stopping:
                    return
                log.warning("accept failed: %s", exc)
                time.sleep(0.1)
                continue
            try:
                self.process_request(request, address)  # a thread per association
            except Exception:
                self.handle_error(request, address)
                self.shutdown_request(request)

    def shutdown(self) -> None:
        """Stop accepting; the acceptor thread is a daemon blocked in accept() (closing a
        socket does not wake it, and the socket is the other workers' too)."""
        self._stopping = True

    def server_close(self) -> None:
        """Close this process's descriptor only: pynetdicom's server_close would shutdown()
        the socket, which is the other workers' socket as well."""
        self._stopping = True
        self.shared.close()


def _shared_listener_server(listener: socket.socket) -> type[_SharedListenerServer]:
    class SharedListenerServer(_SharedListenerServer):
        shared = listener

    return SharedListenerServer
