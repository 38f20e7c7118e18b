"""Marks as DICOM objects, both ways: the Key Object Selection, TID 1500 measurement report and
Grayscale Softcopy Presentation State written from a case's marks pass dcmtk's checkers
(``dsrdump``, ``dcmpschk``), and highdicom, pydicom and Consilium's own reader read back the
same coordinates, values and references."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

import highdicom as hd
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from consilium.archive import marks_read
from consilium.archive.marks import ImageRef, KeyImage, Mark, MarkKind, MarkSource, Measured
from consilium.consult import marks_dicom as md
from tests.conftest import DCMTK, pydicom_data_dir

DATA = pydicom_data_dir() / "test_files"
SIGNED = datetime(2026, 12, 3, 10, 15, 30, tzinfo=UTC)


def header(name: str) -> Dataset:
    return dcmread(DATA / name, stop_before_pixels=True)


CT = header("CT_small.dcm")
CT.WindowCenter, CT.WindowWidth = 40, 400  # a soft-tissue window, as a scanner would set


def _multiframe() -> Dataset:
    """A multi-frame CT's header (references to one frame of it)."""
    ds = header("CT_small.dcm")
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.77"
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.78"
    ds.NumberOfFrames = 15
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"  # Enhanced CT Image Storage
    return ds


MULTI = _multiframe()


def ref(ds: Dataset, frame: int | None = None) -> ImageRef:
    return ImageRef(study_uid=ds.StudyInstanceUID, series_uid=ds.SeriesInstanceUID,
                    sop_instance_uid=ds.SOPInstanceUID, sop_class_uid=ds.SOPClassUID,
                    frame=frame)


def the_marks(cyrillic: bool = True) -> list[Mark]:
    who = ({"author_subject": "dev:kuznetsova", "author_name": "Елена Кузнецова",
            "color": "#e6194b"} if cyrillic else
           {"author_subject": "dev:smith", "author_name": "Anna Smith", "color": "#e6194b"})
    other = ({"author_subject": "dev:ivanova", "author_name": "Анна Иванова",
              "color": "#3cb44b"} if cyrillic else
             {"author_subject": "dev:jones", "author_name": "Bob Jones", "color": "#3cb44b"})
    text = "узел" if cyrillic else "nodule"
    return [
        Mark(id="len-1", kind=MarkKind.LENGTH, image=ref(CT), points=[(10.5, 20.25), (70, 60)],
             measured=Measured(length_mm=84.2), text=text, **who),
        Mark(id="ell-1", kind=MarkKind.ELLIPSE, image=ref(CT), points=[(20, 20), (60, 40)],
             measured=Measured(area_mm2=120.5, mean=35.2, stdev=10.1, min=-5, max=80,
                               unit="HU"), **other),
        Mark(id="ang-1", kind=MarkKind.ANGLE, image=ref(CT),
             points=[(10, 10), (30, 30), (50, 10)], measured=Measured(angle_deg=90.0), **who),
        Mark(id="rect-1", kind=MarkKind.RECTANGLE, image=ref(MULTI, 3), points=[(2, 2), (8, 6)],
             measured=Measured(area_mm2=24.0), **who),
        Mark(id="free-1", kind=MarkKind.FREEHAND, image=ref(CT),
             points=[(5, 5), (25, 35), (40, 10)], **other),
        Mark(id="arrow-1", kind=MarkKind.ARROW, image=ref(CT), points=[(30, 30), (60, 62)],
             text="смотри" if cyrillic else "look", **who),
        Mark(id="world-len", kind=MarkKind.LENGTH, frame_of_reference_uid="1.2.3.4",
             points3d=[(0, 0, 0), (30, 40, 0)], **who),
        Mark(id="world-roi", kind=MarkKind.ELLIPSE, frame_of_reference_uid="1.2.3.4",
             points3d=[(0, 0, 5), (10, 0, 5), (5, -3, 5), (5, 3, 5)],
             measured=Measured(area_mm2=94.2), **other),
        Mark(id="elsewhere", kind=MarkKind.LENGTH,  # an image not among the sources: left out
             image=ImageRef(study_uid="1.2", series_uid="1.3", sop_instance_uid="1.4"),
             points=[(0, 0), (1, 1)]),
    ]


