"""Bad input over DIMSE: refused with the proper status, logged, nothing kept, server unharmed.

dcmtk's storescu refuses to send what it cannot parse, so bad datasets go out with pynetdicom
sending each file's bytes after its meta as they are (:func:`tests.conftest.send_raw`). Every
case runs on both receive paths of the archive: the lean storage path (a storage-only
association) and pynetdicom's (an association that also proposes Study Root FIND).
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)

from consilium import synthetic
from consilium.archive.dicomfile import UnreadableDicom, build_file_meta, check_structure
from consilium.archive.dicomfile import split_part10 as split
from consilium.archive.pixel_guard import PixelLimits, ingest_problems
from tests.conftest import (
    ConsiliumServer,
    dcmtk,
    pydicom_data_dir,
    send_raw,
    storescu_statuses,
)

pytestmark = pytest.mark.usefixtures("dcmtk_available")

STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"  # not on the lean path: forces pynetdicom's
PATHS = {"lean": False, "pynetdicom": True}  # -> send_raw(with_find=...)
TABLES = ("patient", "study", "series", "instance")


def small_ct(**overrides: str | None) -> Dataset:
    """A complete little CT instance; an override of None deletes the attribute."""
    attributes: dict[str, str | int | None] = {
        "SpecificCharacterSet": "ISO_IR 100", "PatientName": "Bad^Input", "PatientID": "BAD-1",
        "StudyDate": "20240101", "InstanceNumber": 1}
    return synthetic.image(**{**attributes, **overrides})


def encode(ds: Dataset, ts: str = ExplicitVRLittleEndian) -> bytes:
    """The dataset bytes (no meta) in ``ts``."""
    return synthetic.dataset_bytes(ds, ts)


def part10(folder: Path, name: str, sop_class: str, sop_instance: str, ts: str,
           body: bytes) -> Path:
    """A PS3.10 file whose meta says (class, instance, syntax) and whose body is anything."""
    path = folder / f"{name}.dcm"
    path.write_bytes(build_file_meta(sop_class, sop_instance, ts) + body)
    return path


def corpus_body(name: str) -> tuple[bytes, str, str, str]:
    """(dataset bytes, transfer syntax, SOP class, SOP instance) of a pydicom test file."""
    data = (pydicom_data_dir() / "test_files" / name).read_bytes()
    p = split(data)
    return (data[p.dataset_offset:], p.transfer_syntax, str(p.meta.MediaStorageSOPClassUID),
            str(p.meta.MediaStorageSOPInstanceUID))


@dataclass(frozen=True)
class Case:
    status: int
    refusal: str  # as the server log names it
    make: Callable[[Path], Path]


def _truncated(folder: Path) -> Path:
    body, ts, cls, uid = corpus_body("CT_small.dcm")
    return part10(folder, "truncated", cls, uid, ts, body[: len(body) * 6 // 10])


def _truncated_deflated(folder: Path) -> Path:
    body, ts, cls, uid = corpus_body("image_dfl.dcm")
    assert ts == DeflatedExplicitVRLittleEndian
    return part10(folder, "truncated-deflated", cls, uid, ts, body[: len(body) // 2])


def _garbage(ts: str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        body = random.Random(1234).randbytes(4096)
        return part10(folder, "garbage", CTImageStorage, generate_uid(), ts, body)
    return make


def _empty(folder: Path) -> Path:
    return part10(folder, "empty", CTImageStorage, generate_uid(), ExplicitVRLittleEndian, b"")


def _without(keyword: str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        uid = generate_uid()
        ds = small_ct(**{"SOPInstanceUID": uid, keyword: None})
        return part10(folder, f"no-{keyword}", CTImageStorage, uid, ExplicitVRLittleEndian,
                      encode(ds))
    return make


def _other_instance(folder: Path) -> Path:
    ds = small_ct()
    return part10(folder, "other-instance", CTImageStorage, generate_uid(),
                  ExplicitVRLittleEndian, encode(ds))


def _other_class(folder: Path) -> Path:
    ds = small_ct()
    return part10(folder, "other-class", MRImageStorage, str(ds.SOPInstanceUID),
                  ExplicitVRLittleEndian, encode(ds))


def _deep_nesting(folder: Path) -> Path:
    """1,000 levels of sequences of undefined length (a sequence in an item in a sequence...)."""
    uid = generate_uid()
    body = encode(small_ct(SOPInstanceUID=uid))
    pixel_at = body.index(b"\xe0\x7f\x10\x00")  # (7FE0,0010), explicit VR little endian
    opening = (b"\x40\x00\x30\xa7" + b"SQ\x00\x00" + b"\xff\xff\xff\xff"  # ContentSequence
               + b"\xfe\xff\x00\xe0\xff\xff\xff\xff")  # an item of undefined length
    closing = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00" + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    nested = opening * 1000 + closing * 1000
    return part10(folder, "deep-nesting", CTImageStorage, uid, ExplicitVRLittleEndian,
                  body[:pixel_at] + nested + body[pixel_at:])


def _unknown_vr(folder: Path) -> Path:
    uid = generate_uid()
    body = encode(small_ct(SOPInstanceUID=uid))
    at = body.index(b"\x08\x00\x60\x00CS")  # Modality
    body = body[:at + 4] + b"ZZ" + body[at + 6:]
    return part10(folder, "unknown-vr", CTImageStorage, uid, ExplicitVRLittleEndian, body)


JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
RLE_LOSSLESS = "1.2.840.10008.1.2.5"


def _native_labelled_jpeg(folder: Path) -> Path:
    uid = generate_uid()
    return part10(folder, "native-as-jpeg", CTImageStorage, uid, JPEG_BASELINE,
                  encode(small_ct(SOPInstanceUID=uid)))


def _encapsulated(ds: Dataset, fragment: bytes, ts: str) -> bytes:
    from pydicom.encaps import encapsulate

    ds.PixelData = encapsulate([fragment])
    ds["PixelData"].VR = "OB"
    return encode(ds, ts)


def rle_fragment() -> bytes:
    """An RLE frame header with two segments (16-bit samples) and a few runs each."""
    import struct

    runs = b"\x81\x00" * 8
    return struct.pack("<16I", 2, 64, 64 + len(runs), *[0] * 13) + runs + runs


def _rle_labelled_explicit(folder: Path) -> Path:
    uid = generate_uid()
    ds = small_ct(SOPInstanceUID=uid)
    body = _encapsulated(ds, rle_fragment(), RLE_LOSSLESS)
    return part10(folder, "rle-as-explicit", CTImageStorage, uid, ExplicitVRLittleEndian, body)


def _jpeg_without_soi(folder: Path) -> Path:
    uid = generate_uid()
    ds = small_ct(SOPInstanceUID=uid)
    body = _encapsulated(ds, b"\x00\x01" * 64, JPEG_BASELINE)
    return part10(folder, "jpeg-without-soi", CTImageStorage, uid, JPEG_BASELINE, body)


def rle_bomb(uid: str, **overrides: str | None) -> bytes:
    """A decompression bomb: a few kB of RLE declaring 65535 x 65535 pixels (8 GB decoded)."""
    ds = small_ct(SOPInstanceUID=uid, **overrides)
    ds.Rows = ds.Columns = 65535
    return _encapsulated(ds, rle_fragment(), RLE_LOSSLESS)


def _rle_bomb(folder: Path) -> Path:
    uid = generate_uid()
    return part10(folder, "rle-65535", CTImageStorage, uid, RLE_LOSSLESS, rle_bomb(uid))


CASES = {
    "truncated": Case(0xC210, "unreadable", _truncated),
    "truncated-deflated": Case(0xC210, "unreadable", _truncated_deflated),
    "garbage-explicit": Case(0xC210, "unreadable", _garbage(ExplicitVRLittleEndian)),
    "garbage-implicit": Case(0xC210, "unreadable", _garbage(ImplicitVRLittleEndian)),
    "garbage-deflated": Case(0xC210, "unreadable", _garbage(DeflatedExplicitVRLittleEndian)),
    "empty-dataset": Case(0xC210, "unreadable", _empty),
    "no-StudyInstanceUID": Case(0xC211, "missing-uid", _without("StudyInstanceUID")),
    "no-SeriesInstanceUID": Case(0xC211, "missing-uid", _without("SeriesInstanceUID")),
    "no-SOPInstanceUID": Case(0xC211, "missing-uid", _without("SOPInstanceUID")),
    "SOPInstanceUID-differs": Case(0xA900, "mismatch", _other_instance),
    "SOPClassUID-differs": Case(0xA900, "mismatch", _other_class),
    "deep-nesting": Case(0xC210, "unreadable", _deep_nesting),
    "unknown-VR": Case(0xC210, "unreadable", _unknown_vr),
    "native-labelled-JPEG": Case(0xC210, "unreadable", _native_labelled_jpeg),
    "RLE-labelled-explicit": Case(0xC210, "unreadable", _rle_labelled_explicit),
    "JPEG-without-SOI": Case(0xC210, "unreadable", _jpeg_without_soi),
    "RLE-declaring-65535x65535": Case(0xC214, "too-large", _rle_bomb),
}


def archive_contents(data_dir: Path) -> tuple[list[str], dict[str, int]]:
    """(files under dicom/ other than the empty .tmp folder, row count of each index table)."""
    storage = data_dir / "dicom"
    files = sorted(p.relative_to(storage).as_posix() for p in storage.rglob("*")
                   if p.is_file() or (p.is_dir() and p.name != ".tmp" and not any(p.iterdir())))
    with sqlite3.connect(data_dir / "consilium.db") as db:
        counts = {t: int(db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in TABLES}
    return files, counts


def indexed_sop_uids(data_dir: Path) -> set[str]:
    with sqlite3.connect(data_dir / "consilium.db") as db:
        return {r[0] for r in db.execute("SELECT sop_uid FROM instance")}


def refusal_lines(server: ConsiliumServer, case: Case) -> int:
    return server.log.count(f"refused (0x{case.status:04X} {case.refusal})")


def echo(server: ConsiliumServer) -> None:
    run = dcmtk("echoscu", "-aet", "FINDSCU", *server.address())
    assert run.returncode == 0, run.stderr


def good_file(folder: Path, name: str) -> tuple[Path, str]:
    uid = generate_uid()
    return part10(folder, name, CTImageStorage, uid, ExplicitVRLittleEndian,
                  encode(small_ct(SOPInstanceUID=uid))), uid


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ConsiliumServer]]:
    """One archive per receive path; each test checks what it changed, not absolute state."""
    root = tmp_path_factory.mktemp("bad-input")
    started = {path: ConsiliumServer(root / path).start() for path in PATHS}
    try:
        yield started
    finally:
        for server in started.values():
            server.stop()


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", CASES)
def test_bad_dataset_is_refused_logged_and_not_kept(
    servers: dict[str, ConsiliumServer], tmp_path: Path, name: str, path: str
) -> None:
    server = servers[path]
    case = CASES[name]
    bad = case.make(tmp_path)
    # the case is what it says: unreadable ones fail the structure or the pixel check, too
    # large ones the pixel check, the others pass both
    data = bad.read_bytes()
    view, ts = memoryview(data)[split(data).dataset_offset:], split(data).transfer_syntax
    try:
        problem = ingest_problems(check_structure(view, ts), view, ts, PixelLimits())
        found = problem[0] if problem else None
    except UnreadableDicom:
        found = "unreadable"
    assert found == (case.refusal if case.refusal in ("unreadable", "too-large") else None)
    before, lines = archive_contents(server.data_dir), refusal_lines(server, case)

    [(status, comment)] = send_raw(server.dicom_port, [bad], with_find=PATHS[path])

    assert status == case.status
    assert comment  # the Error Comment says why
    assert archive_contents(server.data_dir) == before  # no file, no row, .tmp empty
    echo(server)  # (the refusal is logged by the time the next association is served)
    assert refusal_lines(server, case) == lines + 1
    # the server still serves: a valid instance on the same kind of association
    good, uid = good_file(tmp_path, "good")
    assert send_raw(server.dicom_port, [good], with_find=PATHS[path]) == [(0x0000, "")]
    files, counts = archive_contents(server.data_dir)
    assert len(files) == len(before[0]) + 1
    assert counts["instance"] == before[1]["instance"] + 1
    assert uid in indexed_sop_uids(server.data_dir)


@pytest.mark.parametrize("path", PATHS)
def test_bad_datasets_between_good_ones_on_one_association(
    servers: dict[str, ConsiliumServer], tmp_path: Path, path: str
) -> None:
    server = servers[path]
    bad = []
    for name, case in CASES.items():
        (tmp_path / name).mkdir()
        bad.append(case.make(tmp_path / name))
    good = [good_file(tmp_path, f"good{i}") for i in range(3)]
    before = archive_contents(server.data_dir)
    answers = send_raw(server.dicom_port, [bad[0], good[0][0], *bad[1:], good[1][0], good[2][0]],
                       with_find=PATHS[path])
    expected = [case.status for case in CASES.values()]
    assert [status for status, _ in answers] == [expected[0], 0, *expected[1:], 0, 0]
    files, counts = archive_contents(server.data_dir)
    assert len(files) == len(before[0]) + 3
    assert counts["instance"] == before[1]["instance"] + 3
    assert {uid for _, uid in good} <= indexed_sop_uids(server.data_dir)
    # the association went where it was meant to: the lean path reports its own stores
    lean_line = "association from STORESCU: 3 instances stored"
    assert (lean_line in server.log) is (path == "lean")
    assert ("consilium.archive.dimse.lean" in server.log) is (path == "lean")


@pytest.mark.parametrize("path", PATHS)
def _stranger(server: ConsiliumServer, path: str, ae_title: str) -> str:
    """An association from an unconfigured AE through dcmtk: storescu proposes storage only
    (the lean path), movescu proposes Q/R MOVE (pynetdicom's path). dcmtk, not pynetdicom, is
    the requestor here: pynetdicom's requestor now and then reports such a reject as an abort
    (a race on its side, seen about once in ten runs)."""
    if path == "lean":
        ct = pydicom_data_dir() / "test_files" / "CT_small.dcm"
        run = dcmtk("storescu", "-aet", ae_title, *server.address(), str(ct))
    else:
        run = dcmtk("movescu", "-S", "-aet", ae_title, *server.address(),
                    "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=1.2.3")
    assert run.returncode != 0
    return run.stderr


@pytest.mark.parametrize("path", PATHS)
def test_unknown_calling_ae_is_rejected_at_association(
    servers: dict[str, ConsiliumServer], path: str
) -> None:
    server = servers[path]
    before = archive_contents(server.data_dir)
    stderr = _stranger(server, path, "STRANGER")
    # rejected-permanent, by the service user, calling AE title not recognized (PS3.8 9.3.4)
    assert "Association Rejected" in stderr
    assert "Rejected Permanent" in stderr and "Service User" in stderr
    assert "Calling AE Title Not Recognized" in stderr
    assert archive_contents(server.data_dir) == before
    echo(server)


def test_unknown_calling_ae_is_rejected_for_dcmtk_too(
    servers: dict[str, ConsiliumServer],
) -> None:
    server = servers["lean"]
    before = archive_contents(server.data_dir)
    ct = pydicom_data_dir() / "test_files" / "CT_small.dcm"
    run = dcmtk("storescu", "-aet", "NOT_CONFIGURED", *server.address(), str(ct))
    assert run.returncode != 0
    assert "Association Rejected" in run.stderr
    assert "Calling AE Title Not Recognized" in run.stderr
    assert archive_contents(server.data_dir) == before
    echo(server)
    assert "unknown calling AE 'NOT_CONFIGURED'" in server.log


@pytest.mark.parametrize("path", ["lean", "pynetdicom"])
def test_unknown_calling_ae_rejection_is_logged(
    servers: dict[str, ConsiliumServer], path: str
) -> None:
    server = servers[path]
    stderr = _stranger(server, path, f"STRANGER_{path[:4].upper()}")
    assert "Association Rejected" in stderr
    echo(server)  # the log is written by then
    assert f"unknown calling AE 'STRANGER_{path[:4].upper()}'" in server.log


@pytest.mark.slow
def test_bad_input_does_not_disturb_a_concurrent_valid_association(
    server: ConsiliumServer, tmp_path: Path
) -> None:
    valid = tmp_path / "valid"
    valid.mkdir()
    paths = []
    for i in range(40):
        ds = small_ct(PatientID="GOOD-1", StudyInstanceUID="1.2.826.0.1.3680043.8.498.1.1",
                      SeriesInstanceUID="1.2.826.0.1.3680043.8.498.1.2")
        ds.InstanceNumber = i + 1
        paths.append(part10(valid, f"ok{i:03d}", CTImageStorage, str(ds.SOPInstanceUID),
                            ExplicitVRLittleEndian, encode(ds)))
    runs: list[tuple[float, float, dict[str, int | None]]] = []  # (start, end, statuses)
    done = threading.Event()

    def keep_storing() -> None:
        # identical resends are successes: store the same series over and over
        while not done.is_set() or len(runs) < 2:
            start = time.monotonic()
            run = dcmtk("storescu", "-d", *server.address(), *map(str, paths))
            runs.append((start, time.monotonic(), storescu_statuses(run.stderr)))

    worker = threading.Thread(target=keep_storing)
    worker.start()
    try:
        while not runs:  # the valid association is under way before the bad ones start
            time.sleep(0.01)
        bad_start = time.monotonic()
        for path in PATHS:
            for name, case in CASES.items():
                folder = tmp_path / f"{path}-{name}"
                folder.mkdir()
                [(status, _)] = send_raw(server.dicom_port, [case.make(folder)],
                                         with_find=PATHS[path])
                assert status == case.status, (path, name)
        bad_end = time.monotonic()
    finally:
        done.set()
        worker.join(timeout=120)
    assert not worker.is_alive()
    # valid associations ran while the bad input came in, and every instance was a success
    assert any(start < bad_end and end > bad_start for start, end, _ in runs)
    for _start, _end, statuses in runs:
        assert statuses == {str(p): 0x0000 for p in paths}
    files, counts = archive_contents(server.data_dir)
    assert len(files) == len(paths)
    assert counts == {"patient": 1, "study": 1, "series": 1, "instance": len(paths)}
    expected = Counter((c.status, c.refusal) for c in CASES.values())
    for (status, refusal), n in expected.items():
        assert server.log.count(f"refused (0x{status:04X} {refusal})") == n * len(PATHS)
    echo(server)
