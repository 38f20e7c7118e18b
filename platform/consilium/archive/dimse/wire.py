"""The DICOM upper layer on the wire (PS3.8 9.3) and DIMSE command sets (PS3.7 6.3, 9.3):
reading PDUs within a byte and a time budget, and encoding the few PDUs and commands the
archive writes itself. Plain functions over a socket; no association state.

Every read is bounded twice: by length (a PDU may not declare more than the receiver allows,
whatever it says) and by time (a deadline or the network time-out), so a peer decides neither
how much memory a connection takes nor how long it is held.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import time

# PDU types (PS3.8 9.3.1)
ASSOCIATE_RQ, ASSOCIATE_AC, ASSOCIATE_RJ = 0x01, 0x02, 0x03
P_DATA_TF, RELEASE_RQ, RELEASE_RP, ABORT = 0x04, 0x05, 0x06, 0x07

HEADER = struct.Struct(">BxI")  # PDU type, reserved, length
PDV_HEADER = struct.Struct(">IBB")  # item length, presentation context id, message control header
ELEMENT = struct.Struct("<HHI")  # implicit VR little endian element header

# A-ABORT reasons when the service provider aborts (PS3.8 9.3.8)
ABORT_UNRECOGNIZED_PDU, ABORT_UNEXPECTED_PDU = 0x01, 0x02
ABORT_UNRECOGNIZED_PARAMETER, ABORT_INVALID_PARAMETER = 0x04, 0x06

# An A-ASSOCIATE-RQ longer than this is refused unread. 128 presentation contexts (the most
# PS3.8 allows) of a SOP class with 30 transfer syntaxes each take about 100 KB.
ASSOCIATE_RQ_LIMIT = 256 * 1024
# Every PDU other than P-DATA-TF is a few bytes (A-RELEASE, A-ABORT: 4)
CONTROL_PDU_LIMIT = 1024

RELEASE_RP_PDU = bytes([RELEASE_RP, 0, 0, 0, 0, 4, 0, 0, 0, 0])

# DIMSE command fields (PS3.7 E.1) and data set types
C_STORE_RQ, C_STORE_RSP = 0x0001, 0x8001
C_FIND_RQ, C_FIND_RSP = 0x0020, 0x8020
C_ECHO_RQ, C_ECHO_RSP = 0x0030, 0x8030
C_CANCEL_RQ = 0x0FFF
HAS_DATASET, NO_DATASET = 0x0000, 0x0101
AFFECTED_SOP_CLASS, COMMAND_FIELD, MESSAGE_ID = 0x0002, 0x0100, 0x0110
DATASET_TYPE, AFFECTED_SOP_INSTANCE = 0x0800, 0x1000


class PeerGone(Exception):
    """The peer closed, aborted or fell silent: the association is over."""


class ProtocolError(Exception):
    """The peer broke the upper layer protocol; ``reason`` goes into the A-ABORT."""

    def __init__(self, message: str, reason: int = ABORT_UNEXPECTED_PDU) -> None:
        super().__init__(message)
        self.reason = reason


def abort_pdu(reason: int = 0) -> bytes:
    """A-ABORT, source: service provider (2)."""
    return bytes([ABORT, 0, 0, 0, 0, 4, 0, 0, 0x02, reason])


def reject_pdu(result: int, source: int, reason: int) -> bytes:
    """A-ASSOCIATE-RJ (PS3.8 9.3.4)."""
    return bytes([ASSOCIATE_RJ, 0, 0, 0, 0, 4, 0, result, source, reason])


def send_abort(sock: socket.socket, reason: int) -> None:
    with contextlib.suppress(OSError):
        sock.sendall(abort_pdu(reason))


def set_read_timeout(sock: socket.socket, seconds: float) -> None:
    """Blocking reads and writes that fail after ``seconds`` of silence, kept by the kernel
    (SO_RCVTIMEO/SO_SNDTIMEO): unlike ``settimeout`` it costs no poll() before every recv on
    the receive path of every PDU. A read that times out raises an OSError (EAGAIN)."""
    sock.settimeout(None)
    whole = int(seconds)
    value = struct.pack("ll", whole, int((seconds - whole) * 1_000_000))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)


def recv_exact(sock: socket.socket, view: memoryview, deadline: float | None = None) -> None:
    """Fill ``view`` from the socket. With a ``deadline`` (time.monotonic) the whole read must
    end by then; without one, the socket's own time-out applies to each recv, which waits for
    all of ``view`` (MSG_WAITALL: one system call for a 128 KiB fragment instead of one per
    segment that has arrived; TLS sockets take no flags)."""
    flags = socket.MSG_WAITALL if deadline is None and not isinstance(sock, ssl.SSLSocket) else 0
    while view:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PeerGone("time-out")
            sock.settimeout(remaining)
        try:
            received = sock.recv_into(view, 0, flags)
        except (TimeoutError, BlockingIOError) as exc:
            raise PeerGone("time-out") from exc
        if received == 0:
            raise PeerGone("connection closed")
        view = view[received:]


def read_first_pdu(sock: socket.socket, timeout: float) -> bytes:
    """The connection's first PDU, which must be an A-ASSOCIATE-RQ of at most
    :data:`ASSOCIATE_RQ_LIMIT` bytes, all of it within ``timeout`` seconds (the ARTIM timer,
    PS3.8 9.1.4). Raises PeerGone (silence, short, closed) or ProtocolError (anything else)."""
    deadline = time.monotonic() + timeout
    header = bytearray(HEADER.size)
    recv_exact(sock, memoryview(header), deadline)
    pdu_type, length = HEADER.unpack(header)
    if pdu_type != ASSOCIATE_RQ:
        raise ProtocolError(f"first PDU is of type 0x{pdu_type:02X}, not an A-ASSOCIATE-RQ",
                            ABORT_UNEXPECTED_PDU if pdu_type <= ABORT else ABORT_UNRECOGNIZED_PDU)
    if length > ASSOCIATE_RQ_LIMIT:
        raise ProtocolError(f"A-ASSOCIATE-RQ declares {length} bytes", ABORT_INVALID_PARAMETER)
    pdu = bytearray(HEADER.size + length)
    pdu[: HEADER.size] = header
    recv_exact(sock, memoryview(pdu)[HEADER.size :], deadline)
    return bytes(pdu)


def drain_until_closed(sock: socket.socket, timeout: float) -> None:
    """After an A-ASSOCIATE-RJ or A-ABORT the requestor closes the connection (PS3.8 9.2.2):
    wait for that, at most ``timeout`` seconds, instead of closing first, which could reset
    the connection before the peer has read our answer."""
    deadline = time.monotonic() + timeout
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
    scratch = bytearray(4096)
    with contextlib.suppress(OSError, PeerGone):
        while time.monotonic() < deadline:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            if sock.recv_into(scratch) == 0:
                return


# -- DIMSE command sets (always implicit VR little endian, PS3.7 6.3.1) --------------------------


def parse_command(raw: bytes | bytearray) -> dict[int, bytes]:
    """The elements of a command set by element number, read directly (a pydicom decode per
    C-STORE cost 0.07 ms). Raises ValueError if an element is cut short."""
    values: dict[int, bytes] = {}
    pos = 0
    size = len(raw)
    while pos < size:
        if pos + 8 > size:
            raise ValueError("command set ends within an element header")
        group, element, length = ELEMENT.unpack_from(raw, pos)
        end = pos + 8 + length
        if end > size:
            raise ValueError(f"command element ({group:04X},{element:04X}) is cut short")
        if group == 0x0000:
            values[element] = bytes(raw[pos + 8 : end])
        pos = end
    return values


def uid_of(value: bytes) -> str:
    return value.decode("ascii", "replace").strip("\x00 ")


def us_of(values: dict[int, bytes], element: int, default: int | None = None) -> int:
    value = values.get(element)
    if value is None or len(value) < 2:
        if default is None:
            raise ValueError(f"command element (0000,{element:04X}) is missing")
        return default
    return int(struct.unpack_from("<H", value)[0])


def _element(element: int, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\x00"  # UIDs are padded with NUL, text with a space; both end here
    return ELEMENT.pack(0x0000, element, len(value)) + value


def encode_response(
    command_field: int, message_id: int, sop_class: str, status: int,
    sop_instance: str | None = None, error_comment: str = "", has_dataset: bool = False,
) -> bytes:
    """A response command set (PS3.7 9.3.1.2 / 9.3.2.2 / 9.3.5.2), group length first."""
    body = _element(0x0002, sop_class.encode("ascii"))
    body += _element(0x0100, struct.pack("<H", command_field))
    body += _element(0x0120, struct.pack("<H", message_id))
    body += _element(0x0800, struct.pack("<H", HAS_DATASET if has_dataset else NO_DATASET))
    body += _element(0x0900, struct.pack("<H", status))
    if error_comment:
        comment = error_comment[:64].encode("ascii", "replace")
        body += _element(0x0902, comment + b" " if len(comment) % 2 else comment)
    if sop_instance is not None:
        body += _element(0x1000, sop_instance.encode("ascii"))
    return _element(0x0000, struct.pack("<I", len(body))) + body


def p_data(context_id: int, control: int, data: bytes | bytearray, max_pdu: int) -> bytes:
    """P-DATA-TF PDUs carrying ``data`` (a command if ``control`` has bit 0), fragmented so that
    no PDU exceeds the peer's maximum length (0: no limit)."""
    room = max(max_pdu - 6, 64) if max_pdu else max(len(data), 1)
    out = bytearray()
    last_start = max(len(data) - 1, 0) // room * room
    for start in range(0, max(len(data), 1), room):
        chunk = data[start : start + room]
        flags = (control & 0x01) | (0x02 if start == last_start else 0x00)
        out += HEADER.pack(P_DATA_TF, len(chunk) + 6)
        out += PDV_HEADER.pack(len(chunk) + 2, context_id, flags)
        out += chunk
    return bytes(out)
