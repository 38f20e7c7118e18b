"""pynetdicom's transport: associations that propose C-MOVE or C-GET (or all of them when the
lean transport is off), served by pynetdicom's state machine and service classes over the
handlers of :mod:`.handlers`.

The listener has already read and checked the connection's A-ASSOCIATE-RQ; pynetdicom gets it
replayed by :class:`CheckedSocket`, which also refuses any later PDU longer than the archive
accepts. Retrieved instances are sent as stored (byte-identical), or converted to a transfer
syntax the peer accepted when it did not accept the stored one (:mod:`.convert`), through
pynetdicom's own way of sending a file's bytes (``send_c_store`` with a path,
``STORE_SEND_CHUNKED_DATASET``): pynetdicom's
C-GET/C-MOVE service classes only take Dataset objects from handlers and would re-encode them,
so the handlers yield :class:`StoredInstance` markers, and the associations that send them are
this module's own: :class:`ArchiveAssociation` (C-GET: the acceptor itself) and, for C-MOVE,
the destination association that :class:`ArchiveAE` opens. Both seams (the service classes
calling ``assoc.send_c_store`` and ``assoc.ae.associate``) are pinned by a test against the
pynetdicom version this was written for.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Callable, Iterator
from copy import deepcopy
from io import BytesIO
from typing import Any, cast

from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom import AE, _config, evt
from pynetdicom._globals import MODE_ACCEPTOR
from pynetdicom.association import Association
from pynetdicom.dsutils import decode
from pynetdicom.pdu_primitives import A_ASSOCIATE
from pynetdicom.presentation import PresentationContext, build_context
from pynetdicom.transport import AddressInformation, AssociationSocket

from consilium.archive.dicomfile import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from consilium.archive.dimse.reactor import keep_responses_for_the_sender
from consilium.archive.pixel_guard import PixelLimits
from consilium.archive.rendered import can_decode
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
from consilium.settings import Settings

from . import convert, handlers, wire
from . import worklist as mwl
from .handlers import Answer, AssociationRecord, DimseContext, Peer, RetrievedFile
from .status import (
    CANCEL,
    MOVE_DESTINATION_UNKNOWN,
    PENDING,
    SUCCESS,
    UNABLE_TO_PROCESS,
    Service,
)

log = logging.getLogger(__name__)

EXPLICIT_BIG_ENDIAN = "1.2.840.10008.1.2.2"


def configure_pynetdicom() -> None:
    """Process-wide pynetdicom options this server relies on (set when a server is made)."""
    _config.STORE_SEND_CHUNKED_DATASET = True  # send_c_store(path) sends the file's bytes
    _config.LOG_HANDLER_LEVEL = "none"
    # pynetdicom formats every identifier for its log even when nobody reads it (~9% of C-FIND)
    _config.LOG_REQUEST_IDENTIFIERS = False
    _config.LOG_RESPONSE_IDENTIFIERS = False


# -- sending stored instances unchanged --------------------------------------------------------


class StoredInstance(Dataset):
    """A stored file to send as a C-STORE sub-operation without decoding it (what pynetdicom's
    C-GET/C-MOVE service classes require a handler to yield is a Dataset)."""

    def __init__(self, stored: RetrievedFile) -> None:
        super().__init__()
        self.SOPClassUID = UID(stored.sop_class)
        self.SOPInstanceUID = UID(stored.sop_instance)
        self.__dict__["stored"] = stored


def send_stored(send: Callable[..., Dataset], accepted: list[PresentationContext],
                sock: Any, instance: StoredInstance, limits: PixelLimits | None = None,
                **kwargs: Any) -> Dataset:
    """One C-STORE sub-operation of a stored instance: its bytes as stored when the peer
    accepted its transfer syntax; else converted to one the peer accepted for its SOP class
    (:mod:`.convert`: decompressed, or recompressed lossless where asked; the SOP Instance UID
    unchanged); else refused with the reason, logged (the service class counts the
    sub-operation as failed)."""
    # sub-operations wait for each response: Nagle would add ~40 ms to every one
    raw_socket = getattr(sock, "socket", None)
    if raw_socket is not None:
        with contextlib.suppress(OSError):
            raw_socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    stored: RetrievedFile = instance.__dict__["stored"]
    ts = UID(stored.transfer_syntax)
    mine = [cx for cx in accepted if cx.abstract_syntax == stored.sop_class and cx.as_scu]
    if any(cx.transfer_syntax[0] == ts for cx in mine):
        return send(stored.path, **kwargs)  # the file's bytes after its meta, as they are
    offered = list(dict.fromkeys(str(cx.transfer_syntax[0]) for cx in mine))
    try:
        with convert.converted(stored.path, str(ts), offered, limits or PixelLimits()) as path:
            return send(path, **kwargs)
    except convert.NotSent as exc:
        log.warning("C-STORE sub-operation of %s not sent: %s", stored.sop_instance, exc)
        raise


class ArchiveAssociation(Association):
    """An association this server accepted: it knows its peer and what it stored, and sends
    :class:`StoredInstance` sub-operations (C-GET) as stored."""

    peer: Peer
    record: AssociationRecord

    def send_c_store(self, dataset: Any, msg_id: int = 1, priority: int = 2,
                     originator_aet: str | None = None, originator_id: int | None = None
                     ) -> Dataset:
        kwargs: dict[str, Any] = {"msg_id": msg_id, "priority": priority,
                                  "originator_aet": originator_aet,
                                  "originator_id": originator_id}
        if isinstance(dataset, StoredInstance):
            return send_stored(super().send_c_store, self.accepted_contexts, self.dul.socket,
                               dataset, getattr(self.ae, "pixel_limits", None), **kwargs)
        return super().send_c_store(dataset, **kwargs)


class _MoveDestination:
    """The association pynetdicom's C-MOVE service opens to the destination, sending
    :class:`StoredInstance` sub-operations as stored; everything else is the association's."""

    def __init__(self, assoc: Association) -> None:
        self._assoc = assoc
        keep_responses_for_the_sender(assoc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._assoc, name)

    def send_c_store(self, dataset: Any, **kwargs: Any) -> Dataset:
        if isinstance(dataset, StoredInstance):
            return send_stored(self._assoc.send_c_store, self._assoc.accepted_contexts,
                               self._assoc.dul.socket, dataset,
                               getattr(self._assoc.ae, "pixel_limits", None), **kwargs)
        return self._assoc.send_c_store(dataset, **kwargs)


