"""C-FIND study-level latency with 10,000 studies indexed, Consilium and Orthanc in one run.

Data: 10,000 studies of 5,000 patients (two studies each), one small instance per study
(64x64, CT/MR/CR), study dates spread over 2016-2025; 1% of the patients are called SMITH.
Consilium is populated before its server starts, through the archive's own ingest function
(``ingest_part10`` on an ``ArchiveStore``, what ``consilium import`` runs; fsync on); Orthanc
through its REST API (``POST /instances``, four connections). Population is timed separately and
is not comparable between the two (different paths).

Queries (Study Root, STUDY level, 14 return keys), each sent ``--queries`` times (default 200)
after 10 unmeasured warm-up queries, the same sequence of values for every server, the servers
alternating every 20 queries (the machine is shared; load drifts); the latency of one query runs
from sending the C-FIND-RQ to receiving the final response, all matches included, and every
answer's number of matches is checked against the data:

* PatientID exact (a different patient each time: 2 matches);
* PatientName ``SMITH*`` (100 matches, 1%);
* StudyDate range of one calendar month, a different month each time (about 83 matches);
* C-ECHO, as the floor of one DIMSE round trip on that association.

Two clients, one association per server each: a lean SCU (association set up with pynetdicom's
PDU classes, then a blocking socket loop that counts responses: tens of microseconds per
response) and pynetdicom's own SCU (the usual Python client: about 2 ms per round trip and up to
0.7 ms per response of its own). Server CPU time per query and the CPU used meanwhile by other
processes are reported too.

    python bench/find_latency.py [--studies 10000] [--queries 200] [--skip-orthanc] [--keep]
"""

from __future__ import annotations

import argparse
import calendar
import contextlib
import http.client
import os
import random
import shutil
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ComputedRadiographyImageStorage,
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MRImageStorage,
)
from pynetdicom import AE
from pynetdicom.dsutils import encode
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    MaximumLengthNotification,
)
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    Verification,
)

from common import (
    CONFIG,
    FIND_AE,
    INSTITUTION,
    Consilium,
    Orthanc,
    group_cpu,
    machine_cpu,
    percentile,
    print_machine,
)
from consilium import synthetic

UID_ROOT = "1.2.826.0.1.3680043.8.498.7361."  # pydicom's root + a fixed arc for this benchmark
SURNAMES = [
    "JONES", "BROWN", "TAYLOR", "WILSON", "DAVIES", "EVANS", "THOMAS", "JOHNSON", "ROBERTS",
    "WALKER", "WRIGHT", "ROBINSON", "THOMPSON", "WHITE", "HUGHES", "EDWARDS", "GREEN", "HALL",
    "WOOD", "HARRIS", "LEWIS", "MARTIN", "JACKSON", "CLARKE", "CLARK", "TURNER", "HILL", "SCOTT",
    "COOPER", "MORRIS", "WARD", "MOORE", "KING", "WATSON", "BAKER", "HARRISON", "MORGAN",
    "PATEL", "YOUNG", "ALLEN", "MITCHELL", "JAMES", "ANDERSON", "PHILLIPS", "LEE", "BELL",
    "PARKER", "DAVIS", "IVANOV", "PETROV",
]
GIVEN = ["JOHN", "MARY", "PETER", "ANNA", "DAVID", "OLGA", "JAMES", "ELENA", "PAUL", "SARAH",
         "IVAN", "MARIA", "GEORGE", "LAURA", "MICHAEL", "NINA"]
MODALITIES = [("CT", CTImageStorage, "CT CHEST"), ("MR", MRImageStorage, "MR BRAIN"),
              ("CR", ComputedRadiographyImageStorage, "CR CHEST PA")]
FIRST_DAY = 16801  # 2016-01-01 as days since 1970-01-01
DAYS = 3653  # to 2025-12-31

RETURN_KEYS = [
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID",
    "StudyDate", "StudyTime", "AccessionNumber", "StudyID", "StudyDescription",
    "ReferringPhysicianName", "ModalitiesInStudy", "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
]


# -- data -----------------------------------------------------------------------------------


def _date(days: int) -> str:
    return time.strftime("%Y%m%d", time.gmtime(days * 86400))