SOURCES = {CT.SOPInstanceUID: CT, MULTI.SOPInstanceUID: MULTI}
KEYS = [KeyImage(image=ref(CT), caption="узел в S6", instance_number=1),
        KeyImage(image=ref(MULTI, 3), caption="", instance_number=1),
        KeyImage(image=ref(MULTI, 7), caption="доза")]


def write(tmp: Path, cyrillic: bool = True
          ) -> tuple[Path, Path, Path, Path, dict[str, str]]:
    signing = md.Signing("Consult conclusion v1", "Елена Кузнецова" if cyrillic else "Anna Smith",
                         "Городская больница №1" if cyrillic else "City Hospital", SIGNED)
    marks = the_marks(cyrillic)
    tracking = {m.id: f"1.2.826.0.1.3680043.8.498.{100 + n}" for n, m in enumerate(marks)}
    kos = md.key_object_selection(SOURCES, KEYS, signing, "1.2.826.0.1.3680043.8.498.1",
                                  "1.2.826.0.1.3680043.8.498.2", 9100)
    sr = md.measurement_report(SOURCES, marks, signing, "1.2.826.0.1.3680043.8.498.3",
                               "1.2.826.0.1.3680043.8.498.4", 9101, tracking)
    groups = md.by_series(marks, SOURCES)
    assert [{m.id for m in g} for g in groups] == [  # by series UID: the multi-frame's first
        {"rect-1"}, {"len-1", "ell-1", "ang-1", "free-1", "arrow-1"}]
    groups.reverse()  # the CT's state first below
    prs = [md.presentation_state(SOURCES, group, signing, f"1.2.826.0.1.3680043.8.498.5{n}",
                                 "1.2.826.0.1.3680043.8.498.6", 9102, tracking, n)
           for n, group in enumerate(groups, 1)]
    paths = tmp / "kos.dcm", tmp / "sr.dcm", tmp / "pr.dcm", tmp / "pr2.dcm"
    for ds, path in zip((kos, sr, *prs), paths, strict=True):
        ds.save_as(path, enforce_file_format=True)
    return paths[0], paths[1], paths[2], paths[3], tracking


def run(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(DCMTK / tool), *args], capture_output=True, text=True,
                          timeout=60)


def test_written_objects_pass_dcmtk_checks(tmp_path: Path) -> None:
    kos, sr, pr, pr2, _ = write(tmp_path)
    for path in (kos, sr):
        dumped = run("dsrdump", "-Ee", str(path))  # -Ee: report every error and warning
        assert dumped.returncode == 0, dumped.stderr
        assert "E:" not in dumped.stderr, dumped.stderr
    shown = run("dsrdump", str(sr)).stdout
    assert "Comprehensive 3D SR Document" in shown and "Completion Flag     : COMPLETE" in shown
    assert '"Length")="84.2" (mm,UCUM,"millimeter")' in shown
    assert "SCOORD3D" in shown and "Кузнецова^Елена" in shown
    assert "Key Object Selection Document" in run("dsrdump", str(kos)).stdout

    # dcmpschk's value checker knows no Unicode (it says so: "does not support this Specific
    # Character Set: ISO_IR 192"); with Latin names and texts it must pass outright ...
    (tmp_path / "latin").mkdir()
    latin = write(tmp_path / "latin", cyrillic=False)
    for path in latin[2:4]:
        checked = run("dcmpschk", str(path))
        assert checked.returncode == 0 and "Test passed" in checked.stderr, checked.stderr
    # ... and with Cyrillic ones its only complaints are about the non-ASCII values
    for path in (pr, pr2):
        checked = run("dcmpschk", str(path))
        lines = checked.stderr.splitlines()
        complaints = [line for line in lines if "Attribute value   :" in line]
        assert complaints and all(not line.split(":", 1)[1].isascii() for line in complaints)
        errors = [line for line in lines if line.startswith("E: Error")]
        assert len(errors) == len(complaints), checked.stderr


