"""Patient media and de-identified copies: a ZIP and an ISO image with a DICOMDIR that dcmtk
reads and that ``dcmmkdir`` builds the same way from the same files; the ISO read back by
pycdlib holds the same files; exports pass the gate (foreign like missing, each export on
record); the de-identified copy has nothing left that the PS3.15 Basic Profile removes or
replaces, keeps pixels and geometry, and gives the same patient the same pseudonym twice."""

from __future__ import annotations

import io
import json
import sqlite3
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from consilium.archive import deidentify as di
from consilium.archive.ingest import IngestSource, ingest_part10
from consilium.archive.media import iso_listing
from consilium.synthetic import PatientSpec, StudySpec, write_ct_series
from tests.conftest import DCMTK
from tests.inprocess import CITY_STUDY, DATA, REGIONAL_STUDY, InProcess, in_process

PATIENT = PatientSpec("CITY-MED-1", "Кузнецов^Андрей^Петрович", "19600101", "M")
SLICES = 4


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[InProcess, list[str]]]:
    work = tmp_path_factory.mktemp("media")
    with in_process(work / "var") as w:
        studies = []
        for tag, day in (("a", "20260110"), ("b", "20260220")):
            files = write_ct_series(StudySpec(PATIENT, day, accession=f"MED-{tag}",
                                              description="КТ ОГК"), work / tag,
                                    slices=SLICES, rows=64, columns=64, uid_seed=f"med-{tag}")
            for path in files:
                assert ingest_part10(w.runtime.store, path.read_bytes(),
                                     IngestSource("city-hospital")).ok
            studies.append(str(dcmread(files[0], stop_before_pixels=True).StudyInstanceUID))
        yield w, studies


def export(world: InProcess, user: str, **body: object) -> tuple[int, bytes, dict[str, str]]:
    answer = world.login(user).post("/api/media/export", json=body)
    return answer.status_code, answer.content, dict(answer.headers)


def unpack(data: bytes, folder: Path) -> Path:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        zf.extractall(folder)
    return folder


def dcmtk_run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(DCMTK / args[0]), *args[1:]], cwd=cwd, capture_output=True,
                          text=True, errors="replace", timeout=120)


def records(dicomdir: Path) -> set[tuple[str, ...]]:
    """(type, key, file ID) of every record: what two DICOMDIRs must agree on."""
    found = set()
    for record in dcmread(dicomdir).DirectoryRecordSequence:
        kind = str(record.DirectoryRecordType)
        key = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID",
               "SERIES": "SeriesInstanceUID"}.get(kind, "ReferencedSOPInstanceUIDInFile")
        file_id = "/".join(record.get("ReferencedFileID", []) or [])
        found.add((kind, str(record.get(key, "")), file_id))
    return found


def test_zip_has_a_dicomdir_that_dcmtk_reads_and_dcmmkdir_agrees_with(
        world: tuple[InProcess, list[str]], tmp_path: Path) -> None:
    w, studies = world
    status, data, headers = export(w, "ivanova", study_uids=[studies[0], CITY_STUDY])
    assert status == 200, data[:300]
    assert headers["content-type"] == "application/zip"
    assert headers["x-consilium-flagged"] == "0"
    folder = unpack(data, tmp_path / "ours")
    dump = dcmtk_run(folder, "dcmdump", "DICOMDIR")
    assert dump.returncode == 0 and "E:" not in dump.stderr, dump.stderr
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert "DICOMDIR" in names and len(names) == SLICES + 1 + 1
    assert all(len(part) <= 8 and part == part.upper() for n in names for part in n.split("/"))
    ours = records(folder / "DICOMDIR")
    # dcmmkdir (General Purpose CD-R profile) over the same files builds the same tree
    theirs_dir = tmp_path / "theirs"
    theirs_dir.mkdir()
    made = dcmtk_run(folder, "dcmmkdir", "+r", "-Pgp", "+D", str(theirs_dir / "DICOMDIR"),
                     "+id", ".", *[n for n in names if n != "DICOMDIR"])
    assert made.returncode == 0, made.stderr
    assert "E:" not in made.stderr and "cannot be added" not in made.stderr, made.stderr
    assert records(theirs_dir / "DICOMDIR") == ours
    kinds = [r[0] for r in ours]
    assert kinds.count("PATIENT") == 2 and kinds.count("IMAGE") == SLICES + 1
    # the patient's Cyrillic name is in the record, in its character set
    patient = next(r for r in dcmread(folder / "DICOMDIR").DirectoryRecordSequence
                   if r.DirectoryRecordType == "PATIENT" and r.PatientID == "CITY-MED-1")
    assert str(patient.PatientName) == "Кузнецов^Андрей^Петрович"
    # the files are the stored instances (each archive writes its own file meta)
    stored = {dcmread(p).SOPInstanceUID: dcmread(p)
              for p in w.runtime.settings.storage_dir.rglob("*") if p.is_file()}
    for name in names:
        if name == "DICOMDIR":
            continue
        ds = dcmread(folder / name)
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        original = stored[ds.SOPInstanceUID]
        assert ds.PixelData == original.PixelData
        assert ds.PatientName == original.PatientName


