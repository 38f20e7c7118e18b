"""Mutated DICOM inputs and the checks a fuzz run makes, shared by the bounded fuzz test
(``tests/test_ingest_fuzz.py``) and the full-size run (``bench/fuzz.py``).

Seeds are pydicom's own test files that the archive accepts. Each mutant keeps its seed's file
meta (so C-STORE names the seed's SOP class, instance and transfer syntax) and has its dataset
bytes changed in one or a few ways a broken encoder or an attacker would: bit flips, truncation,
inserted or deleted bytes, lengths set to huge values, VRs replaced, sequences nested deep,
image sizes inflated, the transfer syntax relabelled. Everything is deterministic per seed.

The checks (:func:`verify`): every C-STORE got a response with a status of the documented
set, never 0x0110 (processing failure); every STOW-RS request got an answer other than 5xx with
an outcome per part; afterwards every acknowledged instance's stored dataset is byte for byte
what was sent, and the archive's index and files agree (``consilium fsck``'s check).
"""

from __future__ import annotations

import random
import sqlite3
import struct
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests

from consilium.archive.dicomfile import UnreadableDicom, check_structure, split_part10
from consilium.archive.ingest import ArchiveStore
from consilium.archive.recovery import fsck
from consilium.db import make_engine
from tests.conftest import pydicom_data_dir

# what C-STORE may answer (README, DICOM conformance): success, and every documented refusal
CSTORE_STATUSES = frozenset({0x0000, 0xC210, 0xC211, 0xC213, 0xC214, 0xA900, 0x0111})
# STOW-RS failure reasons: the refusals above as PS3.18 codes, plus a part's other failures
STOW_REASONS = frozenset({0xC000, 0xA900, 0x0111, 0xC213, 0xC214})
SEED_MAX_BYTES = 300_000
TRANSFER_SYNTAXES = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2",
                     "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.90")


@dataclass(frozen=True)
class Seed:
    name: str
    meta: bytes  # preamble, prefix and file meta, as in the file
    dataset: bytes
    transfer_syntax: str
    sop_instance: str


@dataclass(frozen=True)
class Mutant:
    seed: str
    how: str
    data: bytes  # a PS3.10 file: the seed's meta (its transfer syntax perhaps relabelled)
    sop_instance: str

    @property
    def dataset(self) -> bytes:
        return self.data[split_part10(self.data).dataset_offset:]


def seeds() -> list[Seed]:
    """pydicom's test files the archive stores as they are, smallest first."""
    out = []
    for path in sorted((pydicom_data_dir() / "test_files").glob("*.dcm")):
        data = path.read_bytes()
        if len(data) > SEED_MAX_BYTES:
            continue
        try:
            part10 = split_part10(data)
            header = check_structure(memoryview(data)[part10.dataset_offset:],
                                     part10.transfer_syntax)
        except UnreadableDicom:
            continue
        if (not header.sop_instance_uid or not part10.meta.get("MediaStorageSOPClassUID")
                or str(part10.meta.get("MediaStorageSOPInstanceUID", ""))
                != header.sop_instance_uid):
            continue  # C-STORE names the instance from the file meta
        out.append(Seed(path.name, data[:part10.dataset_offset], data[part10.dataset_offset:],
                        part10.transfer_syntax, header.sop_instance_uid))
    return sorted(out, key=lambda s: len(s.dataset))


def _relabel(meta: bytes, transfer_syntax: str) -> bytes:
    """The file meta with another Transfer Syntax UID (the group length kept right)."""
    at = meta.find(b"\x02\x00\x10\x00UI")
    if at < 0:
        return meta
    old_length = struct.unpack_from("<H", meta, at + 6)[0]
    value = transfer_syntax.encode() + (b"\x00" if len(transfer_syntax) % 2 else b"")
    out = meta[:at + 6] + struct.pack("<H", len(value)) + value + meta[at + 8 + old_length:]
    group = out.find(b"\x02\x00\x00\x00UL")
    if group >= 0:
        length = struct.unpack_from("<I", out, group + 8)[0] + len(value) - old_length
        out = out[:group + 8] + struct.pack("<I", length) + out[group + 12:]
    return out


def _nested(depth: int) -> bytes:
    opening = b"\x40\x00\x30\xa7SQ\x00\x00\xff\xff\xff\xff\xfe\xff\x00\xe0\xff\xff\xff\xff"
    closing = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    return opening * depth + closing * depth


