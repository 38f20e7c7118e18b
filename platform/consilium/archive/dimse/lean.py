"""The lean transport: associations that only store, verify or C-FIND, served on the
connection's own thread.

Why: a modality sends one C-STORE at a time and waits for each response, so per-message
latency is throughput. pynetdicom moves every PDU through a DUL thread, queues and an
association reactor thread that poll with 1 ms sleeps, plus pure-Python PDU objects; measured
here that capped one association at about 130-150 images/s. Here: blocking reads straight into
one buffer, the dataset bytes handed to the handler as received, responses encoded with
``struct``. The services themselves are :mod:`.handlers`, the same that pynetdicom's transport
calls. Negotiation reuses pynetdicom's PDU classes and presentation context negotiation, so
both transports accept exactly the same contexts. PS3.8 sections inline.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from pydicom.uid import UID
from pynetdicom.pdu import A_ASSOCIATE_AC
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
    SCP_SCU_RoleSelectionNegotiation,
)
from pynetdicom.presentation import PresentationContext, negotiate_as_acceptor

from consilium.archive.dicomfile import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from consilium.archive.sop import (
    PATIENT_ROOT_FIND,
    STORAGE_SOP_CLASSES,
    STUDY_ROOT_FIND,
    VERIFICATION,
)

from . import handlers, wire
from .handlers import AssociationRecord, DimseContext, Peer
from .status import PENDING

log = logging.getLogger(__name__)

LEAN_ABSTRACT_SYNTAXES = frozenset(STORAGE_SOP_CLASSES) | {
    VERIFICATION, STUDY_ROOT_FIND, PATIENT_ROOT_FIND}
_APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
_SEND_BATCH = 1 << 16  # C-FIND responses are written in batches of about this many bytes
# The message buffer an association starts with (a 512x512 CT image is 0.5 MB); it grows to
# the largest data set received (whose bytes the peer has sent, not merely declared)
_FIRST_DATASET_BUFFER = 1 << 20
_COMMAND_LIMIT = 1 << 16  # a command set is a few hundred bytes
_SMALL_PDU = 1 << 14  # PDUs up to this size are read whole (commands, identifiers)


def serves(request: A_ASSOCIATE) -> bool:
    """True if every proposed context is Storage, Verification or Q/R FIND and no SCP/SCU role
    is negotiated (a C-GET requestor): such an association is served here."""
    contexts = request.presentation_context_definition_list
    if not contexts:
        return False
    if any(isinstance(i, SCP_SCU_RoleSelectionNegotiation) for i in request.user_information):
        return False
    return all(str(cx.abstract_syntax) in LEAN_ABSTRACT_SYNTAXES for cx in contexts)


class LeanAssociation:
    """One association on the calling thread: :meth:`run` accepts it and serves it until
    the peer releases or aborts, falls silent, or breaks the protocol."""

    def __init__(self, context: DimseContext, sock: socket.socket, peer: Peer,
                 supported: list[PresentationContext]) -> None:
        self.context = context
        self.settings = context.settings
        self.sock = sock
        self.peer = peer
        self.supported = supported
        self.contexts: dict[int, PresentationContext] = {}
        self.peer_max_pdu = 16384
        self.record = AssociationRecord(context, peer)
        self._message: dict[str, Any] | None = None  # a command waiting for its data set
        self._command_set = bytearray()
        self._dataset = bytearray()  # the message buffer, reused (made by the first data set)
        self._received = 0  # bytes of the current data set in it

    def run(self, request: A_ASSOCIATE) -> None:
        wire.set_read_timeout(self.sock, self.settings.dicom_network_timeout)
        try:
            self._accept(request)
            self._serve()
        except wire.ProtocolError as exc:
            log.warning("association from %s aborted: %s", self.peer.ae_title, exc)
            wire.send_abort(self.sock, exc.reason)
        except (wire.PeerGone, OSError) as exc:
            log.info("association from %s ended: %s", self.peer.ae_title, exc)
        finally:
            if self.record.acknowledged:
                log.info("association from %s: %d instances stored", self.peer.ae_title,
                         self.record.acknowledged)
            self.record.close()

    # -- association establishment (PS3.8 9.3.3) ---------------------------------------------

    def _accept(self, request: A_ASSOCIATE) -> None:
        for item in request.user_information:
            if isinstance(item, MaximumLengthNotification):
                self.peer_max_pdu = item.maximum_length_received or 0  # 0: no limit
        results, _roles = negotiate_as_acceptor(
            request.presentation_context_definition_list, self.supported, None)
        self.contexts = {cx.context_id or 0: cx for cx in results if cx.result == 0x00}
        accept = A_ASSOCIATE()
        accept.application_context_name = UID(_APPLICATION_CONTEXT)
        accept.calling_ae_title = request.calling_ae_title
        accept.called_ae_title = request.called_ae_title
        accept.result = 0x00
        accept.result_source = 0x01
        accept.presentation_context_definition_results_list = results
        max_length = MaximumLengthNotification()
        max_length.maximum_length_received = self.settings.dicom_max_pdu
        implementation = ImplementationClassUIDNotification()
        implementation.implementation_class_uid = UID(IMPLEMENTATION_CLASS_UID)
        version = ImplementationVersionNameNotification()
        version.implementation_version_name = IMPLEMENTATION_VERSION_NAME
        accept.user_information = [max_length, implementation, version]
        pdu = A_ASSOCIATE_AC()
        pdu.from_primitive(accept)
        self.sock.sendall(pdu.encode())

    # -- data transfer (PS3.8 9.3.5) -----------------------------------------------------------

    def _serve(self) -> None:
        """Read PDUs until the association ends; a PDU may not declare more than the maximum
        we accepted. A small PDU (a command, an identifier) is read whole; in a large one each
        PDV item's header is read on its own and its data set fragment straight into the
        message buffer (no copy of what is often 512 KB per image)."""
        sock = self.sock
        limit = self.settings.dicom_max_pdu
        header = bytearray(wire.HEADER.size)
        header_view = memoryview(header)
        small_view = memoryview(bytearray(_SMALL_PDU))
        item = bytearray(wire.PDV_HEADER.size)
        item_view = memoryview(item)
        while True:
            wire.recv_exact(sock, header_view)
            pdu_type, length = wire.HEADER.unpack(header)
            if pdu_type != wire.P_DATA_TF:
                self._control(pdu_type, length)
                return
            if length > limit:  # what we advertised in the A-ASSOCIATE-AC
                raise wire.ProtocolError(f"P-DATA-TF of {length} bytes, more than the "
                                         f"{limit} we accept", wire.ABORT_INVALID_PARAMETER)
            if length <= _SMALL_PDU:
                pdu = small_view[:length]
                wire.recv_exact(sock, pdu)
                pos = 0
                while pos < length:
                    size, context_id, control = self._item(pdu[pos : pos + 6], length - pos)
                    fragment = pdu[pos + 6 : pos + 6 + size]
                    pos += 6 + size
                    if control & 0x01:
                        self._command_fragment(context_id, control, fragment)
                    else:
                        self._dataset_room(size)[:] = fragment
                        self._dataset_fragment(size, control)
                continue
            while length:
                wire.recv_exact(sock, item_view)
                size, context_id, control = self._item(item_view, length)
                length -= 6 + size
                if control & 0x01:
                    fragment = memoryview(bytearray(size))
                    wire.recv_exact(sock, fragment)
                    self._command_fragment(context_id, control, fragment)
                else:
                    wire.recv_exact(sock, self._dataset_room(size))
                    self._dataset_fragment(size, control)

    def _item(self, header: memoryview, remaining: int) -> tuple[int, int, int]:
        """(fragment length, context id, message control header) of a PDV item (PS3.8 9.3.5.1)
        that must fit in the ``remaining`` bytes of its PDU."""
        if remaining < wire.PDV_HEADER.size:
            raise wire.ProtocolError("PDV item header cut short", wire.ABORT_INVALID_PARAMETER)
        item_length, context_id, control = wire.PDV_HEADER.unpack(header)
        if item_length < 2 or item_length + 4 > remaining:
            raise wire.ProtocolError(f"PDV item of {item_length} bytes in the {remaining} left "
                                     "of its PDU", wire.ABORT_INVALID_PARAMETER)
        if context_id not in self.contexts:
            raise wire.ProtocolError(f"data on unaccepted context {context_id}",
                                     wire.ABORT_INVALID_PARAMETER)
        if not control & 0x01 and self._message is None:
            raise wire.ProtocolError("data set fragment without a command")
        if control & 0x01 and self._message is not None:
            raise wire.ProtocolError("command before the data set's last fragment")
        return item_length - 2, context_id, control

    def _command_fragment(self, context_id: int, control: int, fragment: memoryview) -> None:
        if len(self._command_set) + len(fragment) > _COMMAND_LIMIT:
            raise wire.ProtocolError(f"command set over {_COMMAND_LIMIT} bytes",
                                     wire.ABORT_INVALID_PARAMETER)
        self._command_set += fragment
        if control & 0x02:
            message = self._command(self._command_set, context_id)
            self._command_set.clear()
            if message["has_dataset"]:
                self._message = message
            else:
                self._dispatch(message, b"")

    def _dataset_room(self, size: int) -> memoryview:
        """The next ``size`` bytes of the message buffer, for a data set fragment."""
        end = self._received + size
        if end > len(self._dataset):  # a new buffer: views of the old one may still live
            grown = bytearray(max(2 * len(self._dataset), end, _FIRST_DATASET_BUFFER))
            grown[: self._received] = memoryview(self._dataset)[: self._received]
            self._dataset = grown
        return memoryview(self._dataset)[self._received : end]

    def _dataset_fragment(self, size: int, control: int) -> None:
        self._received += size
        if control & 0x02:
            message, self._message = self._message, None
            assert message is not None
            received, self._received = self._received, 0
            self._dispatch(message, memoryview(self._dataset)[:received])

    def _control(self, pdu_type: int, length: int) -> None:
        """A PDU other than P-DATA-TF: release, abort, or a protocol error."""
        if pdu_type == wire.RELEASE_RQ and length <= wire.CONTROL_PDU_LIMIT:
            wire.recv_exact(self.sock, memoryview(bytearray(length)))
            self.sock.sendall(wire.RELEASE_RP_PDU)
            return
        if pdu_type == wire.ABORT:
            log.info("association from %s aborted by the peer", self.peer.ae_title)
            return
        raise wire.ProtocolError(f"unexpected PDU type 0x{pdu_type:02X} ({length} bytes)",
                                 wire.ABORT_UNEXPECTED_PDU if pdu_type <= wire.ABORT
                                 else wire.ABORT_UNRECOGNIZED_PDU)

    def _command(self, raw: bytearray, context_id: int) -> dict[str, Any]:
        try:
            values = wire.parse_command(raw)
            return {
                "field": wire.us_of(values, wire.COMMAND_FIELD),
                "message_id": wire.us_of(values, wire.MESSAGE_ID),
                "sop_class": wire.uid_of(values.get(wire.AFFECTED_SOP_CLASS, b"")),
                "sop_instance": wire.uid_of(values.get(wire.AFFECTED_SOP_INSTANCE, b"")),
                "has_dataset": wire.us_of(values, wire.DATASET_TYPE, wire.NO_DATASET)
                != wire.NO_DATASET,
                "context_id": context_id,
            }
        except ValueError as exc:  # a command set we cannot read ends the association
            raise wire.ProtocolError(f"unreadable command set: {exc}",
                                     wire.ABORT_INVALID_PARAMETER) from exc

    def _dispatch(self, message: dict[str, Any], dataset: memoryview | bytes) -> None:
        field = message["field"]
        context = self.contexts[message["context_id"]]
        if field == wire.C_STORE_RQ:
            answer = handlers.store(self.context, self.record, dataset,
                                    str(context.transfer_syntax[0]), message["sop_class"],
                                    message["sop_instance"])
            self._respond(message, wire.encode_response(
                wire.C_STORE_RSP, message["message_id"], message["sop_class"], answer.status,
                message["sop_instance"], answer.comment))
        elif field == wire.C_ECHO_RQ:
            answer = handlers.echo()
            self._respond(message, wire.encode_response(
                wire.C_ECHO_RSP, message["message_id"], str(context.abstract_syntax),
                answer.status))
        elif field == wire.C_FIND_RQ:
            self._find(message, context, bytes(dataset))
        elif field == wire.C_CANCEL_RQ:
            return  # every C-FIND is answered in full before the next message is read
        else:
            raise wire.ProtocolError(f"unsupported command 0x{field:04X} on a storage "
                                     "association")

    def _find(self, message: dict[str, Any], context: PresentationContext,
              identifier: bytes) -> None:
        """C-FIND responses written in batches: each pending one with its identifier (encoded
        by the handler for this context), then the final status."""
        sop_class = str(context.abstract_syntax)
        context_id = message["context_id"]
        pending = wire.encode_response(wire.C_FIND_RSP, message["message_id"], sop_class,
                                       PENDING, has_dataset=True)
        out = bytearray()
        for answer in handlers.find(self.context, self.peer, identifier,
                                    str(context.transfer_syntax[0]), sop_class):
            if answer.identifier is not None:
                out += wire.p_data(context_id, 0x03, pending, self.peer_max_pdu)
                out += wire.p_data(context_id, 0x02, answer.identifier, self.peer_max_pdu)
                if len(out) > _SEND_BATCH:
                    self.sock.sendall(out)
                    out.clear()
            else:
                out += wire.p_data(context_id, 0x03, wire.encode_response(
                    wire.C_FIND_RSP, message["message_id"], sop_class, answer.status,
                    error_comment=answer.comment), self.peer_max_pdu)
        self.sock.sendall(out)

    def _respond(self, message: dict[str, Any], command: bytes) -> None:
        self.sock.sendall(wire.p_data(message["context_id"], 0x03, command, self.peer_max_pdu))