def generate(studies: int, seed: int = 7361) -> Iterator[bytes]:
    """PS3.10 bytes of one small instance per study; deterministic."""
    rng = random.Random(seed)
    patients = max(1, studies // 2)
    pixels = (np.arange(64 * 64, dtype="<i2").reshape(64, 64) % 512).tobytes()
    people = []
    for p in range(patients):
        surname = "SMITH" if p % 100 == 0 else SURNAMES[rng.randrange(len(SURNAMES))]
        people.append((f"BP{p:06d}", f"{surname}^{rng.choice(GIVEN)}",
                       _date(rng.randrange(-20000, 18000)), rng.choice("MF")))
    for s in range(studies):
        pid, name, birth, sex = people[s % patients]
        modality, sop_class, description = MODALITIES[s % len(MODALITIES)]
        study_uid = f"{UID_ROOT}1.{s}"
        study_date = _date(FIRST_DAY + rng.randrange(DAYS))  # drawn in this order: the
        study_time = f"{rng.randrange(7, 20):02d}{rng.randrange(60):02d}00"  # same data
        referring = f"{rng.choice(SURNAMES)}^{rng.choice(GIVEN)}"
        ds = synthetic.image(
            sop_class, modality=modality, rows=64, columns=64, pixels=pixels, signed=True,
            SpecificCharacterSet="ISO_IR 100", SOPInstanceUID=UID(f"{UID_ROOT}3.{s}.1"),
            StudyDate=study_date, SeriesDate=study_date, StudyTime=study_time,
            AccessionNumber=f"A{s:07d}", ReferringPhysicianName=referring,
            StudyDescription=description, SeriesDescription=description, PatientName=name,
            PatientID=pid, PatientBirthDate=birth, PatientSex=sex, StudyInstanceUID=study_uid,
            SeriesInstanceUID=f"{UID_ROOT}2.{s}", StudyID=str(s), SeriesNumber=1,
            InstanceNumber=1)
        ds["PixelData"].VR = "OW"
        yield synthetic.encoded(ds)


@dataclass
class Expected:
    """What the generated data holds, to choose queries and check the answers."""

    studies: int
    patients: int
    smith_studies: int
    month_counts: dict[str, int] = field(default_factory=dict)

    def studies_of(self, patient: int) -> int:
        return len(range(patient, self.studies, self.patients))


# -- population -----------------------------------------------------------------------------


def populate_consilium(data_dir: Path, instances: list[bytes]) -> float:
    from consilium.archive.ingest import IngestSource, Outcome, ingest_part10
    from consilium.service import open_runtime
    from consilium.settings import load_settings

    settings = load_settings(CONFIG, {"data_dir": data_dir})
    runtime = open_runtime(settings)
    source = IngestSource(INSTITUTION, "CITY_CT1", "import")
    started = time.perf_counter()
    for data in instances:
        result = ingest_part10(runtime.store, data, source)
        if result.outcome is not Outcome.STORED:
            raise RuntimeError(f"Consilium refused an instance: {result.reason}")
    elapsed = time.perf_counter() - started
    runtime.engine.dispose()
    return elapsed


def populate_orthanc(orthanc: Orthanc, instances: list[bytes], connections: int = 4) -> float:
    local = threading.local()

    def post(data: bytes) -> None:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection("127.0.0.1", orthanc.http_port,
                                                           timeout=60)
        conn.request("POST", "/instances", body=data,
                     headers={"Content-Type": "application/dicom"})
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"Orthanc answered {response.status}: {body[:200]!r}")

    started = time.perf_counter()
    with ThreadPoolExecutor(connections) as pool:
        for _ in pool.map(post, instances, chunksize=64):
            pass
    return time.perf_counter() - started


# -- queries --------------------------------------------------------------------------------


@dataclass
class QueryKind:
    name: str
    # keyword -> matching value, and the number of matches the generated data holds
    make: Callable[[random.Random], tuple[dict[str, str], int]]


def query_kinds(expected: Expected) -> list[QueryKind]:
    months = sorted(expected.month_counts)

    def by_id(rng: random.Random) -> tuple[dict[str, str], int]:
        patient = rng.randrange(expected.patients)
        return {"PatientID": f"BP{patient:06d}"}, expected.studies_of(patient)

    def by_name(_rng: random.Random) -> tuple[dict[str, str], int]:
        return {"PatientName": "SMITH*"}, expected.smith_studies

    def by_month(rng: random.Random) -> tuple[dict[str, str], int]:
        month = rng.choice(months)
        last = calendar.monthrange(int(month[:4]), int(month[4:]))[1]
        return {"StudyDate": f"{month}01-{month}{last:02d}"}, expected.month_counts[month]

    return [
        QueryKind("PatientID exact", by_id),
        QueryKind("PatientName SMITH* (1%)", by_name),
        QueryKind("StudyDate one-month range", by_month),
    ]


