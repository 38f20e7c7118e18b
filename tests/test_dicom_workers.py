"""Several DIMSE worker processes on one port (``dicom.workers``), with real dcmtk peers:
associations are spread over the workers, parallel C-STOREs all land, Q/R works in a worker."""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from consilium.archive.dicomfile import split_part10
from consilium.synthetic import PatientSpec, StudySpec, write_ct_series
from tests.conftest import DCMTK, ConsiliumServer, dcmtk

pytestmark = pytest.mark.usefixtures("dcmtk_available")

STORED = re.compile(r" (dicom-\d+) consilium\.archive\.dimse\.lean: association from (\w+): "
                    r"(\d+) instances stored")


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("workers-ct")
    study = StudySpec(PatientSpec("WORKERS-1", "Workers^Test", "19700101", "F"),
                      study_date="20261128", accession="WRK1")
    return write_ct_series(study, root / "all", slices=24, rows=128, columns=128,
                           uid_seed="dicom-workers")


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[ConsiliumServer]:
    srv = ConsiliumServer(tmp_path / "var", workers=2).start()
    yield srv
    srv.stop()


def _wait_for_workers(server: ConsiliumServer, count: int) -> None:
    """Each worker logs once it accepts; until then the main process's socket only queues."""
    deadline = time.monotonic() + 60
    while server.log.count(" listening on ") < count:
        assert time.monotonic() < deadline, server.log
        time.sleep(0.05)


def _stored_by_worker(log: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for worker, _ae, _count in STORED.findall(log):
        counts[worker] = counts.get(worker, 0) + 1
    return counts


def _wait_for_log(server: ConsiliumServer, associations: int) -> str:
    deadline = time.monotonic() + 30
    while len(STORED.findall(server.log)) < associations:
        assert time.monotonic() < deadline, server.log
        time.sleep(0.05)
    return server.log


def test_associations_take_turns_over_the_workers(two_workers: ConsiliumServer,
                                                  series: list[Path]) -> None:
    """One association after another: the workers accept in turn, so each gets half."""
    _wait_for_workers(two_workers, 2)
    for index in range(4):
        dcmtk("storescu", "-aet", "CITY_CT1", *two_workers.address(),
              str(series[index]), check=True)
    log = _wait_for_log(two_workers, 4)
    assert _stored_by_worker(log) == {"dicom-1": 2, "dicom-2": 2}, log


def test_parallel_associations_all_land_and_qr_works_in_a_worker(
    two_workers: ConsiliumServer, series: list[Path], tmp_path: Path
) -> None:
    _wait_for_workers(two_workers, 2)
    parts = [series[i::4] for i in range(4)]
    procs = [subprocess.Popen([str(DCMTK / "storescu"), "-aet", "CITY_CT1",
                               *two_workers.address(), *map(str, part)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              env=dict(os.environ, TCP_NODELAY="1"))
             for part in parts]
    for proc in procs:
        out = proc.communicate(timeout=120)[0]
        assert proc.returncode == 0, out
    log = _wait_for_log(two_workers, 4)
    assert set(_stored_by_worker(log)) == {"dicom-1", "dicom-2"}, log
    with sqlite3.connect(two_workers.data_dir / "consilium.db") as db:
        assert db.execute("select count(*) from instance").fetchone()[0] == len(series)
        assert db.execute("select num_instances from study").fetchall() == [(len(series),)]

    # C-FIND and C-GET go to pynetdicom's handler inside whichever worker accepts them
    study_uid = str(pydicom.dcmread(series[0], stop_before_pixels=True).StudyInstanceUID)
    found_dir = tmp_path / "found"
    found_dir.mkdir()
    dcmtk("findscu", "-S", "-X", "-od", str(found_dir), "-aet", "FINDSCU",
          *two_workers.address(), "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientID=WORKERS-1",
          "-k", "StudyInstanceUID", "-k", "NumberOfStudyRelatedInstances", check=True)
    answers = [pydicom.dcmread(p) for p in found_dir.glob("rsp*.dcm")]
    assert [(a.StudyInstanceUID, int(a.NumberOfStudyRelatedInstances)) for a in answers] == [
        (study_uid, len(series))]
    got_dir = tmp_path / "got"
    got_dir.mkdir()
    dcmtk("getscu", "-S", "+B", "+xe", "-aet", "GETSCU", "-od", str(got_dir),
          *two_workers.address(), "-k", "QueryRetrieveLevel=STUDY",
          "-k", f"StudyInstanceUID={study_uid}", check=True)
    assert sorted(map(_dataset_digest, got_dir.iterdir())) == sorted(map(_dataset_digest, series))


def _dataset_digest(path: Path) -> str:
    """SHA-256 of the dataset after the file meta group (getscu writes its own meta)."""
    data = path.read_bytes()
    return hashlib.sha256(data[split_part10(data).dataset_offset :]).hexdigest()


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_workers_end_with_a_killed_main_process(tmp_path: Path, series: list[Path]) -> None:
    """kill -9 of the main process (a crash, an OOM kill): its workers must not live on,
    accepting associations unsupervised and holding the port; a restart serves the data."""
    server = ConsiliumServer(tmp_path / "var", workers=2).start()
    _wait_for_workers(server, 2)
    dcmtk("storescu", "-aet", "CITY_CT1", *server.address(), str(series[0]), check=True)
    assert server.proc is not None
    workers = _children(server.proc.pid)  # the two workers (and multiprocessing's tracker)
    assert len(workers) >= 2, workers
    port = server.dicom_port
    server.kill9()
    deadline = time.monotonic() + 15
    while any(Path(f"/proc/{p}").exists() for p in workers):
        assert time.monotonic() < deadline, "worker processes outlived the main process"
        time.sleep(0.1)

    again = ConsiliumServer(tmp_path / "var", dicom_port=port, workers=2).start()
    try:
        _wait_for_workers(again, 2)
        dcmtk("storescu", "-aet", "CITY_CT1", *again.address(), str(series[1]), check=True)
        with sqlite3.connect(again.data_dir / "consilium.db") as db:
            assert db.execute("select count(*) from instance").fetchone()[0] == 2
    finally:
        again.stop()


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_serve_leaves_no_helper_process_behind(tmp_path: Path, how: str) -> None:
    """``consilium serve`` starts DIMSE workers and, with the first DICOMweb request, the
    metadata pool. Stopped or killed, it takes all of them along (a server started by a test
    suite must not leave either behind)."""
    from tests.webserver import WebServer

    web = WebServer(tmp_path / "var").start()
    try:
        assert web.login("ivanova").get("/dicom-web/studies").status_code == 200
        assert web.proc is not None
        deadline = time.monotonic() + 30
        while len(helpers := _children(web.proc.pid)) < 4:  # 2 DIMSE workers, 2 pool workers
            assert time.monotonic() < deadline, helpers
            time.sleep(0.1)
        if how == "sigkill":
            web.proc.kill()
            web.proc.wait()
        else:
            web.stop()
    finally:
        web.stop()
    deadline = time.monotonic() + 15
    while alive := [p for p in helpers if Path(f"/proc/{p}").exists()
                    and "zombie" not in Path(f"/proc/{p}/status").read_text().lower()]:
        assert time.monotonic() < deadline, f"left behind: {alive}"
        time.sleep(0.1)