def test_iso_holds_the_same_file_set(world: tuple[InProcess, list[str]]) -> None:
    w, studies = world
    _s, zipped, _h = export(w, "ivanova", study_uids=[studies[0]])
    status, image, headers = export(w, "ivanova", study_uids=[studies[0]], format="iso")
    assert status == 200 and headers["content-type"] == "application/x-iso9660-image"
    assert image[0x8001:0x8006] == b"CD001"  # an ISO 9660 primary volume descriptor
    path = w.runtime.settings.data_dir / "check.iso"
    path.write_bytes(image)
    on_disc = iso_listing(path)
    with zipfile.ZipFile(io.BytesIO(zipped)) as zf:
        in_zip = {n: zf.read(n) for n in zf.namelist()}
    assert set(on_disc) == set(in_zip)
    for name, data in on_disc.items():
        if name != "DICOMDIR":  # the DICOMDIR's file-set UID differs between exports
            assert data == in_zip[name], name
    assert records_of_bytes(on_disc["DICOMDIR"]) == records_of_bytes(in_zip["DICOMDIR"])


def records_of_bytes(data: bytes) -> set[tuple[str, ...]]:
    return {(str(r.DirectoryRecordType), "/".join(r.get("ReferencedFileID", []) or []))
            for r in dcmread(io.BytesIO(data)).DirectoryRecordSequence}


def test_exports_pass_the_gate_and_are_on_record(world: tuple[InProcess, list[str]]) -> None:
    w, studies = world
    foreign = export(w, "ivanova", study_uids=[REGIONAL_STUDY])
    missing = export(w, "ivanova", study_uids=["1.2.3.4.5.6.7.8.9"])
    assert foreign[0] == missing[0] == 404
    assert json.loads(foreign[1])["error"] == json.loads(missing[1])["error"]
    assert export(w, "city-admin", study_uids=[studies[0]])[0] == 403
    assert w.anonymous().post("/api/media/export",
                              json={"study_uids": [studies[0]]}).status_code == 401
    assert export(w, "ivanova", study_uids=[studies[0]], format="tar")[0] == 400
    w.runtime.audit.flush()
    with sqlite3.connect(w.runtime.settings.data_dir / "consilium.db") as conn:
        rows = conn.execute("SELECT action, outcome, study_uid, patient_id, detail FROM "
                            "audit_event WHERE actor = 'dev:ivanova' AND action IN "
                            "('export', 'denied')").fetchall()
    exported = [r for r in rows if r[0] == "export" and r[2] == studies[0]]
    assert exported and exported[0][3] == "CITY-MED-1"
    assert json.loads(exported[0][4])["what"] == "patient media"
    denied = [r for r in rows if r[0] == "denied"]
    assert {r[2] for r in denied} == {REGIONAL_STUDY, "1.2.3.4.5.6.7.8.9"}
    assert all(r[3] == "" for r in denied)


def _files(data: bytes) -> list[Dataset]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return [dcmread(io.BytesIO(zf.read(n))) for n in zf.namelist() if n != "DICOMDIR"]


def test_deidentified_copies_follow_the_basic_profile_with_stable_pseudonyms(
        world: tuple[InProcess, list[str]]) -> None:
    w, studies = world
    status, first, headers = export(w, "ivanova", study_uids=[studies[0]], deidentify=True)
    assert status == 200, first[:300]
    _s, second, headers2 = export(w, "ivanova", study_uids=[studies[1]], deidentify=True)
    pseudonym = headers["x-consilium-pseudonyms"]
    assert pseudonym.startswith("ANON-") and headers2["x-consilium-pseudonyms"] == pseudonym
    assert {ds.PatientID for ds in _files(second)} == {pseudonym}  # another export, same one
    originals = {dcmread(p).SOPInstanceUID: dcmread(p)
                 for p in w.runtime.settings.storage_dir.rglob("*") if p.is_file()}
    copies = _files(first)
    assert len(copies) == SLICES
    original_uids = {u for ds in originals.values() for u in (
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.FrameOfReferenceUID)}
    for ds in copies:
        assert di.leftovers(ds) == []
        assert ds.PatientID == pseudonym and "Кузнецов" not in str(ds.PatientName)
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.StudyDate == "" and "AcquisitionDate" not in ds
        assert ds.LongitudinalTemporalInformationModified == "REMOVED"
        assert [c.CodeValue for c in ds.DeidentificationMethodCodeSequence] == ["113100"]
        assert not {ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID,
                    ds.FrameOfReferenceUID} & original_uids
    assert len({ds.SeriesInstanceUID for ds in copies}) == 1  # the series still together
    assert len({ds.StudyInstanceUID for ds in copies}) == 1
    assert len({ds.SOPInstanceUID for ds in copies}) == SLICES
    by_position = {tuple(o.ImagePositionPatient): o for o in originals.values()
                   if o.StudyInstanceUID == studies[0]}
    for ds in copies:  # pixels and geometry kept
        original = by_position[tuple(ds.ImagePositionPatient)]
        assert ds.PixelData == original.PixelData
        assert ds.PixelSpacing == original.PixelSpacing
        assert ds.ImageOrientationPatient == original.ImageOrientationPatient
    # the same study again: the same pseudonymous UIDs
    again = _files(export(w, "ivanova", study_uids=[studies[0]], deidentify=True)[1])
    assert {d.SOPInstanceUID for d in again} == {d.SOPInstanceUID for d in copies}
    # the option keeps dates
    dated = _files(export(w, "ivanova", study_uids=[studies[0]], deidentify=True,
                          retain_dates=True)[1])
    assert {d.StudyDate for d in dated} == {"20260110"}
    assert dated[0].LongitudinalTemporalInformationModified == "UNMODIFIED"
    assert [c.CodeValue for c in dated[0].DeidentificationMethodCodeSequence] == [
        "113100", "113106"]
    w.runtime.audit.flush()
    with sqlite3.connect(w.runtime.settings.data_dir / "consilium.db") as conn:
        delivered = [json.loads(d) for (d,) in conn.execute(
            "SELECT detail FROM audit_event WHERE action = 'export' AND detail LIKE "
            "'%de-identified copy delivered%'")]
    assert len(delivered) == 4 and all(d["pseudonyms"] == [pseudonym] for d in delivered)


