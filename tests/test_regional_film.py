"""Film through DICOM Basic Grayscale Print Management: dcmtk's ``dcmprscp`` is the hospital's
film printer; Consilium (the API, as a registrar uses it) sends a film session, film boxes and
image boxes, and the printer's stored print job has the images, the layout, the film size and
the copies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread

from consilium.archive.ingest import IngestSource, ingest_part10
from consilium.synthetic import PatientSpec, StudySpec, write_ct_series
from tests.conftest import DCMTK, free_port, wait_for_port
from tests.inprocess import InProcess, in_process

STORED_PRINT = "1.2.840.10008.5.1.1.27"
HARDCOPY_GRAYSCALE = "1.2.840.10008.5.1.1.29"


def printer_config(folder: Path, port: int) -> Path:
    """A dcmpstat configuration with one local printer, FILM_SCP on ``port``."""
    (folder / "db").mkdir(parents=True)
    (folder / "spool").mkdir()
    path = folder / "printer.cfg"
    path.write_text(f"""[[GENERAL]]
[DATABASE]
Directory = {folder / 'db'}
[PRINT]
Directory = {folder / 'spool'}
DetailedLog = false
DeletePrintJobs = false
[[COMMUNICATION]]
[FILM_SCP]
Aetitle = FILM_SCP
Description = test film printer
Hostname = localhost
Port = {port}
Type = LOCALPRINTER
DisplayFormat = 1,1\\1,2\\2,1\\2,2\\3,3\\3,4\\4,4
FilmSizeID = 8INX10IN\\10INX12IN\\14INX14IN\\14INX17IN\\24CMX30CM
MediumType = PAPER\\CLEAR FILM\\BLUE FILM
FilmDestination = MAGAZINE\\PROCESSOR
MagnificationType = REPLICATE\\BILINEAR\\CUBIC\\NONE
MaxDensity = 320
MinDensity = 20
Supports12Bit = true
SupportsPresentationLUT = false
SupportsImageSize = true
SupportsDecimateCrop = true
SupportsTrim = true
ImplicitOnly = false
MaxPDU = 32768
""")
    return path


@pytest.fixture
def printer(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    port = free_port()
    config = printer_config(tmp_path / "printer", port)
    log = (tmp_path / "printer.log").open("ab")
    proc = subprocess.Popen([str(DCMTK / "dcmprscp"), "-c", str(config), "-p", "FILM_SCP",
                             "-d"], stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
                            env=dict(os.environ, TCP_NODELAY="1"), start_new_session=True)
    try:
        wait_for_port(port, timeout=30, proc=proc)
        yield port, tmp_path / "printer" / "db"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_films_reach_the_printer_with_their_images_layout_size_and_copies(
        printer: tuple[int, Path], tmp_path: Path) -> None:
    port, database = printer
    printers = json.dumps([{"id": "film-1", "institution": "city-hospital",
                            "ae_title": "FILM_SCP", "host": "127.0.0.1", "port": port,
                            "description": "Radiology film printer"}])
    with in_process(tmp_path / "var", media_film_printers=json.loads(printers)) as world:
        files = write_ct_series(StudySpec(PatientSpec("CITY-FILM-1", "Орлова^Вера", "19700101",
                                                      "F"), "20261101", accession="FILM-1"),
                                tmp_path / "ct", slices=5, rows=128, columns=128,
                                uid_seed="film")
        for path in files:
            assert ingest_part10(world.runtime.store, path.read_bytes(),
                                 IngestSource("city-hospital")).ok
        headers = [dcmread(p, stop_before_pixels=True) for p in files]
        study = str(headers[0].StudyInstanceUID)
        chosen = [str(h.SOPInstanceUID) for h in headers]
        client = world.login("ivanova")
        assert [p["id"] for p in client.get("/api/media/printers").json()] == ["film-1"]
        assert world.login("orlov").get("/api/media/printers").json() == []
        answer = client.post("/api/media/print", json={
            "printer": "film-1", "study_uid": study, "sop_uids": chosen, "columns": 2,
            "rows": 2, "film_size": "14INX17IN", "copies": 2, "medium": "BLUE FILM"})
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"films": 2, "images": 5, "printer": "film-1"}
        # another institution's printer, a bad layout, an image of another study
        assert world.login("orlov").post("/api/media/print", json={
            "printer": "film-1", "study_uid": study, "sop_uids": chosen}).status_code == 404
        assert client.post("/api/media/print", json={
            "printer": "film-1", "study_uid": study, "sop_uids": chosen,
            "columns": 9}).status_code == 400
        assert client.post("/api/media/print", json={
            "printer": "film-1", "study_uid": study,
            "sop_uids": ["1.2.3.4"]}).status_code == 400
        _check_audit(world, study)

    stored = [dcmread(p) for p in database.rglob("*") if p.is_file() and _is_dicom(p)]
    prints = [d for d in stored if d.SOPClassUID == STORED_PRINT]
    images = [d for d in stored if d.SOPClassUID == HARDCOPY_GRAYSCALE]
    assert len(prints) == 2  # one stored print per film box
    boxes = sorted(len(p.ImageBoxContentSequence) for p in prints)
    assert boxes == [1, 4]
    for job in prints:
        film = job.FilmBoxContentSequence[0]
        assert film.ImageDisplayFormat == "STANDARD\\2,2"
        assert film.FilmSizeID == "14INX17IN"
        assert film.FilmOrientation == "PORTRAIT"
        assert job.PrinterCharacteristicsSequence[0].Originator == "CONSILIUM"
        positions = [int(b.ImageBoxPosition) for b in job.ImageBoxContentSequence]
        assert positions == list(range(1, len(positions) + 1))
    referenced = {b.ReferencedImageSequence[0].ReferencedSOPInstanceUID
                  for p in prints for b in p.ImageBoxContentSequence}
    assert referenced == {i.SOPInstanceUID for i in images}
    # the film session (copies, medium) is not part of a stored print: the printer's own
    # protocol log shows what it accepted in its N-CREATE answer
    log = (tmp_path / "printer.log").read_text(errors="replace")
    session = log.split("N-CREATE RSP", 1)[1]
    assert "(2000,0010) IS [2]" in session and "(2000,0030) CS [BLUE FILM]" in session
    assert len(images) == 5
    assert {(int(i.Rows), int(i.Columns)) for i in images} == {(128, 128)}
    assert all(len(set(i.PixelData)) > 10 for i in images)  # real images, not blank boxes


def _is_dicom(path: Path) -> bool:
    with path.open("rb") as fh:
        fh.seek(128)
        return fh.read(4) == b"DICM"


def _check_audit(world: InProcess, study: str) -> None:
    import sqlite3

    world.runtime.audit.flush()
    with sqlite3.connect(world.runtime.settings.data_dir / "consilium.db") as conn:
        rows = conn.execute("SELECT detail FROM audit_event WHERE action = 'export' AND "
                            "study_uid = ? AND actor = 'dev:ivanova'", (study,)).fetchall()
    details = [json.loads(d) for (d,) in rows]
    assert any(d["what"] == "film" and d["printer"] == "film-1" and d["copies"] == 2
               for d in details)