def identifier(keys: dict[str, str]) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    for keyword in RETURN_KEYS:
        setattr(ds, keyword, keys.get(keyword, ""))
    return ds


@dataclass
class Measured:
    latencies_ms: list[float]
    matches: list[int]
    incomplete: int = 0  # answers with fewer or more matches than the data holds
    quiet_ms: list[float] = field(default_factory=list)  # from blocks with little interference


_PDU_HEADER = struct.Struct(">BxI")  # PDU type, reserved, length (PS3.8 9.3.1)
_PDV_HEADER = struct.Struct(">IBB")  # item length, presentation context id, control header


def _element(tag: int, value: bytes) -> bytes:
    """An implicit VR little endian element (command sets are always so encoded)."""
    if len(value) % 2:
        value += b"\x00"
    return struct.pack("<HHI", tag >> 16, tag & 0xFFFF, len(value)) + value


def _command_values(raw: bytes) -> dict[int, bytes]:
    values = {}
    pos = 0
    while pos + 8 <= len(raw):
        group, elem, length = struct.unpack_from("<HHI", raw, pos)
        values[(group << 16) | elem] = raw[pos + 8 : pos + 8 + length]
        pos += 8 + length
    return values


class LeanScu:
    """A minimal C-FIND/C-ECHO requestor on a blocking socket: association set up with
    pynetdicom's PDU classes, then one C-FIND-RQ at a time, its responses read straight from
    the socket (identifiers counted, not decoded). It costs the measurement a few tens of
    microseconds per response, where pynetdicom's SCU (threads, queues, 1 ms polling, full
    decoding) costs about a millisecond, which dominates the round trip of a query with many
    matches."""

    def __init__(self, port: int, called_ae: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.message_id = 0
        rq = A_ASSOCIATE()
        rq.application_context_name = UID("1.2.840.10008.3.1.1.1")
        rq.calling_ae_title = FIND_AE
        rq.called_ae_title = called_ae
        contexts = []
        for context_id, sop_class in ((1, StudyRootQueryRetrieveInformationModelFind),
                                      (3, Verification)):
            context = build_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
            context.context_id = context_id
            contexts.append(context)
        rq.presentation_context_definition_list = contexts
        max_length = MaximumLengthNotification()
        max_length.maximum_length_received = 0  # no limit
        implementation = ImplementationClassUIDNotification()
        implementation.implementation_class_uid = PYDICOM_IMPLEMENTATION_UID
        rq.user_information = [max_length, implementation]
        pdu = A_ASSOCIATE_RQ()
        pdu.from_primitive(rq)
        self.sock.sendall(pdu.encode())
        pdu_type, body = self._read_pdu()
        if pdu_type != 0x02:
            raise RuntimeError(f"association with {called_ae} on {port} refused")
        ac = A_ASSOCIATE_AC()
        ac.decode(_PDU_HEADER.pack(pdu_type, len(body)) + body)
        accepted = ac.to_primitive()
        self.peer_max = 16384
        for item in accepted.user_information:
            if isinstance(item, MaximumLengthNotification):
                self.peer_max = item.maximum_length_received or 1 << 30
        self.syntax = {
            cx.context_id: UID(str(cx.transfer_syntax[0]))
            for cx in accepted.presentation_context_definition_results_list if cx.result == 0
        }
        if 1 not in self.syntax or 3 not in self.syntax:
            raise RuntimeError(f"{called_ae} accepted no Study Root C-FIND or no C-ECHO")

    def _read_exact(self, size: int) -> bytes:
        data = bytearray()
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise RuntimeError("connection closed by the server")
            data += chunk
        return bytes(data)

    def _read_pdu(self) -> tuple[int, bytes]:
        pdu_type, length = _PDU_HEADER.unpack(self._read_exact(6))
        return pdu_type, self._read_exact(length)

    def _send_message(self, context_id: int, command: bytes, dataset: bytes | None) -> None:
        out = bytearray()
        for control, data in ((0x03, command), (0x02, dataset)):
            if data is None:
                continue
            step = max(self.peer_max - 12, 1024)
            for start in range(0, len(data), step):
                fragment = data[start : start + step]
                last = 0x02 if start + step >= len(data) else 0x00
                pdv = _PDV_HEADER.pack(len(fragment) + 2, context_id,
                                       (control & 0x01) | last) + fragment
                out += _PDU_HEADER.pack(0x04, len(pdv)) + pdv
        self.sock.sendall(out)

    def _responses(self) -> Iterator[tuple[int, bool]]:
        """(status, identifier present) of each response until a final status."""
        command = bytearray()
        expect_dataset = False
        while True:
            pdu_type, body = self._read_pdu()
            if pdu_type != 0x04:
                raise RuntimeError(f"unexpected PDU type 0x{pdu_type:02X}")
            pos = 0
            while pos < len(body):
                length, _context_id, control = _PDV_HEADER.unpack_from(body, pos)
                fragment = body[pos + 6 : pos + 4 + length]
                pos += 4 + length
                if control & 0x01:
                    command += fragment
                    if control & 0x02:
                        values = _command_values(bytes(command))
                        command.clear()
                        status = struct.unpack("<H", values[0x00000900])[0]
                        expect_dataset = struct.unpack("<H", values[0x00000800])[0] != 0x0101
                        if not expect_dataset:
                            yield status, False
                            if status not in (0xFF00, 0xFF01):
                                return
                elif control & 0x02 and expect_dataset:
                    yield status, True
                    expect_dataset = False
                    if status not in (0xFF00, 0xFF01):
                        return

    def _command(self, field: int, sop_class: str, has_dataset: bool) -> bytes:
        self.message_id = self.message_id % 0xFFFF + 1
        body = _element(0x00000002, sop_class.encode())
        body += _element(0x00000100, struct.pack("<H", field))
        body += _element(0x00000110, struct.pack("<H", self.message_id))
        if field == 0x0020:
            body += _element(0x00000700, struct.pack("<H", 0))  # priority: medium
        body += _element(0x00000800, struct.pack("<H", 0x0000 if has_dataset else 0x0101))
        return _element(0x00000000, struct.pack("<I", len(body))) + body

    def find(self, keys: dict[str, str]) -> tuple[float, int]:
        ts = self.syntax[1]
        encoded = encode(identifier(keys), ts.is_implicit_VR, ts.is_little_endian)
        assert encoded is not None
        command = self._command(0x0020, StudyRootQueryRetrieveInformationModelFind, True)
        started = time.perf_counter()
        self._send_message(1, command, encoded)
        count = 0
        final = None
        for status, has_identifier in self._responses():
            final = status
            count += status in (0xFF00, 0xFF01) and has_identifier
        elapsed = (time.perf_counter() - started) * 1000
        if final != 0x0000:
            raise RuntimeError(f"C-FIND ended with status 0x{final or 0:04X}")
        return elapsed, count

    def echo(self, _keys: dict[str, str]) -> tuple[float, int]:
        command = self._command(0x0030, Verification, False)
        started = time.perf_counter()
        self._send_message(3, command, None)
        statuses = [status for status, _ in self._responses()]
        elapsed = (time.perf_counter() - started) * 1000
        if statuses != [0]:
            raise RuntimeError("C-ECHO failed")
        return elapsed, 0

    def release(self) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            self.sock.sendall(bytes([0x05, 0, 0, 0, 0, 4, 0, 0, 0, 0]))
            self._read_pdu()  # A-RELEASE-RP
        self.sock.close()


class PynetdicomScu:
    """pynetdicom's own requestor (see :func:`associate`)."""

    def __init__(self, port: int, called_ae: str) -> None:
        self.assoc = associate(port, called_ae)

    def find(self, keys: dict[str, str]) -> tuple[float, int]:
        query = identifier(keys)
        started = time.perf_counter()
        count = 0
        final = None
        for status, _ident in self.assoc.send_c_find(
                query, StudyRootQueryRetrieveInformationModelFind):
            final = int(status.Status) if status else None
            if final in (0xFF00, 0xFF01):
                count += 1
        elapsed = (time.perf_counter() - started) * 1000
        if final != 0x0000:
            raise RuntimeError(f"C-FIND ended with status {final}")
        return elapsed, count

    def echo(self, _keys: dict[str, str]) -> tuple[float, int]:
        started = time.perf_counter()
        status = self.assoc.send_c_echo()
        elapsed = (time.perf_counter() - started) * 1000
        if not status or int(status.Status) != 0:
            raise RuntimeError("C-ECHO failed")
        return elapsed, 0

    def release(self) -> None:
        self.assoc.release()


def associate(port: int, called_ae: str) -> Any:
    """A pynetdicom association, fixed up for measuring:

    * TCP_NODELAY on the socket (pynetdicom leaves Nagle on);
    * the requestor's reactor thread no longer reads the DIMSE message queue. In pynetdicom
      3.0.4 the pause handshake of ``send_c_find`` races with that thread, which then takes a
      C-FIND response off the queue and drops it ("Received unexpected C-FIND service
      message"): about 1 answer in 100 lost a match against Orthanc. This SCU never serves
      requests, so the reactor has nothing to read there.
    """
    ae = AE(ae_title=FIND_AE)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
    assoc = ae.associate("127.0.0.1", port, ae_title=called_ae)
    if not assoc.is_established:
        raise RuntimeError(f"association with {called_ae} on {port} refused")
    assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    dimse = assoc.dimse
    blocking_get = dimse.get_msg

    def get_msg(block: bool = False) -> Any:
        return blocking_get(block=True) if block else (None, None)

    dimse.get_msg = get_msg
    return assoc


@dataclass
class Target:
    """One server as seen by one client: what was measured."""

    name: str
    client: Any  # LeanScu | PynetdicomScu
    pgid: int
    results: dict[str, Measured] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)  # server CPU seconds per kind


