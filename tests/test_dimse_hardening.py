"""The DICOM port bounds what a peer can take, whatever it sends: a PDU may not declare more than
the archive accepts, a connection that does not deliver its A-ASSOCIATE-RQ within the ARTIM
time-out is closed, idle or junk connections never count as associations, and the number of
associations a process serves at once is limited.

dcmtk's tools cannot send malformed input, so these tests speak the upper layer protocol over
raw sockets (PS3.8 9.3), with dcmtk's tools as the real peers next to them.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom.pdu import A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import A_ASSOCIATE, MaximumLengthNotification
from pynetdicom.presentation import build_context

from tests.conftest import ConsiliumServer, dcmtk, pydicom_data_dir

pytestmark = pytest.mark.usefixtures("dcmtk_available")

ARTIM = 3.0  # seconds: dicom.artim_timeout of the server under test
NETWORK = 4.0  # dicom.network_timeout
LIMIT = 4  # dicom.max_associations
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
CT_SMALL = pydicom_data_dir() / "test_files" / "CT_small.dcm"
CT_SMALL_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"
GIB = 1 << 30


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsiliumServer]:
    srv = ConsiliumServer(
        tmp_path_factory.mktemp("hardening") / "var",
        extra_env={"CONSILIUM_DICOM_ARTIM_TIMEOUT": str(ARTIM),
                   "CONSILIUM_DICOM_NETWORK_TIMEOUT": str(NETWORK),
                   "CONSILIUM_DICOM_MAX_ASSOCIATIONS": str(LIMIT)},
    ).start()
    run = dcmtk("storescu", "-aet", "CITY_CT1", *srv.address(), str(CT_SMALL))
    assert run.returncode == 0, run.stderr
    yield srv
    srv.stop()


def associate_rq(calling_ae: str, abstract_syntaxes: list[str]) -> bytes:
    request = A_ASSOCIATE()
    request.application_context_name = UID("1.2.840.10008.3.1.1.1")
    request.calling_ae_title = calling_ae
    request.called_ae_title = "CONSILIUM"
    contexts = []
    for index, sop_class in enumerate(abstract_syntaxes):
        context = build_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        context.context_id = 2 * index + 1
        contexts.append(context)
    request.presentation_context_definition_list = contexts
    max_length = MaximumLengthNotification()
    max_length.maximum_length_received = 16384
    request.user_information = [max_length]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(request)
    return bytes(pdu.encode())


def connect(server: ConsiliumServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.dicom_port), timeout=60)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_pdu(sock: socket.socket) -> tuple[int, bytes]:
    header = _recv_all(sock, 6)
    pdu_type, length = struct.unpack(">BxI", header)
    return pdu_type, _recv_all(sock, length)


def _recv_all(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {len(data)} of {size} bytes")
        data += chunk
    return data


def established(server: ConsiliumServer, abstract_syntaxes: list[str]) -> socket.socket:
    sock = connect(server)
    sock.sendall(associate_rq("CITY_CT1", abstract_syntaxes))
    pdu_type, _ = read_pdu(sock)
    assert pdu_type == 0x02, "A-ASSOCIATE-AC expected"
    return sock


def until_closed(sock: socket.socket, timeout: float, stop_after: int = 0
                 ) -> tuple[float, bytes]:
    """Seconds until the server closed the connection (or, with ``stop_after``, until it sent
    that many bytes), and what it sent; infinity if neither happened within ``timeout``."""
    started = time.monotonic()
    sock.settimeout(timeout)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
            if stop_after and len(received) >= stop_after:
                break
    except ConnectionResetError:
        pass
    except TimeoutError:
        return float("inf"), received
    return time.monotonic() - started, received


def peak_rss(pid: int) -> int:
    """The process's peak resident set (VmHWM), bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.mark.parametrize("syntaxes", [[CT_IMAGE], [CT_IMAGE, STUDY_ROOT_MOVE]],
                         ids=["lean", "pynetdicom"])
def test_a_pdu_longer_than_advertised_is_aborted_unread(server: ConsiliumServer,
                                                        syntaxes: list[str]) -> None:
    """A P-DATA-TF declaring 1 GiB, after a proper association: A-ABORT at once, and the
    process does not allocate what the peer declared."""
    assert server.proc is not None
    before = peak_rss(server.proc.pid)
    sock = established(server, syntaxes)
    with sock:
        sock.sendall(struct.pack(">BxI", 0x04, GIB) + b"\x00" * 64)
        seconds, received = until_closed(sock, 30)
    assert peak_rss(server.proc.pid) - before < 100 * 2**20
    assert seconds < ARTIM, seconds
    assert received[:1] == b"\x07", received  # A-ABORT
    assert "more than the" in server.log