def test_key_object_selection_reads_back(tmp_path: Path) -> None:
    kos = dcmread(write(tmp_path)[0])
    assert kos.SOPClassUID == md.KEY_OBJECT_SELECTION and kos.Modality == "KO"
    assert kos.SpecificCharacterSet == "ISO_IR 192" and kos.SeriesNumber == 9100
    assert kos.PatientID == CT.PatientID and kos.StudyInstanceUID == CT.StudyInstanceUID
    assert (kos.ContentDate, kos.ContentTime) == ("20261203", "101530")
    # highdicom: the document and its references
    document = hd.ko.KeyObjectSelectionDocument.from_dataset(kos)
    content = document.ContentSequence
    images = [i for i in content if i.ValueType == "IMAGE"]
    assert [(i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID,
             list(i.ReferencedSOPSequence[0].get("ReferencedFrameNumber") or []))
            for i in images] == [(CT.SOPInstanceUID, []), (MULTI.SOPInstanceUID, [3, 7])]
    evidence = {s.ReferencedSOPSequence[0].ReferencedSOPInstanceUID: s.SeriesInstanceUID
                for s in kos.CurrentRequestedProcedureEvidenceSequence[0]
                .ReferencedSeriesSequence}
    assert evidence == {CT.SOPInstanceUID: CT.SeriesInstanceUID,
                        MULTI.SOPInstanceUID: MULTI.SeriesInstanceUID}
    # Consilium's reader
    keys = marks_read.read_key_object_selection(kos)
    assert [(k.image.sop_instance_uid, k.image.series_uid, k.image.frame) for k in keys] == [
        (CT.SOPInstanceUID, CT.SeriesInstanceUID, None),
        (MULTI.SOPInstanceUID, MULTI.SeriesInstanceUID, 3),
        (MULTI.SOPInstanceUID, MULTI.SeriesInstanceUID, 7)]
    assert all(k.source is MarkSource.KOS and k.source_sop_instance_uid == kos.SOPInstanceUID
               for k in keys)
    assert "1: узел в S6" in keys[0].caption and keys[0].author_name == "Кузнецова^Елена"