ECHO = "C-ECHO (floor)"
WARM_UP = 10
BLOCK = 20  # queries sent to one server before switching to the next
QUIET_CORES = 0.2  # a block is "quiet" if other processes used less than this many cores meanwhile


def measure(targets: list[Target], kinds: list[QueryKind], queries: int, seed: int) -> float:
    """Every kind on every target, in alternating blocks of ``BLOCK`` identical queries, so that
    load from other processes on the machine falls on all targets alike. Returns the CPU
    seconds used meanwhile by processes other than the servers and this one."""
    machine0 = machine_cpu()
    own0 = sum(os.times()[:2])
    servers0 = sum(group_cpu(t.pgid) for t in targets)
    echo_kind = QueryKind(ECHO, lambda _rng: ({}, 0))
    for kind in [*kinds, echo_kind]:
        rng = random.Random(f"{seed}-{kind.name}")
        plan = [kind.make(rng) for _ in range(WARM_UP + queries)]
        for target in targets:
            target.results[kind.name] = Measured([], [])
            target.cpu[kind.name] = 0.0
            call = target.client.echo if kind is echo_kind else target.client.find
            for keys, _expected in plan[:WARM_UP]:
                call(keys)
        for block in range(WARM_UP, len(plan), BLOCK):
            for target in targets:
                call = target.client.echo if kind is echo_kind else target.client.find
                measured = target.results[kind.name]
                cpus0 = [group_cpu(t.pgid) for t in targets]
                machine_before, own_before = machine_cpu(), sum(os.times()[:2])
                started = time.perf_counter()
                latencies = []
                for keys, expected in plan[block : block + BLOCK]:
                    elapsed, count = call(keys)
                    latencies.append(elapsed)
                    measured.matches.append(count)
                    measured.incomplete += count != expected
                seconds = time.perf_counter() - started
                others = (machine_cpu() - machine_before - (sum(os.times()[:2]) - own_before)
                          - sum(group_cpu(t.pgid) - c for t, c in zip(targets, cpus0,
                                                                        strict=True)))
                measured.latencies_ms += latencies
                if others / seconds < QUIET_CORES:
                    measured.quiet_ms += latencies
                target.cpu[kind.name] += group_cpu(target.pgid) - cpus0[targets.index(target)]
    machine = machine_cpu() - machine0
    own = sum(os.times()[:2]) - own0
    servers = sum(group_cpu(t.pgid) for t in targets) - servers0
    return max(0.0, machine - own - servers)