def test_a_first_pdu_declaring_an_absurd_length_is_aborted(server: ConsiliumServer) -> None:
    assert server.proc is not None
    before = peak_rss(server.proc.pid)
    with connect(server) as sock:
        sock.sendall(struct.pack(">BxI", 0x01, 0xFFFFFFF0) + b"\x00\x01" * 32)
        seconds, received = until_closed(sock, 30, stop_after=10)  # then we close (PS3.8)
    assert seconds < ARTIM, seconds
    assert received[:1] == b"\x07", received
    assert peak_rss(server.proc.pid) - before < 100 * 2**20


@pytest.mark.parametrize("first", [b"", b"\x01", b"\x01\x00\x00\x00\x01\x00\x00",
                                   b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"],
                         ids=["silent", "one-byte", "short-header", "garbage"])
def test_a_connection_without_a_whole_associate_rq_is_closed_within_artim(
    server: ConsiliumServer, first: bytes
) -> None:
    with connect(server) as sock:
        if first:
            sock.sendall(first)
        seconds, received = until_closed(sock, 60)
    assert seconds < ARTIM + 2, seconds
    assert received in (b"", bytes([0x07, 0, 0, 0, 0, 4, 0, 0, 2, 1]),
                        bytes([0x07, 0, 0, 0, 0, 4, 0, 0, 2, 2])), received


def test_idle_junk_connections_do_not_stop_real_peers(server: ConsiliumServer,
                                                      tmp_path: Path) -> None:
    """140 connections that say nothing useful (as in the report that found it: C-GET then
    answered "association rejected" for everyone) while dcmtk's getscu and storescu work."""
    junk: list[socket.socket] = []
    try:
        for index in range(140):
            sock = connect(server)
            sock.sendall([b"", b"\x01", b"\x01\x00\x00\x00", b"\x16\x03\x01"][index % 4])
            junk.append(sock)
        got = tmp_path / "got"
        got.mkdir()
        run = dcmtk("getscu", "-S", "-aet", "GETSCU", "-od", str(got), *server.address(),
                    "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={CT_SMALL_STUDY}",
                    timeout=60)
        assert run.returncode == 0 and len(list(got.iterdir())) == 1, run.stderr
        run = dcmtk("storescu", "-aet", "CITY_CT1", *server.address(), str(CT_SMALL),
                    timeout=60)
        assert run.returncode == 0, run.stderr
        run = dcmtk("echoscu", "-aet", "CITY_CT1", *server.address(), timeout=60)
        assert run.returncode == 0, run.stderr
        for sock in junk:  # and every junk connection is closed by the server in time
            seconds, _ = until_closed(sock, ARTIM + 10)
            assert seconds < ARTIM + 10
    finally:
        for sock in junk:
            sock.close()


def test_associations_beyond_the_limit_are_rejected_transient(server: ConsiliumServer) -> None:
    with contextlib.ExitStack() as held:
        for _ in range(LIMIT):
            held.enter_context(established(server, [CT_IMAGE]))
        run = dcmtk("echoscu", "-aet", "CITY_CT1", *server.address(), timeout=60)
        assert run.returncode != 0
        assert "Rejected Transient" in run.stderr and "Local Limit Exceeded" in run.stderr
    # the held associations are gone (closed, not released): a slot is free again
    deadline = time.monotonic() + 30
    while (run := dcmtk("echoscu", "-aet", "CITY_CT1", *server.address())).returncode:
        assert time.monotonic() < deadline, run.stderr
        time.sleep(0.1)


@pytest.mark.parametrize("syntaxes", [[CT_IMAGE], [CT_IMAGE, STUDY_ROOT_MOVE]],
                         ids=["lean", "pynetdicom"])
@pytest.mark.parametrize("stall", ["idle", "mid-pdu"])
def test_a_silent_association_is_ended_after_the_network_timeout(
    server: ConsiliumServer, syntaxes: list[str], stall: str
) -> None:
    """Silence on an established association, idle or in the middle of a PDU, ends it after
    dicom.network_timeout (and frees its place under dicom.max_associations)."""
    sock = established(server, syntaxes)
    with sock:
        if stall == "mid-pdu":  # a P-DATA-TF that announces 100 bytes and sends 10
            sock.sendall(struct.pack(">BxI", 0x04, 100) + b"\x00" * 10)
        seconds, _ = until_closed(sock, NETWORK + 30)
    assert NETWORK - 1 < seconds < NETWORK + 10, seconds