def _mutate(rng: random.Random, data: bytearray) -> str:
    """Change ``data`` in place one way; say which."""
    kind = rng.choice(("flip", "bytes", "truncate", "insert", "delete", "duplicate", "length",
                       "vr", "nest", "size", "zero"))
    n = len(data)
    at = rng.randrange(max(n, 1))
    if kind == "flip" and n:
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(n)] ^= 1 << rng.randrange(8)
    elif kind == "bytes" and n:
        for _ in range(rng.randint(1, 16)):
            data[rng.randrange(n)] = rng.randrange(256)
    elif kind == "truncate":
        del data[at:]
    elif kind == "insert":
        data[at:at] = rng.randbytes(rng.randint(1, 64))
    elif kind == "delete":
        del data[at:at + rng.randint(1, 64)]
    elif kind == "duplicate":
        data[at:at] = data[at:at + rng.randint(1, 256)]
    elif kind == "length" and n >= 8:
        value = rng.choice((0xFFFFFFFF, 0x7FFFFFFF, 0xFFFFFFFE, 0x10000, rng.randrange(1 << 32)))
        pos = rng.randrange(0, n - 4)
        data[pos:pos + 4] = struct.pack("<I", value)
    elif kind == "vr":
        spots = [i for i in range(0, n - 6) if data[i + 4:i + 6] in (b"US", b"CS", b"SQ", b"OB",
                                                                   b"OW", b"UI", b"LO")]
        if spots:
            pos = rng.choice(spots)
            data[pos + 4:pos + 6] = rng.choice((b"ZZ", b"\x00\x00", b"SQ", b"UN", b"OB"))
    elif kind == "nest":
        pixel = data.find(b"\xe0\x7f\x10\x00")
        data[pixel if pixel >= 0 else n:pixel if pixel >= 0 else n] = _nested(
            rng.choice((5, 70, 1000)))
    elif kind == "size":
        for tag in (b"\x28\x00\x10\x00", b"\x28\x00\x11\x00"):  # Rows, Columns (explicit LE)
            pos = data.find(tag + b"US\x02\x00")
            if pos >= 0:
                data[pos + 8:pos + 10] = b"\xff\xff"
    elif kind == "zero" and n:
        data[at:at + rng.randint(1, 512)] = bytes(min(rng.randint(1, 512), n - at))
    return kind


def mutants(count: int, seed: int = 11) -> Iterator[Mutant]:
    """``count`` mutants, round-robin over the seeds."""
    rng = random.Random(seed)
    pool = seeds()
    for n in range(count):
        base = pool[n % len(pool)]
        data = bytearray(base.dataset)
        hows = [_mutate(rng, data) for _ in range(rng.choice((1, 1, 1, 2, 3)))]
        meta = base.meta
        if rng.random() < 0.08:
            meta = _relabel(meta, rng.choice(TRANSFER_SYNTAXES))
            hows.append("relabel")
        yield Mutant(base.name, "+".join(hows), meta + bytes(data), base.sop_instance)


@dataclass
class Tally:
    """What one channel answered."""

    statuses: Counter[str] = field(default_factory=Counter)
    acknowledged: dict[str, bytes] = field(default_factory=dict)  # SOP instance -> dataset
    problems: list[str] = field(default_factory=list)
    lost_associations: int = 0  # the sender's (see send); each file was sent again

    def add(self, mutant: Mutant, status: str, ok: bool) -> None:
        self.statuses[status] += 1
        if ok:
            self.acknowledged[mutant.sop_instance] = mutant.dataset


DIMSE_TIMEOUT = 10.0  # seconds the sender waits for one response


def send(port: int, paths: list[Path], calling_ae: str = "STORESCU"
         ) -> tuple[list[tuple[int | None, str]], int]:
    """C-STORE the files, each file's bytes after its meta as they are
    (:func:`tests.conftest.send_raw`), with Nagle off on our side (a fuzz run sends thousands
    of small messages; Nagle with delayed ACKs costs ~40 ms each). Returns the (status, Error
    Comment) of each file and how many times the association was lost.

    pynetdicom as a requestor now and then stops sending a message half way (seen in about
    one run of 100 mutants in ten, never on the same file twice: the archive then waits for
    the rest of the message until the requestor's DIMSE timeout aborts the association). A
    file whose association was lost is sent again, once, on a new association; losing that one
    too is a missing response (None)."""
    import socket

    from pynetdicom import AE, _config
    from pynetdicom.association import Association
    from pynetdicom.dsutils import split_dataset

    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.network_timeout = 30
    ae.dimse_timeout = DIMSE_TIMEOUT
    pairs: dict[tuple[str, str], None] = {}
    for path in paths:
        meta, _offset = split_dataset(path)
        pairs[(str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID))] = None
    for sop_class, ts in list(pairs)[:128]:
        ae.add_requested_context(sop_class, [ts])

    def associate() -> Association:
        assoc = ae.associate("127.0.0.1", port, ae_title="CONSILIUM")
        if not assoc.is_established:
            raise ConnectionError(f"association refused or aborted (port {port})")
        raw = assoc.dul.socket.socket if assoc.dul.socket is not None else None
        if raw is not None:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return assoc

    previous = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True
    results: list[tuple[int | None, str]] = []
    lost = 0
    assoc = associate()
    try:
        for message_id, path in enumerate(paths, start=1):
            for attempt in (1, 2):
                if not assoc.is_established:
                    assoc = associate()
                rsp = assoc.send_c_store(path, msg_id=message_id)
                if "Status" in rsp or attempt == 2:
                    break
                lost += 1
            status = int(rsp.Status) if "Status" in rsp else None
            results.append((status, str(rsp.get("ErrorComment", ""))))
    finally:
        if assoc.is_established:
            assoc.release()
        _config.STORE_SEND_CHUNKED_DATASET = previous
    return results, lost