def test_burned_in_annotation_is_flagged(world: tuple[InProcess, list[str]]) -> None:
    w, _studies = world
    us = dcmread(DATA / "examples_rgb_color.dcm")  # ultrasound, Burned In Annotation absent
    us.PatientID = "CITY-US-1"
    buffer = io.BytesIO()
    us.save_as(buffer, enforce_file_format=True)
    assert ingest_part10(w.runtime.store, buffer.getvalue(), IngestSource("city-hospital")).ok
    status, _data, headers = export(w, "ivanova", study_uids=[str(us.StudyInstanceUID)],
                                    deidentify=True)
    assert status == 200 and headers["x-consilium-flagged"] == "1"


def _value_for(vr: str) -> object:
    samples: dict[str, object] = {
        "PN": "Doe^John", "DA": "20200101", "TM": "101010", "DT": "20200101101010",
        "UI": "1.2.3.4", "AS": "045Y", "DS": "1.5", "IS": "3", "US": 1, "SS": 1, "UL": 1,
        "SL": 1, "FL": 1.0, "FD": 1.0, "CS": "VALUE", "SQ": [Dataset()], "OB": b"\x00\x01",
        "UN": b"\x00\x01", "UC": "text", "UT": "text", "ST": "text", "LT": "text",
        "LO": "text", "SH": "text", "UR": "http://x", "AT": 0x00100010}
    return samples.get(vr, "text")


def test_every_attribute_of_the_profile_table_is_handled() -> None:
    """A dataset carrying every attribute the table names (with a value of its VR), private
    attributes and an overlay: after de-identification nothing is left that the profile
    removes, every UID is replaced, and the rest is kept."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    for keyword in di.BASIC_PROFILE:
        tag = tag_for_keyword(keyword)
        assert tag is not None, keyword
        vr = dictionary_VR(tag).split(" or ")[0]
        ds.add_new(tag, vr, _value_for(vr))
    ds.add_new(0x00091010, "LO", "private")
    ds.add_new(0x60003000, "OW", b"\x00" * 8)  # an overlay
    nested = Dataset()
    nested.PatientName = "Nested^Name"
    nested.InstitutionName = "Hospital"
    nested.ReferencedSOPInstanceUID = "1.2.3.5"
    ds.add_new(0x00081140, "SQ", [nested])  # Referenced Image Sequence (kept, walked)
    ds.SliceThickness = "2.5"
    ds.SOPInstanceUID = "1.2.3.6"
    keys = di.Pseudonyms(b"k" * 32)
    di.deidentify(ds, keys, "city-hospital")
    assert di.leftovers(ds) == []
    for keyword, action in di.BASIC_PROFILE.items():
        if action == "X":
            assert keyword not in ds, keyword
        elif action == "U" and keyword in ds and ds[keyword].value:
            assert ds[keyword].value != "1.2.3.4", keyword
    assert 0x00091010 not in ds and 0x60003000 not in ds
    assert ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID == keys.uid("1.2.3.5")
    assert "InstitutionName" not in ds.ReferencedImageSequence[0]
    assert ds.SliceThickness == "2.5"
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID == keys.uid("1.2.3.6")
    # the same patient, the same pseudonym; another, another
    assert keys.patient("city-hospital", "P1") == keys.patient("city-hospital", "P1")
    assert keys.patient("city-hospital", "P1") != keys.patient("regional-center", "P1")
    assert len(keys.uid(generate_uid())) <= 64
