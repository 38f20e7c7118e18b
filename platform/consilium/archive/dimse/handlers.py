"""The DIMSE services over the archive: who may associate, C-ECHO, C-STORE, C-FIND and the
choice of what a C-MOVE or C-GET sends, with their audit records.

Plain functions over a :class:`DimseContext`: both transports (the lean one of
:mod:`.lean` and pynetdicom's of :mod:`.pynetdicom_server`) call these and only translate
their results to the wire. Every outcome is an :class:`Answer` whose status comes from
:mod:`.status`; nothing here knows a socket or a pynetdicom event.

Audit rule: a record says what was asked (the identifier's keys, the destination) and what
the caller's own institution holds; it never names a study, patient or name of another
institution, whether that exists or not (a refused or empty retrieval looks the same).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any, Protocol

from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom.dsutils import decode

from consilium.archive import query as q
from consilium.archive.ingest import ArchiveStore, IngestResult, IngestSource, Outcome
from consilium.archive.ingest import ingest_dataset as ingest
from consilium.archive.sop import (
    PATIENT_ROOT_FIND,
    PATIENT_ROOT_GET,
    PATIENT_ROOT_MOVE,
)
from consilium.audit import Actor, AuditAction, AuditOutcome, AuditTrail
from consilium.identity.policy import (
    DicomCaller,
    dicom_visible_institutions,
    may_move_to,
    resolve_dicom_caller,
    store_owner,
)
from consilium.settings import DicomNode, Settings

from .status import (
    CANCEL,
    PENDING,
    PROCESSING_FAILURE,
    SUCCESS,
    UNABLE_TO_PROCESS,
    AssociationRefusal,
    QueryRefusal,
    Service,
    query_status,
    store_status,
)

log = logging.getLogger(__name__)

PATIENT_ROOTS = frozenset({PATIENT_ROOT_FIND, PATIENT_ROOT_MOVE, PATIENT_ROOT_GET})


class Warmer(Protocol):
    """Computes the web metadata of newly stored studies in the background."""

    def submit(self, study_uids: list[str]) -> None: ...


@dataclass
class DimseContext:
    """What the DIMSE layer needs of the process."""

    settings: Settings
    store: ArchiveStore
    audit: AuditTrail | None = None
    warmer: Warmer | None = None


@dataclass(frozen=True)
class Peer:
    """An admitted calling AE and the address it called from."""

    caller: DicomCaller
    host: str

    @property
    def ae_title(self) -> str:
        return self.caller.ae_title

    def actor(self) -> Actor:
        return Actor(f"AE:{self.caller.ae_title}", self.caller.ae_title,
                     self.caller.institution_id or "", self.host, "dimse")


@dataclass(frozen=True, slots=True)
class Answer:
    """One response: its status, an Error Comment for failures, and for a pending C-FIND
    response the matching identifier, already encoded in the context's transfer syntax."""

    status: int
    comment: str = ""
    identifier: bytes | None = None


# -- association ---------------------------------------------------------------------------------


def admit(settings: Settings, calling_ae: str, host: str) -> DicomCaller | AssociationRefusal:
    """The one check of who may associate: a configured node's AE title (unless unknown ones
    are accepted), calling from the node's host or network when one is configured."""
    caller = resolve_dicom_caller(settings, calling_ae)
    if caller.institution_id is None:
        if settings.dicom_accept_unknown_ae:
            return caller
        log.warning("association refused: unknown calling AE %r from %s", calling_ae, host)
        return AssociationRefusal.UNKNOWN_CALLING_AE
    found = settings.node_by_ae(calling_ae)
    if found is not None and not _from_allowed_host(settings, found[1], host):
        log.warning("association refused: calling AE %r from %s, not from its configured host",
                    calling_ae, host)
        return AssociationRefusal.WRONG_HOST
    return caller


def _from_allowed_host(settings: Settings, node: DicomNode, host: str) -> bool:
    if not node.networks and not (settings.dicom_check_node_host and node.host):
        return True
    try:
        address = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # a dual-stack listener sees IPv4 peers so
    if any(address in ipaddress.ip_network(n, strict=False) for n in node.networks):
        return True
    return node.host is not None and str(address) in _addresses_of(node.host)