class ArchiveAE(AE):
    """The server's application entity; the associations it opens (C-MOVE destinations) send
    stored instances unchanged (or converted, see :func:`send_stored`)."""

    pixel_limits: PixelLimits = PixelLimits()

    def associate(self, *args: Any, **kwargs: Any) -> Association:
        return cast(Association, _MoveDestination(super().associate(*args, **kwargs)))


# -- the socket pynetdicom reads ---------------------------------------------------------------


class CheckedSocket(AssociationSocket):
    """The accepted connection as pynetdicom reads it: first the A-ASSOCIATE-RQ the listener
    has already read and checked, then the socket, where a PDU that declares more than
    ``limit`` bytes is answered with an A-ABORT and ends the connection unread.

    pynetdicom reads each PDU as recv(6) for the header, then recv(length) for the rest."""

    def __init__(self, assoc: Association, sock: socket.socket, first_pdu: bytes,
                 limit: int) -> None:
        super().__init__(assoc, client_socket=sock)
        self._replay = bytearray(first_pdu)
        self._limit = limit

    @property
    def ready(self) -> bool:
        return bool(self._replay) or bool(super().ready)

    def recv(self, nr_bytes: int) -> bytearray:
        if self._replay:
            out = self._replay[:nr_bytes]
            del self._replay[:nr_bytes]
            if len(out) < nr_bytes:
                out += super().recv(nr_bytes - len(out))
            return out
        if nr_bytes > self._limit:
            log.warning("association from %s aborted: a PDU of %d bytes, more than the %d we "
                        "accept", self.assoc.requestor.ae_title, nr_bytes, self._limit)
            if self.socket is not None:
                wire.send_abort(self.socket, wire.ABORT_INVALID_PARAMETER)
            return bytearray()  # pynetdicom: PDU cut short, the connection is closed
        return super().recv(nr_bytes)