def cstore(port: int, folder: Path, batch: list[Mutant], tally: Tally,
           calling_ae: str = "STORESCU", per_association: int = 100) -> None:
    """The mutants over associations of ``per_association`` messages (raw: dcmtk refuses to
    send what it cannot parse)."""
    from pynetdicom.dsutils import split_dataset

    folder.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(batch), per_association):
        part, paths = [], []
        for n, mutant in enumerate(batch[start:start + per_association], start=start):
            path = folder / f"{n:05d}.dcm"
            path.write_bytes(mutant.data)
            try:  # what pynetdicom cannot even cut into meta and dataset it cannot send
                split_dataset(path)
            except Exception:
                tally.statuses["not sendable"] += 1
                continue
            part.append(mutant)
            paths.append(path)
        answers, lost = send(port, paths, calling_ae)
        tally.lost_associations += lost
        for mutant, (status, _comment) in zip(part, answers, strict=True):
            if status is None or status not in CSTORE_STATUSES:
                tally.problems.append(f"{mutant.seed} {mutant.how}: status {status}")
            tally.add(mutant, f"0x{status:04X}" if status is not None else "none", status == 0)


def stow_batches(batch: list[Mutant], size: int) -> list[list[Mutant]]:
    """``batch`` cut into requests of at most ``size`` parts, no SOP Instance UID twice in one
    (the corpus has several files of one UID)."""
    requests_: list[list[Mutant]] = []
    for mutant in batch:
        for request in requests_:
            if len(request) < size and all(m.sop_instance != mutant.sop_instance
                                           for m in request):
                request.append(mutant)
                break
        else:
            requests_.append([mutant])
    return requests_


def stow(base: str, headers: dict[str, str], batch: list[Mutant], tally: Tally) -> None:
    """The mutants in one STOW-RS request (of distinct SOP instances, so that the answer's
    stored instances say which parts were stored)."""
    if len({m.sop_instance for m in batch}) != len(batch):
        raise ValueError("one STOW-RS batch per SOP Instance UID")
    boundary = uuid.uuid4().hex
    body = b"".join(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
                    + m.data + b"\r\n" for m in batch) + f"--{boundary}--\r\n".encode()
    answer = requests.post(base + "/studies", data=body, timeout=300, headers=dict(
        headers, Accept="application/dicom+json",
        **{"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'}))
    if answer.status_code not in (200, 202, 409):
        tally.problems.append(f"STOW answered {answer.status_code}: {answer.text[:200]}")
        return
    payload = answer.json()
    stored = {item["00081155"]["Value"][0] for item in
              payload.get("00081199", {}).get("Value", [])}
    failed = payload.get("00081198", {}).get("Value", [])
    if len(stored) + len(failed) != len(batch):
        tally.problems.append(f"STOW: {len(batch)} parts, "
                              f"{len(stored)} + {len(failed)} outcomes")
    for item in failed:
        reason = item["00081197"]["Value"][0]
        if reason not in STOW_REASONS:
            tally.problems.append(f"STOW failure reason 0x{reason:04X}")
    for mutant in batch:
        tally.add(mutant, "stored" if mutant.sop_instance in stored else "failed",
                  mutant.sop_instance in stored)


def verify(data_dir: Path, tallies: list[Tally]) -> list[str]:
    """After the run: every acknowledged instance stored byte for byte as sent (the last one
    acknowledged for a SOP Instance UID: they are all identical datasets or refused), and
    ``consilium fsck``'s check clean (index rows, files and their hashes agree)."""
    problems: list[str] = []
    with sqlite3.connect(data_dir / "consilium.db") as db:
        paths = dict(db.execute("SELECT sop_uid, path FROM instance").fetchall())
    for tally in tallies:
        for sop, dataset in tally.acknowledged.items():
            relative = paths.get(sop)
            if relative is None:
                problems.append(f"acknowledged {sop} is not indexed")
                continue
            stored = (data_dir / "dicom" / relative).read_bytes()
            if stored[split_part10(stored).dataset_offset:] != dataset:
                problems.append(f"acknowledged {sop} is stored with other bytes")
    engine = make_engine(f"sqlite:///{data_dir / 'consilium.db'}")
    try:
        report = fsck(ArchiveStore(engine=engine, storage_dir=data_dir / "dicom"))
    finally:
        engine.dispose()
    if not report.consistent:
        problems.append(f"fsck: missing {report.missing_files[:5]}, corrupt "
                        f"{report.corrupt_files[:5]}, orphans {report.orphan_files[:5]}")
    return problems


def peak_rss_mb(pid: int) -> float:
    """The peak resident memory of a process (VmHWM), MiB; 0 if it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the DIMSE workers of ``consilium serve``)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(children.get(current, []))
    return out