_RESOLVED: dict[str, tuple[float, frozenset[str]]] = {}
_RESOLVE_SECONDS = 60.0  # a node's name is looked up again after this


def _addresses_of(host: str) -> frozenset[str]:
    """The addresses a configured host name stands for (cached briefly: one lookup per minute
    instead of one per association)."""
    now = time.monotonic()
    cached = _RESOLVED.get(host)
    if cached is not None and now - cached[0] < _RESOLVE_SECONDS:
        return cached[1]
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        addresses = frozenset(str(info[4][0]).split("%")[0] for info in infos)
    except OSError as exc:
        log.warning("cannot resolve node host %r: %s", host, exc)
        addresses = frozenset()
    _RESOLVED[host] = (now, addresses)
    return addresses


@dataclass
class AssociationRecord:
    """What one association stored, per study, so that the audit trail gets one ``store``
    event per association and study instead of one per image; closed once, when it ends."""

    context: DimseContext
    peer: Peer
    acknowledged: int = 0  # stored and idempotent duplicates
    studies: dict[str, tuple[str, int]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        # who delivers what this association stores (the refusals' audit names its address)
        self.source = IngestSource(store_owner(self.peer.caller), self.peer.ae_title, "dimse",
                                   self.peer.actor())

    def add(self, result: IngestResult) -> None:
        with self._lock:
            self.acknowledged += 1
            if result.outcome is Outcome.STORED:
                patient, count = self.studies.get(result.study_uid, (result.patient_id, 0))
                self.studies[result.study_uid] = (patient, count + 1)

    def close(self) -> None:
        with self._lock:
            studies, self.studies = self.studies, {}
        if not studies:
            return
        if self.context.warmer is not None:  # the studies' web metadata, in the background
            self.context.warmer.submit(list(studies))
        audit = self.context.audit
        if audit is None:
            return
        for study_uid, (patient_id, count) in studies.items():
            audit.record(self.peer.actor(), AuditAction.STORE, study_uid=study_uid,
                         patient_id=patient_id, detail={"instances": count})


# -- C-ECHO, C-STORE -----------------------------------------------------------------------------


def echo() -> Answer:
    return Answer(SUCCESS)


def store(context: DimseContext, record: AssociationRecord, dataset: bytes | memoryview,
          transfer_syntax: str, sop_class: str, sop_instance: str) -> Answer:
    """Ingest one received dataset (its bytes as received); every refusal is logged."""
    peer = record.peer
    try:
        result = ingest(context.store, dataset, transfer_syntax, sop_class, sop_instance,
                        record.source)
    except Exception:
        log.exception("C-STORE of %s from %s failed", sop_instance, peer.ae_title)
        return Answer(PROCESSING_FAILURE, "processing failure")
    status = store_status(result.outcome, result.refusal)
    if status != SUCCESS:
        refusal = result.refusal.value if result.refusal else "?"
        log.warning("C-STORE from %s refused (0x%04X %s) %s: %s", peer.ae_title, status,
                    refusal, result.sop_instance_uid or sop_instance, result.reason)
        return Answer(status, result.reason[:64])
    record.add(result)
    return Answer(SUCCESS)


# -- identifiers ---------------------------------------------------------------------------------


class _Unreadable(Exception):
    """An identifier that cannot be decoded or understood; ``asked`` is what could be read."""

    def __init__(self, reason: str, asked: dict[str, str]) -> None:
        super().__init__(reason)
        self.asked = asked


def _decode(identifier: bytes, transfer_syntax: str) -> Dataset:
    ts = UID(transfer_syntax)
    try:
        return decode(BytesIO(identifier), ts.is_implicit_VR, ts.is_little_endian,
                      ts.is_deflated)
    except Exception as exc:  # truncated, garbage: pydicom raises many kinds
        raise _Unreadable(f"undecodable identifier: {exc}", {}) from exc


def _asked(identifier: Dataset) -> dict[str, str]:
    """The keys of an identifier as text, as far as they can be read (for the audit)."""
    asked: dict[str, str] = {}
    try:
        for element in identifier:
            try:
                value = element.value
                text = "\\".join(map(str, value)) if element.VM > 1 else str(value or "")
            except Exception:
                text = "<unreadable>"
            if text:
                asked[element.keyword or str(element.tag)] = text[:128]
    except Exception:
        asked["<unreadable>"] = "..."
    return asked


def _parse(identifier: bytes, transfer_syntax: str, sop_class: str) -> q.Query:
    dataset = _decode(identifier, transfer_syntax)
    try:
        return q.parse_identifier(dataset, "patient" if sop_class in PATIENT_ROOTS else "study")
    except Exception as exc:
        raise _Unreadable(str(exc), _asked(dataset)) from exc


def _asked_keys(query: q.Query) -> dict[str, str]:
    return {k: v for k, v in query.keys.items() if v}


def _single(value: str) -> str:
    """A key's value if it names one thing (no wildcard, no list), else ""."""
    return "" if not value or any(c in value for c in "*?\\") else value


# -- C-FIND --------------------------------------------------------------------------------------


def find(context: DimseContext, peer: Peer, identifier: bytes, transfer_syntax: str,
         sop_class: str, cancelled: Callable[[], bool] = lambda: False) -> Iterator[Answer]:
    """The responses to a C-FIND: one pending answer per match (its identifier encoded for the
    context), then success, cancel or failure. Every C-FIND leaves one audit record."""
    try:
        query = _parse(identifier, transfer_syntax, sop_class)
    except _Unreadable as exc:
        log.warning("C-FIND from %s refused: %s", peer.ae_title, exc)
        _audit_refused(context, peer, Service.FIND, QueryRefusal.UNREADABLE_IDENTIFIER,
                       str(exc), exc.asked)
        yield Answer(UNABLE_TO_PROCESS[Service.FIND], str(exc))
        return
    implicit = UID(transfer_syntax).is_implicit_VR
    visible = dicom_visible_institutions(peer.caller)
    count = 0
    try:
        for encoded in q.find_encoded(context.store.engine, query, visible, implicit):
            if cancelled():
                _audit_find(context, peer, query, count, cancelled=True)
                yield Answer(CANCEL)
                return
            count += 1
            yield Answer(PENDING, identifier=encoded)
    except Exception as exc:
        log.exception("C-FIND from %s failed after %d matches", peer.ae_title, count)
        _audit_refused(context, peer, Service.FIND, QueryRefusal.UNREADABLE_IDENTIFIER,
                       f"unable to process: {exc}", _asked_keys(query))
        yield Answer(UNABLE_TO_PROCESS[Service.FIND], "unable to process")
        return
    _audit_find(context, peer, query, count)
    yield Answer(SUCCESS)


def _audit_find(context: DimseContext, peer: Peer, query: q.Query, count: int,
                cancelled: bool = False) -> None:
    log.info("C-FIND %s from %s: %d matches", query.level, peer.ae_title, count)
    if context.audit is None:
        return
    detail: dict[str, Any] = {"level": query.level.value, "matches": count,
                              "keys": _asked_keys(query)}
    if cancelled:
        detail["cancelled"] = True
    # a study is named only when it matched, so it is the caller's own: the audit trail then
    # adds its patient; an asked UID that matched nothing stays in the keys
    context.audit.record(
        peer.actor(), AuditAction.QUERY,
        patient_id=_single(query.keys.get("PatientID", "")),
        study_uid=_single(query.keys.get("StudyInstanceUID", "")) if count else "",
        detail=detail,
    )


def _audit_refused(context: DimseContext, peer: Peer, service: Service, refusal: QueryRefusal,
                   reason: str, asked: dict[str, str], destination: str = "") -> None:
    if context.audit is None:
        return
    detail: dict[str, Any] = {"service": service.value, "refusal": refusal.value,
                              "reason": reason[:200], "keys": asked}
    if destination:
        detail["destination"] = destination
    denied = refusal is QueryRefusal.FOREIGN_DESTINATION
    action = (AuditAction.DENIED if denied else
              AuditAction.QUERY if service is Service.FIND else AuditAction.RETRIEVE)
    context.audit.record(peer.actor(), action,
                         AuditOutcome.DENIED if denied else AuditOutcome.FAILURE,
                         detail=detail)


# -- C-MOVE, C-GET -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetrievedFile:
    """A stored instance a C-MOVE or C-GET sends: its file, sent as stored."""

    sop_class: str
    sop_instance: str
    transfer_syntax: str
    path: Path
    study_uid: str


@dataclass(frozen=True)
class Retrieval:
    files: list[RetrievedFile]
    destination: DicomNode | None = None  # C-MOVE: where to send them


def retrieve(context: DimseContext, peer: Peer, service: Service, identifier: bytes,
             transfer_syntax: str, sop_class: str, destination_ae: str = ""
             ) -> Retrieval | Answer:
    """What a C-MOVE (to ``destination_ae``) or C-GET sends: the caller's own institution's
    instances that the identifier names; or the refusal. Audited either way."""
    node: DicomNode | None = None
    if service is Service.MOVE:
        destination_ae = destination_ae.strip()
        found = context.settings.node_by_ae(destination_ae)
        refusal: QueryRefusal | None = None
        if found is None or not found[1].reachable:
            refusal = QueryRefusal.UNKNOWN_DESTINATION
            reason = f"unknown move destination {destination_ae!r}"
        elif not may_move_to(peer.caller, found[0].id):
            # sending a hospital's images to another hospital's node is a sharing decision
            # (a consult case), never a side effect of a C-MOVE
            refusal = QueryRefusal.FOREIGN_DESTINATION
            reason = f"{destination_ae} is not a destination for {peer.ae_title}"
        if refusal is not None:
            log.warning("C-MOVE from %s refused: %s", peer.ae_title, reason)
            _audit_refused(context, peer, service, refusal, reason,
                           _asked_quietly(identifier, transfer_syntax), destination_ae)
            return Answer(query_status(service, refusal), reason)
        assert found is not None
        node = found[1]
    try:
        query = _parse(identifier, transfer_syntax, sop_class)
    except _Unreadable as exc:
        log.warning("%s from %s refused: %s", service.value, peer.ae_title, exc)
        _audit_refused(context, peer, service, QueryRefusal.UNREADABLE_IDENTIFIER, str(exc),
                       exc.asked, destination_ae)
        return Answer(query_status(service, QueryRefusal.UNREADABLE_IDENTIFIER), str(exc))
    rows = q.instance_files(context.store.engine, query, dicom_visible_institutions(peer.caller))
    files = [RetrievedFile(cls, uid, ts, context.store.path_of(path), study)
             for cls, uid, ts, path, study in rows]
    log.info("%s from %s%s: %d instances", service.value, peer.ae_title,
             f" to {destination_ae}" if destination_ae else "", len(files))
    _audit_retrieval(context, peer, service, query, files, destination_ae)
    return Retrieval(files, node)


def _asked_quietly(identifier: bytes, transfer_syntax: str) -> dict[str, str]:
    try:
        return _asked(_decode(identifier, transfer_syntax))
    except _Unreadable:
        return {}


def _audit_retrieval(context: DimseContext, peer: Peer, service: Service, query: q.Query,
                     files: list[RetrievedFile], destination: str) -> None:
    audit = context.audit
    if audit is None:
        return
    base: dict[str, Any] = {"service": service.value, "keys": _asked_keys(query)}
    if destination:
        base["destination"] = destination
    if not files:  # nothing of the caller's own: missing and foreign look the same
        audit.record(peer.actor(), AuditAction.RETRIEVE, AuditOutcome.FAILURE,
                     detail={**base, "instances": 0})
        return
    counts: dict[str, int] = {}
    for f in files:
        counts[f.study_uid] = counts.get(f.study_uid, 0) + 1
    for study_uid, count in sorted(counts.items()):  # the audit trail names each study's patient
        audit.record(peer.actor(), AuditAction.RETRIEVE, study_uid=study_uid,
                     detail={**base, "instances": count})