# -- the application entity and its handlers -----------------------------------------------------

FIND_MODELS = (PATIENT_ROOT_FIND, STUDY_ROOT_FIND)
MOVE_MODELS = (PATIENT_ROOT_MOVE, STUDY_ROOT_MOVE)
GET_MODELS = (PATIENT_ROOT_GET, STUDY_ROOT_GET)


def make_ae(settings: Settings) -> ArchiveAE:
    """The contexts the archive accepts (the lean transport negotiates with the same list)."""
    configure_pynetdicom()
    ae = ArchiveAE(ae_title=settings.dicom_ae_title)
    ae.pixel_limits = PixelLimits.of(settings)
    ae.maximum_pdu_size = settings.dicom_max_pdu
    ae.network_timeout = settings.dicom_network_timeout
    ae.acse_timeout = settings.dicom_artim_timeout
    ae.dimse_timeout = settings.dicom_network_timeout
    # the listener counts and limits associations; pynetdicom's own count (which includes the
    # C-MOVE destination associations it opens) must never refuse first
    ae.maximum_associations = 2 * settings.dicom_max_associations + 8
    ae.implementation_class_uid = UID(IMPLEMENTATION_CLASS_UID)
    ae.implementation_version_name = IMPLEMENTATION_VERSION_NAME
    for sop in STORAGE_SOP_CLASSES:
        # scp_role/scu_role: accept the SCP/SCU role selection a C-GET requestor proposes
        ae.add_supported_context(sop, ACCEPTED_TRANSFER_SYNTAXES, scu_role=True, scp_role=True)
    ae.add_supported_context(VERIFICATION, ACCEPTED_TRANSFER_SYNTAXES[:2])
    for model in (*FIND_MODELS, *MOVE_MODELS, *GET_MODELS):
        # little endian only: C-FIND identifiers are encoded by the archive itself
        ae.add_supported_context(model, ACCEPTED_TRANSFER_SYNTAXES[:2])
    # the Modality Worklist and MPPS (worklist.py): served on this transport only
    ae.add_supported_context(mwl.MODALITY_WORKLIST_FIND, ACCEPTED_TRANSFER_SYNTAXES[:2])
    ae.add_supported_context(mwl.PERFORMED_PROCEDURE_STEP, ACCEPTED_TRANSFER_SYNTAXES[:2])
    return ae