def test_measurement_report_reads_back(tmp_path: Path) -> None:
    _, sr_path, _, _, tracking = write(tmp_path)
    sr = dcmread(sr_path)
    assert sr.SOPClassUID == md.COMPREHENSIVE_3D_SR and sr.Modality == "SR"
    assert (sr.CompletionFlag, sr.VerificationFlag) == ("COMPLETE", "VERIFIED")
    assert sr.InstitutionName == "Городская больница №1"
    marks = {m.id: m for m in the_marks()}
    # highdicom's TID 1500 classes
    report = hd.sr.Comprehensive3DSR.from_dataset(sr)
    content = hd.sr.MeasurementReport.from_sequence([report])
    planar = content.get_planar_roi_measurement_groups()
    by_uid = {str(g.tracking_uid): g for g in planar}
    length = by_uid[tracking["len-1"]]
    assert str(length.tracking_identifier) == "узел"
    assert length.roi is not None and length.roi.GraphicType == "POLYLINE"
    assert [float(v) for v in length.roi.GraphicData] == [10.5, 20.25, 70.0, 60.0]
    source = length.roi.ContentSequence[0].ReferencedSOPSequence[0]
    assert source.ReferencedSOPInstanceUID == CT.SOPInstanceUID
    measured = {m.name.meaning: (m.value, m.unit.value) for m in length.get_measurements()}
    assert measured == {"Length": (84.2, "mm")}
    ellipse = by_uid[tracking["ell-1"]]
    assert ellipse.roi is not None and ellipse.roi.GraphicType == "ELLIPSE"
    assert [float(v) for v in ellipse.roi.GraphicData] == [20, 30, 60, 30, 40, 20, 40, 40]
    assert {m.name.meaning: (m.value, m.unit.value) for m in ellipse.get_measurements()} == {
        "Area": (120.5, "mm2"), "Mean": (35.2, "[hnsf'U]"),
        "Standard Deviation": (10.1, "[hnsf'U]"), "Minimum": (-5.0, "[hnsf'U]"),
        "Maximum": (80.0, "[hnsf'U]")}
    rect = by_uid[tracking["rect-1"]]
    assert rect.roi is not None
    assert rect.roi.ContentSequence[0].ReferencedSOPSequence[0].ReferencedFrameNumber == 3
    world = by_uid[tracking["world-roi"]]
    assert world.roi is not None and world.roi.ValueType == "SCOORD3D"
    assert world.roi.ReferencedFrameOfReferenceUID == "1.2.3.4"
    assert "elsewhere" not in tracking or tracking["elsewhere"] not in by_uid
    plain = content.get_image_measurement_groups()  # TID 1501: the world length
    assert [(str(g.tracking_uid), [m.value for m in g.get_measurements()]) for g in plain] == [
        (tracking["world-len"], [50.0])]

    # Consilium's reader: the same coordinates, values and references
    read = {m.id: m for m in marks_read.read_measurement_report(sr)}
    assert set(read) == {tracking[i] for i in marks if i != "elsewhere"}
    for mark_id, original in marks.items():
        if mark_id == "elsewhere":
            continue
        back = read[tracking[mark_id]]
        assert back.kind is original.kind, mark_id
        assert back.source is MarkSource.SR and back.source_sop_instance_uid == sr.SOPInstanceUID
        if original.image is not None:
            assert back.image == original.image, mark_id
            assert back.points == md.ellipse_axes(original.points) if (
                original.kind is MarkKind.ELLIPSE) else md.outline(original), mark_id
        else:
            assert back.frame_of_reference_uid == original.frame_of_reference_uid
            assert back.points3d[:len(original.points3d)] == original.points3d, mark_id
        for name, value in original.measured.model_dump(exclude_none=True).items():
            assert getattr(back.measured, name) == value, (mark_id, name)
    assert read[tracking["len-1"]].text == "узел"
    assert read[tracking["arrow-1"]].text == "смотри"
    assert read[tracking["world-len"]].measured.length_mm == 50.0