# -- main ------------------------------------------------------------------------------------


def summarise(instances: list[bytes]) -> Expected:
    from pydicom import dcmread

    patients: set[str] = set()
    smith = 0
    months: dict[str, int] = {}
    for data in instances:
        ds = dcmread(BytesIO(data), stop_before_pixels=True)
        patients.add(str(ds.PatientID))
        smith += str(ds.PatientName).startswith("SMITH")
        months[ds.StudyDate[:6]] = months.get(ds.StudyDate[:6], 0) + 1
    return Expected(len(instances), len(patients), smith, months)


def print_table(targets: list[Target], queries: int) -> None:
    print(f"{'query':27} {'server':12} {'matches':>7} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'mean ms':>7} {'CPU ms':>6} {'wrong':>5}   quiet: {'n':>3} {'p50':>6} {'p99':>6}")
    for kind in targets[0].results:
        for target in targets:
            m = target.results[kind]
            lat = m.latencies_ms
            quiet = (f"{len(m.quiet_ms):3d} {percentile(m.quiet_ms, 50):6.2f} "
                     f"{percentile(m.quiet_ms, 99):6.2f}" if m.quiet_ms else "  0")
            print(f"{kind:27} {target.name:12} {sum(m.matches) / len(m.matches):7.1f} "
                  f"{percentile(lat, 50):7.2f} {percentile(lat, 99):7.2f} "
                  f"{sum(lat) / len(lat):7.2f} {target.cpu[kind] * 1000 / queries:6.1f} "
                  f"{m.incomplete:5d}          {quiet}")
    print("matches: mean per query; CPU ms: server CPU time per query (all its processes); "
          "wrong: answers whose number of matches differs from the data; quiet: the queries "
          f"of blocks during which other processes used < {QUIET_CORES} cores")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=200, help="measured queries per kind")
    parser.add_argument("--skip-orthanc", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()

    print_machine("C-FIND latency benchmark")
    work = Path(tempfile.mkdtemp(prefix="consilium-bench-find-"))
    populated: dict[str, float] = {}
    servers: list[Any] = []
    clients: dict[str, list[Target]] = {}
    wall = time.perf_counter()
    try:
        started = time.perf_counter()
        instances = list(generate(args.studies))
        expected = summarise(instances)
        size = sum(len(d) for d in instances)
        print(f"generated {len(instances)} instances ({size / 1e6:.1f} MB) of "
              f"{expected.patients} patients in {time.perf_counter() - started:.1f} s; "
              f"SMITH studies: {expected.smith_studies}", flush=True)
        kinds = query_kinds(expected)

        data_dir = work / "consilium" / "var"
        populated["Consilium"] = populate_consilium(data_dir, instances)
        print(f"Consilium: {args.studies} instances ingested in {populated['Consilium']:.1f} s",
              flush=True)
        consilium = Consilium(data_dir).start()
        servers.append(consilium)
        if consilium.count("study") != args.studies:
            raise RuntimeError("Consilium: wrong number of studies indexed")
        endpoints = [("Consilium", consilium.port, consilium.ae_title, consilium.proc.pid)]

        if not args.skip_orthanc:
            orthanc = Orthanc(work / "orthanc").start()
            servers.append(orthanc)
            populated["Orthanc 1.10"] = populate_orthanc(orthanc, instances)
            print(f"Orthanc: {args.studies} instances posted in "
                  f"{populated['Orthanc 1.10']:.1f} s", flush=True)
            if orthanc.count("CountStudies") != args.studies:
                raise RuntimeError("Orthanc: wrong number of studies indexed")
            endpoints.append(("Orthanc 1.10", orthanc.port, orthanc.ae_title, orthanc.proc.pid))

        measuring = time.perf_counter()
        others: dict[str, float] = {}
        for client_name, client in (("lean SCU", LeanScu), ("pynetdicom SCU", PynetdicomScu)):
            print(f"measuring with the {client_name}", flush=True)
            clients[client_name] = [Target(name, client(port, ae), pgid)
                                    for name, port, ae, pgid in endpoints]
            others[client_name] = measure(clients[client_name], kinds, args.queries, seed=1)
            for target in clients[client_name]:
                target.client.release()
        measuring = time.perf_counter() - measuring
    finally:
        for server in servers:
            server.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    for client_name, targets in clients.items():
        print()
        print(f"C-FIND, Study Root, STUDY level, {args.studies} studies indexed; {args.queries} "
              f"measured queries per kind and server, {client_name} (one association per "
              f"server, TCP_NODELAY), servers alternating every {BLOCK} queries")
        print_table(targets, args.queries)
    print(f"CPU used by other processes while measuring: {sum(others.values()):.1f} s in "
          f"{measuring:.0f} s ({sum(others.values()) / measuring:.2f} cores on average; 0 on a "
          "quiet machine)")
    print()
    for name, seconds in populated.items():
        how = ("ingest_part10 in-process before the server starts, fsync on"
               if name == "Consilium" else "REST POST /instances, 4 connections")
        print(f"population {name:13} {seconds:6.1f} s ({args.studies / seconds:4.0f} "
              f"instances/s; {how})")
    print(f"whole benchmark: {time.perf_counter() - wall:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
