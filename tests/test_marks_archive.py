"""Marks between Consilium and the archive, end to end on a real ``consilium serve``: a signed
conclusion with key images leaves a Key Object Selection beside the study (found by dcmtk's
findscu, retrieved by getscu, accepted by dsrdump) and prints its key images in the PDF; a TID
1500 report made by highdicom elsewhere and sent with storescu is read by
``GET /api/archive/studies/{study_uid}/marks``, which answers foreign and missing studies alike."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from consilium.consult import marks_dicom as md
from tests.conftest import CONFIG, CONSILIUM, dcmtk, pydicom_data_dir
from tests.test_consult_documents import _find_series, _get_instance, pdf_text, post
from tests.webserver import WebServer

DATA = pydicom_data_dir() / "test_files"
CT_PATH = DATA / "CT_small.dcm"
CT = dcmread(CT_PATH)
CITY_STUDY = str(CT.StudyInstanceUID)
REGIONAL_STUDY = "1.3.6.1.4.1.5962.1.2.4.20040826185059.5457"  # MR_small.dcm


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    data_dir = tmp_path_factory.mktemp("marks") / "var"
    for institution, path in (("city-hospital", CT_PATH),
                              ("regional-center", DATA / "MR_small.dcm")):
        subprocess.run([str(CONSILIUM), "import", "--config", str(CONFIG), "--data-dir",
                        str(data_dir), "--institution", institution, "--quiet", str(path)],
                       check=True, capture_output=True)
    server = WebServer(data_dir, extra_env={
        "CONSILIUM_IDENTITY_LOGIN_ATTEMPTS_PER_MINUTE": "1000",
        "CONSILIUM_UI_DEFAULT_LANGUAGE": "en"}).start()
    yield server
    server.stop()


def outside_report(image: Dataset, series_uid: str | None = None) -> Dataset:
    """A TID 1500 report as another system writes it (highdicom, its own UIDs): a length and
    an ellipse ROI with a mean on the image."""
    source = hd.sr.SourceImageForRegion.from_source_image(image)
    groups = [
        hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(),
                                                         identifier="Lesion 1"),
            referenced_region=hd.sr.ImageRegion(
                graphic_type="POLYLINE", graphic_data=np.array([[20.0, 30.0], [100.0, 90.0]]),
                source_image=source),
            measurements=[hd.sr.Measurement(name=codes.SCT.Length, value=32.5,
                                            unit=md.MM)]),
        hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(),
                                                         identifier="Liver ROI"),
            referenced_region=hd.sr.ImageRegion(
                graphic_type="ELLIPSE",
                graphic_data=np.array([[60.0, 64.0], [100.0, 64.0], [80.0, 54.0], [80.0, 74.0]]),
                source_image=source),
            measurements=[hd.sr.Measurement(name=codes.SCT.Mean, value=55.0, unit=md.HU)]),
    ]
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Person,
        observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(
            name="Outside^Reader"))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_person_context=observer),
        procedure_reported=codes.SCT.ImagingProcedure, imaging_measurements=groups)
    return hd.sr.Comprehensive3DSR(
        evidence=[image], content=report[0], series_instance_uid=series_uid or generate_uid(),
        series_number=77, sop_instance_uid=generate_uid(), instance_number=1,
        manufacturer="Elsewhere")


def store_with_storescu(web: WebServer, ds: Dataset) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "object.dcm"
        ds.save_as(path, enforce_file_format=True)
        sent = dcmtk("storescu", "-R", "-aet", "STORESCU", "-aec", "CONSILIUM", "127.0.0.1",
                     str(web.dicom_port), str(path))
        assert sent.returncode == 0, sent.stderr + sent.stdout


def test_a_signed_conclusion_leaves_its_key_images_as_a_kos(web: WebServer) -> None:
    referring = web.login("ivanova")
    consultant = web.login("kuznetsova")
    case_id = post(referring, "/api/cases", {
        "question": "Узел?", "study_uids": [CITY_STUDY], "target_institution": "regional-center",
        "key_images": {CITY_STUDY: [str(CT.SOPInstanceUID)]}}).json()["id"]
    assert post(referring, f"/api/cases/{case_id}/submit", {}).status_code == 200
    assert post(consultant, f"/api/cases/{case_id}/accept", {}).status_code == 200
    signed = post(consultant, f"/api/cases/{case_id}/conclude", {
        "findings": "Узел 14 мм.", "impression": "Подозрение.", "recommendations": ""})
    assert signed.status_code == 200, signed.text
    body = signed.json()
    assert sorted(a["kind"] for a in body["archived"]) == ["kos", "pdf", "sr"]
    assert body["archive_failures"] == []
    kos_entry = next(a for a in body["archived"] if a["kind"] == "kos")
    assert kos_entry["sop_class_uid"] == md.KEY_OBJECT_SELECTION

    series = {str(s.Modality): s for s in _find_series(web, CITY_STUDY)}
    assert {"CT", "DOC", "SR", "KO"} <= set(series)
    assert str(series["KO"].SeriesInstanceUID) == kos_entry["series_uid"]
    kos = _get_instance(web, kos_entry["sop_instance_uid"])
    assert kos.SOPClassUID == md.KEY_OBJECT_SELECTION
    assert kos.PatientID == CT.PatientID and kos.InstitutionName == "Regional Diagnostic Center"
    images = [i for i in kos.ContentSequence if i.ValueType == "IMAGE"]
    assert [i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for i in images] == [
        CT.SOPInstanceUID]
    with tempfile.TemporaryDirectory() as folder:
        kos.save_as(Path(folder) / "kos.dcm")
        dumped = subprocess.run(["/usr/bin/dsrdump", "-Ee", str(Path(folder) / "kos.dcm")],
                                capture_output=True, text=True, check=False)
    assert dumped.returncode == 0 and "E:" not in dumped.stderr, dumped.stderr
    assert "Кузнецова^Елена" in dumped.stdout

    pdf = referring.get(body["pdf_url"]).content
    text = pdf_text(pdf)
    assert "Key images" in text and f"Series {CT.SeriesNumber}" in text, text
    assert b"/Subtype /Image" in pdf  # the key image itself, small

    marks = referring.get(f"/api/archive/studies/{CITY_STUDY}/marks")
    assert marks.status_code == 200, marks.text
    keys = marks.json()["key_images"]
    assert [(k["image"]["sop_instance_uid"], k["image"]["series_uid"], k["instance_number"],
             k["source"], k["source_sop_instance_uid"]) for k in keys] == [
        (CT.SOPInstanceUID, CT.SeriesInstanceUID, int(CT.InstanceNumber), "kos",
         kos_entry["sop_instance_uid"])]


def test_a_report_from_elsewhere_is_read_through_the_gate(web: WebServer) -> None:
    report = outside_report(CT)
    store_with_storescu(web, report)  # -R: storescu proposes Comprehensive 3D SR only if asked
    reader = web.login("petrov")  # the city hospital's: its own study
    answer = reader.get(f"/api/archive/studies/{CITY_STUDY}/marks")
    assert answer.status_code == 200, answer.text
    found = [m for m in answer.json()["marks"]
             if m["source_sop_instance_uid"] == report.SOPInstanceUID]
    assert [(m["kind"], m["text"], m["points"], m["image"]["sop_instance_uid"],
             m["image"]["series_uid"]) for m in found] == [
        ("length", "Lesion 1", [[20.0, 30.0], [100.0, 90.0]], CT.SOPInstanceUID,
         CT.SeriesInstanceUID),
        ("ellipse", "Liver ROI", [[60.0, 64.0], [100.0, 64.0], [80.0, 54.0], [80.0, 74.0]],
         CT.SOPInstanceUID, CT.SeriesInstanceUID)]
    assert found[0]["measured"]["length_mm"] == 32.5
    assert (found[1]["measured"]["mean"], found[1]["measured"]["unit"]) == (55.0, "HU")
    assert found[0]["author_name"] == "Outside^Reader" and found[0]["source"] == "sr"

    # another institution's study (no case grants it to the city) and a missing one: alike
    foreign = reader.get(f"/api/archive/studies/{REGIONAL_STUDY}/marks")
    missing = reader.get("/api/archive/studies/1.2.3.4.5.6.7.8.9/marks")
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json()["error"].replace(REGIONAL_STUDY, "X") == missing.json()[
        "error"].replace("1.2.3.4.5.6.7.8.9", "X")
    assert web.client().get(f"/api/archive/studies/{CITY_STUDY}/marks").status_code == 401


def test_marks_of_a_study_become_a_report_and_states_in_the_archive(tmp_path: Path) -> None:
    """The path every signature takes for marks (marks_archiving), on a real store: the
    objects chosen, built, ingested into the study as its owner's and read back alike."""
    from consilium.archive import catalog, marks_read
    from consilium.archive.ingest import ArchiveStore, IngestSource, ingest_part10
    from consilium.archive.marks import ImageRef, KeyImage, Mark, MarkKind, Measured
    from consilium.consult import marks_archiving
    from consilium.db import make_engine, migrate

    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    migrate(engine)
    store = ArchiveStore(engine=engine, storage_dir=tmp_path / "dicom")
    assert ingest_part10(store, CT_PATH.read_bytes(), IngestSource("city-hospital")).ok
    ref = ImageRef(study_uid=CITY_STUDY, series_uid="", sop_instance_uid=str(CT.SOPInstanceUID))
    marks = [Mark(id="a", kind=MarkKind.LENGTH, image=ref, points=[(1, 2), (30, 40)],
                  measured=Measured(length_mm=12.5), author_name="Елена Кузнецова"),
             Mark(id="b", kind=MarkKind.ANGLE, frame_of_reference_uid="1.2.3",
                  points3d=[(0, 1, 0), (0, 0, 0), (1, 0, 0)])]
    found = marks_archiving.of_study(store, CITY_STUDY, marks, [KeyImage(image=ref)], True)
    assert marks_archiving.kinds(found) == ["kos", "mr", "pr1"]
    signing = md.Signing("Protocol", "Елена Кузнецова", "Regional", datetime(2026, 12, 3,
                                                                            tzinfo=UTC))
    written = {}
    for kind in ("kos", "mr", "pr1"):
        ds = marks_archiving.build(found, kind, signing, ("seed", 1), 9700)
        again = marks_archiving.build(found, kind, signing, ("seed", 1), 9700)
        assert ds.SOPInstanceUID == again.SOPInstanceUID  # a retry names the same instance
        assert marks_archiving.store_object(store, CITY_STUDY, ds, "city-hospital") == ""
        written[kind] = ds
    assert [int(written[k].SeriesNumber) for k in ("kos", "mr", "pr1")] == [9700, 9701, 9702]
    stored = catalog.instance_headers(store, CITY_STUDY, [str(d.SOPInstanceUID)
                                                          for d in written.values()])
    assert len(stored) == 3
    result = marks_read.ArchivedMarks()
    for ds in written.values():
        marks_read.read_object(dcmread(store.path_of(_path_of(engine, ds.SOPInstanceUID))),
                               result)
    report = [m for m in result.marks if m.source == "sr"]
    assert {(m.kind, tuple(m.measured.model_dump(exclude_none=True).items())) for m in report} == {
        (MarkKind.LENGTH, (("length_mm", 12.5),)), (MarkKind.ANGLE, (("angle_deg", 90.0),))}
    assert [m.points for m in result.marks if m.source == "gsps"] == [[(1, 2), (30, 40)]]
    assert [k.image.sop_instance_uid for k in result.key_images] == [CT.SOPInstanceUID]


def _path_of(engine: object, sop_uid: str) -> str:
    from sqlalchemy import select

    from consilium.archive.models import instances
    with engine.connect() as conn:  # type: ignore[attr-defined]
        return str(conn.execute(select(instances.c.path).where(
            instances.c.sop_uid == sop_uid)).scalar_one())