def test_presentation_state_reads_back(tmp_path: Path) -> None:
    _, _, pr_path, pr2_path, tracking = write(tmp_path)
    pr, pr2 = dcmread(pr_path), dcmread(pr2_path)
    assert pr.SOPClassUID == md.GRAYSCALE_PS and pr.Modality == "PR"
    assert pr.ContentCreatorName == "Кузнецова^Елена"
    layers = {layer.GraphicLayer: layer for layer in pr.GraphicLayerSequence}
    assert {str(layer.GraphicLayerDescription) for layer in layers.values()} == {
        "Елена Кузнецова", "Анна Иванова"}
    # pydicom, attribute by attribute: what is drawn on which image and frame
    drawn = {}
    for state_ds in (pr, pr2):
        for annotation in state_ds.GraphicAnnotationSequence:
            image = annotation.ReferencedImageSequence[0]
            frame = image.get("ReferencedFrameNumber")
            for graphic in annotation.GraphicObjectSequence:
                drawn[str(graphic.TrackingUID)] = (
                    image.ReferencedSOPInstanceUID, int(frame) if frame else None,
                    graphic.GraphicType, [float(v) for v in graphic.GraphicData],
                    graphic.GraphicAnnotationUnits)
    assert drawn[tracking["len-1"]] == (CT.SOPInstanceUID, None, "POLYLINE",
                                        [10.5, 20.25, 70.0, 60.0], "PIXEL")
    assert drawn[tracking["rect-1"]] == (MULTI.SOPInstanceUID, 3, "POLYLINE",
                                         [2, 2, 8, 2, 8, 6, 2, 6, 2, 2], "PIXEL")
    assert drawn[tracking["ell-1"]][2:4] == ("ELLIPSE", [20, 30, 60, 30, 40, 20, 40, 40])
    assert tracking["world-len"] not in drawn  # no image: not in a presentation state
    texts = [str(t.UnformattedTextValue) for a in pr.GraphicAnnotationSequence
             for t in a.get("TextObjectSequence") or []]
    assert "узел, 84.2 mm" in texts and "смотри" in texts
    for state_ds, image in ((pr, CT), (pr2, MULTI)):
        assert [(s.SeriesInstanceUID, [i.ReferencedSOPInstanceUID
                                       for i in s.ReferencedImageSequence])
                for s in state_ds.ReferencedSeriesSequence] == [
            (image.SeriesInstanceUID, [image.SOPInstanceUID])]
    window = pr.SoftcopyVOILUTSequence[0]
    assert (float(window.WindowCenter), float(window.WindowWidth)) == (
        float(CT.WindowCenter), float(CT.WindowWidth))

    # Consilium's reader
    marks, state = marks_read.read_presentation_state(pr)
    marks += marks_read.read_presentation_state(pr2)[0]
    by_id = {m.id: m for m in marks}
    length = by_id[tracking["len-1"]]
    assert (length.kind, length.points, length.image, length.text, length.color,
            length.author_name) == (MarkKind.LENGTH, [(10.5, 20.25), (70.0, 60.0)], ref(CT),
                                    "узел, 84.2 mm", "#e6194b", "Елена Кузнецова")
    arrow = by_id[tracking["arrow-1"]]
    assert (arrow.kind, arrow.points, arrow.text) == (MarkKind.ARROW, [(30, 30), (60, 62)],
                                                      "смотри")
    assert by_id[tracking["rect-1"]].image == ref(MULTI, 3)
    assert by_id[tracking["rect-1"]].kind is MarkKind.RECTANGLE
    assert by_id[tracking["ang-1"]].kind is MarkKind.ANGLE
    assert by_id[tracking["free-1"]].kind is MarkKind.FREEHAND
    assert by_id[tracking["ell-1"]].color == "#3cb44b"
    assert by_id[tracking["ell-1"]].author_name == "Анна Иванова"
    assert state.sop_instance_uid == pr.SOPInstanceUID and state.label == "CONSILIUM"
    assert [i.sop_instance_uid for i in state.images] == [CT.SOPInstanceUID]
    assert [(v.center, v.width) for v in state.voi] == [
        (float(CT.WindowCenter), float(CT.WindowWidth))]
    assert all(m.source is MarkSource.GSPS for m in marks)


def test_nothing_to_write_is_a_clear_error() -> None:
    signing = md.Signing("t", "a", "i", SIGNED)
    elsewhere = [m for m in the_marks() if m.id == "elsewhere"]
    with pytest.raises(ValueError, match="no mark"):
        md.measurement_report(SOURCES, elsewhere, signing, "1.2.3", "1.2.4", 1, {})
    with pytest.raises(ValueError, match="no mark"):
        md.presentation_state(SOURCES, elsewhere, signing, "1.2.3", "1.2.4", 1, {})
    stray = KeyImage(image=ImageRef(study_uid="1", series_uid="2", sop_instance_uid="3"))
    with pytest.raises(ValueError, match="key images"):
        md.key_object_selection(SOURCES, [stray], signing, "1.2.3", "1.2.4", 1)


def test_person_names() -> None:
    assert md.person_name("Елена Кузнецова") == "Кузнецова^Елена"
    assert md.person_name("Иванов^Иван") == "Иванов^Иван"
    assert md.person_name("Consilium") == "Consilium"