class PynetdicomTransport:
    """Serves one accepted association with pynetdicom, on the calling thread."""

    def __init__(self, context: DimseContext, ae: ArchiveAE) -> None:
        self.context = context
        self.ae = ae
        self.events: list[tuple[Any, Callable[..., Any]]] = [
            (evt.EVT_C_ECHO, self.on_echo),
            (evt.EVT_C_STORE, self.on_store),
            (evt.EVT_C_FIND, self.on_find),
            (evt.EVT_C_MOVE, self.on_move),
            (evt.EVT_C_GET, self.on_get),
            (evt.EVT_N_CREATE, self.on_n_create),
            (evt.EVT_N_SET, self.on_n_set),
        ]

    def serve(self, sock: socket.socket, local: Any, remote: Any, first_pdu: bytes,
              request: A_ASSOCIATE, peer: Peer) -> None:
        sock.settimeout(self.context.settings.dicom_network_timeout)
        assoc = ArchiveAssociation(self.ae, MODE_ACCEPTOR)
        assoc.peer = peer
        assoc.record = AssociationRecord(self.context, peer)
        assoc.set_socket(CheckedSocket(assoc, sock, first_pdu,
                                       self.context.settings.dicom_max_pdu))
        assoc.acceptor.maximum_length = self.ae.maximum_pdu_size
        assoc.acceptor.ae_title = self.ae.ae_title
        assoc.acceptor.address_info = AddressInformation.from_tuple(local)
        assoc.acceptor.implementation_class_uid = self.ae.implementation_class_uid
        assoc.acceptor.implementation_version_name = self.ae.implementation_version_name
        assoc.acceptor.supported_contexts = _in_requested_order(self.ae.supported_contexts,
                                                                request)
        assoc.requestor.address_info = AddressInformation.from_tuple(remote)
        for event, handler in self.events:
            assoc.bind(event, handler)
        assoc.start()
        try:
            assoc.join()
        finally:
            assoc.record.close()

    # -- handlers: event in, handler called, answer out ------------------------------------------

    @staticmethod
    def _assoc(event: Any) -> ArchiveAssociation:
        return cast(ArchiveAssociation, event.assoc)

    def on_echo(self, event: Any) -> int:
        return handlers.echo().status

    def on_store(self, event: Any) -> Dataset:
        request = event.request
        answer = handlers.store(self.context, self._assoc(event).record,
                                request.DataSet.getbuffer(), str(event.context.transfer_syntax),
                                str(request.AffectedSOPClassUID),
                                str(request.AffectedSOPInstanceUID))
        return _status(answer)

    def on_find(self, event: Any) -> Iterator[tuple[int, Dataset | None]]:
        if str(event.context.abstract_syntax) == mwl.MODALITY_WORKLIST_FIND:
            yield from self._worklist(event)
            return
        ts = UID(str(event.context.transfer_syntax))
        answers = handlers.find(self.context, self._assoc(event).peer,
                                event.request.Identifier.getvalue(), str(ts),
                                str(event.context.abstract_syntax), lambda: event.is_cancelled)
        for answer in answers:
            if answer.identifier is not None:
                yield PENDING, decode(BytesIO(answer.identifier), ts.is_implicit_VR, True)
            elif answer.status in (SUCCESS, CANCEL):
                yield answer.status, None
            else:
                yield answer.status, _status(answer)

    def _worklist(self, event: Any) -> Iterator[tuple[int, Dataset | None]]:
        try:
            identifier = event.identifier
        except Exception as exc:  # undecodable: pynetdicom raises many kinds
            yield UNABLE_TO_PROCESS[Service.FIND], _status(Answer(
                UNABLE_TO_PROCESS[Service.FIND], f"undecodable identifier: {exc}"[:64]))
            return
        for status, answer, comment in mwl.worklist_find(
                self.context, self._assoc(event).peer, identifier, lambda: event.is_cancelled):
            if status in (PENDING, SUCCESS, CANCEL):
                yield status, answer
            else:
                yield status, _status(Answer(status, comment))

    def on_n_create(self, event: Any) -> tuple[int, Dataset | None]:
        if str(event.request.AffectedSOPClassUID) != mwl.PERFORMED_PROCEDURE_STEP:
            return 0x0118, None  # no such SOP class
        return mwl.step_create(self.context, self._assoc(event).peer,
                               str(event.request.AffectedSOPInstanceUID or ""),
                               event.attribute_list)

    def on_n_set(self, event: Any) -> tuple[int, Dataset | None]:
        if str(event.request.RequestedSOPClassUID) != mwl.PERFORMED_PROCEDURE_STEP:
            return 0x0118, None
        return mwl.step_set(self.context, self._assoc(event).peer,
                            str(event.request.RequestedSOPInstanceUID or ""),
                            event.modification_list)

    # C-GET and C-MOVE handlers are plain functions returning the generator: a refusal raised
    # when pynetdicom calls them is answered with the service's "unable to process"
    # (status.UNABLE_TO_PROCESS); raised later, at the first yield, it would get another code

    def on_get(self, event: Any) -> Iterator[Any]:
        outcome = handlers.retrieve(self.context, self._assoc(event).peer, Service.GET,
                                    event.request.Identifier.getvalue(),
                                    str(event.context.transfer_syntax),
                                    str(event.context.abstract_syntax))
        if isinstance(outcome, Answer):
            raise RetrievalRefused(outcome.comment)
        return _get_answers(event, outcome.files)

    def on_move(self, event: Any) -> Iterator[Any]:
        destination = event.move_destination
        if isinstance(destination, bytes):
            destination = destination.decode("ascii", "replace")
        outcome = handlers.retrieve(self.context, self._assoc(event).peer, Service.MOVE,
                                    event.request.Identifier.getvalue(),
                                    str(event.context.transfer_syntax),
                                    str(event.context.abstract_syntax), str(destination or ""))
        if isinstance(outcome, Answer):
            if outcome.status == MOVE_DESTINATION_UNKNOWN:
                return iter([(None, None)])  # pynetdicom answers 0xA801
            raise RetrievalRefused(outcome.comment)
        return _move_answers(event, outcome)


