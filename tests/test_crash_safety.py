"""kill -9 of the archive in the middle of a 300-slice CT transfer loses nothing it acknowledged.

storescu (``-d``) prints the status of every response; the archive is killed once a number of
instances have been acknowledged, then restarted on the same data folder. Every acknowledged
instance must be there (C-FIND), byte-identical to what was sent, the index and the files must
agree (``consilium fsck``), and the study/series counts must equal the instances indexed.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest

from consilium.archive.dicomfile import split_part10
from consilium.synthetic import PatientSpec, StudySpec, write_ct_series
from tests.conftest import (
    CONFIG,
    CONSILIUM,
    DCMTK,
    ConsiliumServer,
    dcmtk,
    pydicom_data_dir,
    storescu_statuses,
)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("dcmtk_available")]

SLICES = 300
KILL_AFTER = 100  # acknowledged instances


def dataset_bytes(data: bytes) -> bytes:
    return data[split_part10(data).dataset_offset:]


def find(server: ConsiliumServer, out: Path, level: str, keys: dict[str, str]
         ) -> list[pydicom.Dataset]:
    out.mkdir()
    args = ["-S", "-X", "-od", str(out), "-aet", "FINDSCU", *server.address(),
            "-k", f"QueryRetrieveLevel={level}"]
    for keyword, value in keys.items():
        args += ["-k", f"{keyword}={value}"]
    run = dcmtk("findscu", *args)
    assert run.returncode == 0, run.stderr[-2000:]
    return [pydicom.dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]


def fsck(data_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CONSILIUM_CONFIG"}
    return subprocess.run([str(CONSILIUM), "fsck", "--config", str(CONFIG), "--data-dir",
                           str(data_dir), *extra], capture_output=True, text=True, env=env,
                          timeout=300)


def index(data_dir: Path) -> dict[str, str]:
    """SOP Instance UID -> stored path (relative to dicom/)."""
    with sqlite3.connect(data_dir / "consilium.db") as db:
        return dict(db.execute("SELECT sop_uid, path FROM instance").fetchall())


def index_counts(data_dir: Path) -> tuple[list[tuple[str, int, int]], list[tuple[str, int, int]]]:
    """(study uid, num_instances, counted rows) and the same per series."""
    with sqlite3.connect(data_dir / "consilium.db") as db:
        studies = db.execute(
            "SELECT s.study_uid, s.num_instances, (SELECT count(*) FROM instance i JOIN series"
            " r ON i.series_pk = r.id WHERE r.study_pk = s.id) FROM study s").fetchall()
        series = db.execute(
            "SELECT r.series_uid, r.num_instances, (SELECT count(*) FROM instance i"
            " WHERE i.series_pk = r.id) FROM series r").fetchall()
    return studies, series


def acknowledged_so_far(output: Path) -> int:
    text = output.read_text(errors="replace")
    complete = text[: text.rfind("\n") + 1]  # storescu may be in the middle of a line
    return sum(status == 0x0000 for status in storescu_statuses(complete).values())


def test_kill_9_mid_transfer_loses_nothing_acknowledged(tmp_path: Path) -> None:
    series_dir = tmp_path / "ct"
    paths = write_ct_series(
        StudySpec(PatientSpec("CRASH-1", "Crash^Test", "19600101", "F"), study_date="20240105"),
        series_dir, slices=SLICES)
    assert len(paths) == SLICES
    sent = {str(p): p.read_bytes() for p in paths}
    uid_of = {path: str(split_part10(data).meta.MediaStorageSOPInstanceUID)
              for path, data in sent.items()}
    study_uid = str(pydicom.dcmread(paths[0], stop_before_pixels=True).StudyInstanceUID)

    data_dir = tmp_path / "var"
    server = ConsiliumServer(data_dir).start()
    output = tmp_path / "storescu.log"
    with output.open("w") as log:
        storescu = subprocess.Popen(
            [str(DCMTK / "storescu"), "-d", "+sd", *server.address(), str(series_dir)],
            stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, TCP_NODELAY="1"))
    try:
        deadline = time.monotonic() + 120
        while acknowledged_so_far(output) < KILL_AFTER:
            assert storescu.poll() is None, "storescu ended before the kill"
            assert time.monotonic() < deadline, "no progress"
            time.sleep(0.002)
        server.kill9()
        storescu.wait(timeout=60)
    finally:
        if storescu.poll() is None:
            storescu.kill()
            storescu.wait()
        server.stop()
    statuses = storescu_statuses(output.read_text())
    acknowledged = {uid_of[p] for p, s in statuses.items() if s == 0x0000}
    in_flight = {uid_of[p] for p, s in statuses.items() if s is None}
    assert KILL_AFTER <= len(acknowledged) < SLICES  # killed mid-transfer
    assert set(statuses.values()) <= {0x0000, None}  # nothing was refused
    assert len(in_flight) <= 1  # storescu waits for each response

    restarted = ConsiliumServer(data_dir).start()
    try:
        # temporaries of the interrupted write are cleared at start
        assert not any((data_dir / "dicom" / ".tmp").glob("*"))
        images = find(restarted, tmp_path / "find-images", "IMAGE",
                      {"StudyInstanceUID": study_uid, "SOPInstanceUID": ""})
        found = {r.SOPInstanceUID for r in images}
        assert acknowledged <= found
        assert found - acknowledged <= in_flight  # at most the one being acknowledged
        # every acknowledged instance is on disk as it was sent
        stored = index(data_dir)
        assert set(stored) == found
        originals = {uid_of[p]: dataset_bytes(data) for p, data in sent.items()}
        for uid in found:
            on_disk = (data_dir / "dicom" / stored[uid]).read_bytes()
            assert dataset_bytes(on_disk) == originals[uid], uid
        # counts at study and series level equal the indexed instances
        [study] = find(restarted, tmp_path / "find-study", "STUDY",
                       {"StudyInstanceUID": study_uid, "NumberOfStudyRelatedInstances": "",
                        "NumberOfStudyRelatedSeries": ""})
        assert (int(study.NumberOfStudyRelatedInstances),
                int(study.NumberOfStudyRelatedSeries)) == (len(found), 1)
        [series] = find(restarted, tmp_path / "find-series", "SERIES",
                        {"StudyInstanceUID": study_uid, "SeriesInstanceUID": "",
                         "NumberOfSeriesRelatedInstances": ""})
        assert int(series.NumberOfSeriesRelatedInstances) == len(found)
        studies, series_rows = index_counts(data_dir)
        assert studies == [(study_uid, len(found), len(found))]
        assert series_rows == [(series.SeriesInstanceUID, len(found), len(found))]
        # getscu brings back the first and the last acknowledged instance unchanged
        get_dir = tmp_path / "get"
        get_dir.mkdir()
        ordered = [uid_of[str(p)] for p in paths if uid_of[str(p)] in acknowledged]
        wanted = [ordered[0], ordered[-1]]
        dcmtk("getscu", "-S", "+B", "+xe", "-od", str(get_dir), *restarted.address(),
              "-k", "QueryRetrieveLevel=IMAGE", "-k", f"StudyInstanceUID={study_uid}",
              "-k", "SOPInstanceUID=" + "\\".join(wanted))
        got = {str(split_part10(p.read_bytes()).meta.MediaStorageSOPInstanceUID):
               dataset_bytes(p.read_bytes()) for p in get_dir.iterdir()}
        assert got == {uid: originals[uid] for uid in wanted}
    finally:
        restarted.stop()

    # index and files agree, hashes verified: a write the kill interrupted after its file was
    # linked but before its index commit was undone at the restart (storage's journal)
    check = fsck(data_dir)
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"indexed {len(found)}, files {len(found)}, missing 0, corrupt 0, orphan 0" in \
        check.stdout

    # the transfer can simply be repeated: what is there is an idempotent success
    again = ConsiliumServer(data_dir).start()
    try:
        run = dcmtk("storescu", "-d", "+sd", *again.address(), str(series_dir))
        assert set(storescu_statuses(run.stderr).values()) == {0x0000}
        assert len(storescu_statuses(run.stderr)) == SLICES
    finally:
        again.stop()
    assert set(index(data_dir)) == set(uid_of.values())
    assert index_counts(data_dir)[0] == [(study_uid, SLICES, SLICES)]
    final = fsck(data_dir)
    assert final.returncode == 0, final.stdout
    assert f"indexed {SLICES}, files {SLICES}, missing 0, corrupt 0, orphan 0" in final.stdout


def test_a_file_renamed_but_never_indexed_is_reconciled_at_start(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    server = ConsiliumServer(data_dir).start()
    try:
        ct = pydicom_data_dir() / "test_files" / "CT_small.dcm"
        run = dcmtk("storescu", "-d", *server.address(), str(ct))
        assert storescu_statuses(run.stderr) == {str(ct): 0x0000}
    finally:
        server.kill9()
    # what ingest._store has done for an instance when a kill lands before its index commit:
    # the file is linked at its final path, its journal entry names a writer that is gone
    writer = (
        "import sys\n"
        "from consilium.archive import storage\n"
        "from consilium.archive.dicomfile import build_file_meta, check_structure, split_part10\n"
        "data = open(sys.argv[1], 'rb').read()\n"
        "part10 = split_part10(data)\n"
        "body = data[part10.dataset_offset:]\n"
        "header = check_structure(body, part10.transfer_syntax)\n"
        "chunks = [build_file_meta(header.sop_class_uid, header.sop_instance_uid,\n"
        "                          part10.transfer_syntax, 'STORESCU'), body]\n"
        "stored = storage.write_atomic(__import__('pathlib').Path(sys.argv[2]), chunks,\n"
        "                              storage.sha256_of(chunks), header.study_uid)\n"
        "assert stored.pending is not None\n"
    )
    mr = pydicom_data_dir() / "test_files" / "MR_small.dcm"
    subprocess.run([sys.executable, "-c", writer, str(mr), str(data_dir / "dicom")], check=True)
    assert len(list((data_dir / "dicom" / ".tmp").iterdir())) == 1
    restarted = ConsiliumServer(data_dir).start()
    restarted.stop()
    check = fsck(data_dir)
    assert check.returncode == 0, check.stdout