def _get_answers(event: Any, files: list[RetrievedFile]) -> Iterator[Any]:
    yield len(files)
    yield from _sub_operations(event, files)


def _move_answers(event: Any, retrieval: handlers.Retrieval) -> Iterator[Any]:
    assert retrieval.destination is not None
    yield (retrieval.destination.host, retrieval.destination.port,
           {"contexts": proposed_contexts(retrieval.files)})
    yield len(retrieval.files)
    yield from _sub_operations(event, retrieval.files)


class RetrievalRefused(Exception):
    """A C-MOVE or C-GET refused before any sub-operation (already logged and audited)."""


def _sub_operations(event: Any, files: list[RetrievedFile]) -> Iterator[tuple[int, Any]]:
    for stored in files:
        if event.is_cancelled:
            yield CANCEL, None
            return
        yield PENDING, StoredInstance(stored)


def _status(answer: Answer) -> Dataset:
    status = Dataset()
    status.Status = answer.status
    if answer.comment:
        status.ErrorComment = answer.comment[:64]  # LO
    return status


def _in_requested_order(supported: list[PresentationContext], request: A_ASSOCIATE
                        ) -> list[PresentationContext]:
    """Our contexts with each one's transfer syntaxes in the requestor's order of preference:
    a C-GET requestor that proposes JPEG first gets its JPEG data sent unchanged, not
    refused or converted."""
    order: dict[str, list[str]] = {}
    for cx in request.presentation_context_definition_list:
        proposed = order.setdefault(str(cx.abstract_syntax), [])
        proposed.extend(str(ts) for ts in cx.transfer_syntax if str(ts) not in proposed)
    contexts = deepcopy(supported)
    for cx in contexts:
        wanted = order.get(str(cx.abstract_syntax))
        if wanted:
            ours = [str(ts) for ts in cx.transfer_syntax]
            preferred: list[str | bytes | UID] = [t for t in wanted if t in ours]
            cx.transfer_syntax = preferred + [t for t in ours if t not in wanted]
    return contexts


def proposed_contexts(files: list[RetrievedFile]) -> list[PresentationContext]:
    """Contexts for a C-MOVE association: each SOP class in each stored transfer syntax, and
    explicit and implicit little endian for every SOP class whose data is uncompressed or can be
    decoded here (sent converted when the destination accepts only those); at most 128 (PS3.8
    limit)."""
    wanted: dict[str, set[str]] = {}
    for f in files:
        wanted.setdefault(f.sop_class, set()).add(f.transfer_syntax)
    contexts: list[PresentationContext] = []
    for sop_class, syntaxes in wanted.items():
        for ts in sorted(syntaxes):
            contexts.append(build_context(sop_class, [ts]))
        if any(is_uncompressed(t) or can_decode(t) for t in syntaxes):
            contexts.append(build_context(sop_class, ["1.2.840.10008.1.2.1",
                                                      "1.2.840.10008.1.2"]))
    if len(contexts) > 128:
        log.warning("C-MOVE needs %d presentation contexts; proposing the first 128",
                    len(contexts))
    return contexts[:128]
