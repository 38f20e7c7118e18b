"""Marks found in the archive: Key Object Selection documents, TID 1500 measurement reports
(Comprehensive, Comprehensive 3D and Enhanced SR) and Grayscale Softcopy Presentation States,
written by Consilium on signing or by any other system, read back into
:class:`~consilium.archive.marks.Mark` / :class:`~consilium.archive.marks.KeyImage` and
:class:`PresentationState` for the viewer.

The content tree is walked with pydicom rather than through highdicom's template classes, so
that reports which bend TID 1500 a little (coordinates "inferred from" under each NUM, as
dcmjs/OHIF write them, instead of an Image Region beside the measurements) are read too. What
cannot be understood is skipped, never guessed: a measurement group without coordinates is not
a mark; a graphic in DISPLAY units is not drawn on an image. Inverse of
:mod:`consilium.consult.marks_dicom`.
"""

from __future__ import annotations

import hashlib
import logging
import math
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from pydicom import dcmread
from pydicom.dataset import Dataset

from consilium.archive.marks import ImageRef, KeyImage, Mark, MarkKind, MarkSource, Measured

log = logging.getLogger(__name__)

KEY_OBJECT_SELECTION = "1.2.840.10008.5.1.4.1.1.88.59"
MEASUREMENT_SR = {"1.2.840.10008.5.1.4.1.1.88.22",  # Enhanced SR
                  "1.2.840.10008.5.1.4.1.1.88.33",  # Comprehensive SR
                  "1.2.840.10008.5.1.4.1.1.88.34"}  # Comprehensive 3D SR
PRESENTATION_STATES = {"1.2.840.10008.5.1.4.1.1.11.1",  # Grayscale Softcopy PS
                       "1.2.840.10008.5.1.4.1.1.11.2"}  # Color Softcopy PS
READ_CLASSES = {KEY_OBJECT_SELECTION, *MEASUREMENT_SR, *PRESENTATION_STATES}

_MEASUREMENT_GROUP = ("125007", "DCM")
_TRACKING_ID, _TRACKING_UID = ("112039", "DCM"), ("112040", "DCM")
_KEY_DESCRIPTION = ("113012", "DCM")
_NAMES = {("410668003", "SCT"): "length_mm", ("G-D7FE", "SRT"): "length_mm",
          ("1483009", "SCT"): "angle_deg", ("110859", "DCM"): "angle_deg",
          ("42798000", "SCT"): "area_mm2", ("G-A166", "SRT"): "area_mm2",
          ("373098007", "SCT"): "mean", ("R-00317", "SRT"): "mean",
          ("386136009", "SCT"): "stdev", ("113061", "DCM"): "stdev",
          ("R-10047", "SRT"): "stdev",
          ("255605001", "SCT"): "min", ("R-404FB", "SRT"): "min",
          ("56851009", "SCT"): "max", ("G-A437", "SRT"): "max"}
_LENGTH_SCALE = {"mm": 1.0, "cm": 10.0, "m": 1000.0, "um": 0.001}
_AREA_SCALE = {"mm2": 1.0, "cm2": 100.0}


class Voi(BaseModel):
    """A window of a presentation state, for the images listed (all of it when empty)."""

    center: float
    width: float
    function: str = "LINEAR"
    sop_instance_uids: list[str] = Field(default_factory=list)


class Layer(BaseModel):
    name: str
    order: int
    description: str = ""
    color: str = Field(default="", description="#rrggbb")


class PresentationState(BaseModel):
    """How a presentation state shows its images; its marks are those whose
    ``source_sop_instance_uid`` is this state's SOP Instance UID."""

    sop_instance_uid: str
    series_uid: str
    label: str = ""
    description: str = ""
    creator: str = ""
    images: list[ImageRef] = Field(default_factory=list)
    voi: list[Voi] = Field(default_factory=list)
    layers: list[Layer] = Field(default_factory=list)
    invert: bool = False
    rotation: int = 0
    flip_horizontal: bool = False


class ArchivedMarks(BaseModel):
    """``GET /api/archive/studies/{study_uid}/marks``."""

    marks: list[Mark] = Field(default_factory=list)
    key_images: list[KeyImage] = Field(default_factory=list)
    presentation_states: list[PresentationState] = Field(default_factory=list)


# -- helpers ------------------------------------------------------------------------------------


def _code(item: Dataset, keyword: str = "ConceptNameCodeSequence") -> tuple[str, str]:
    seq = item.get(keyword)
    if not seq:
        return "", ""
    code = seq[0]
    value = code.get("CodeValue") or code.get("LongCodeValue") or code.get("URNCodeValue") or ""
    return str(value), str(code.get("CodingSchemeDesignator", ""))


def _walk(items: Any) -> Iterator[Dataset]:
    for item in items or []:
        yield item
        yield from _walk(item.get("ContentSequence"))


def _text(value: Any) -> str:
    return str(value or "").strip()


def _mark_id(source_uid: str, n: int, tracking_uid: str = "") -> str:
    if tracking_uid and len(tracking_uid) <= 64:
        return tracking_uid
    return hashlib.sha256(f"{source_uid}:{n}".encode()).hexdigest()[:32]


def _pairs(data: Any) -> list[tuple[float, float]]:
    values = [float(v) for v in data or []]
    return [(values[i], values[i + 1]) for i in range(0, len(values) - 1, 2)]


def _triples(data: Any) -> list[tuple[float, float, float]]:
    values = [float(v) for v in data or []]
    return [(values[i], values[i + 1], values[i + 2]) for i in range(0, len(values) - 2, 3)]


def _kind(graphic_type: str, points: list[Any], measured: Measured) -> MarkKind:
    """The kind of a mark from its graphic and what it measures (marks_dicom's table)."""
    if graphic_type in ("ELLIPSE", "CIRCLE", "ELLIPSOID"):
        return MarkKind.ELLIPSE
    closed = len(points) > 2 and points[0] == points[-1]
    if graphic_type == "POLYGON" or closed:
        ring = points[:-1] if closed else points
        axis_aligned = len(ring) == 4 and all(
            ring[i][0] == ring[(i + 1) % 4][0] or ring[i][1] == ring[(i + 1) % 4][1]
            for i in range(4))
        return MarkKind.RECTANGLE if axis_aligned else MarkKind.FREEHAND
    if measured.angle_deg is not None or len(points) == 3:
        return MarkKind.ANGLE
    if measured.length_mm is not None:
        return MarkKind.LENGTH
    if len(points) > 3:
        return MarkKind.FREEHAND
    return MarkKind.ARROW


def _circle_to_axes(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    (cx, cy), edge = points[0], points[1]
    r = math.dist((cx, cy), edge)
    return [(cx - r, cy), (cx + r, cy), (cx, cy - r), (cx, cy + r)]


def _color(lab: Any) -> str:
    if not lab:
        return ""
    try:
        import highdicom as hd

        r, g, b = hd.color.CIELabColor.from_dicom_value([int(v) for v in lab]).to_rgb()
    except Exception:
        return ""
    return f"#{int(r):02x}{int(g):02x}{int(b):02x}"


def _evidence_series(ds: Dataset) -> dict[str, tuple[str, str]]:
    """SOP Instance UID -> (study, series) from the evidence sequences of an SR or KOS."""
    found: dict[str, tuple[str, str]] = {}
    for keyword in ("CurrentRequestedProcedureEvidenceSequence", "PertinentOtherEvidenceSequence",
                    "ReferencedSeriesSequence"):
        for study in ds.get(keyword) or []:
            study_uid = str(study.get("StudyInstanceUID", ds.get("StudyInstanceUID", "")))
            series_items = study.get("ReferencedSeriesSequence") or (
                [study] if "SeriesInstanceUID" in study else [])
            for series in series_items:
                for sop in series.get("ReferencedSOPSequence") or series.get(
                        "ReferencedImageSequence") or []:
                    found[str(sop.ReferencedSOPInstanceUID)] = (
                        study_uid, str(series.SeriesInstanceUID))
    return found


def _image_ref(ds: Dataset, sop: Dataset, where: Mapping[str, tuple[str, str]]
               ) -> ImageRef | None:
    uid = str(sop.get("ReferencedSOPInstanceUID", ""))
    if not uid or len(uid) > 64:
        return None
    study_uid, series_uid = where.get(uid, (str(ds.get("StudyInstanceUID", "")), ""))
    frames = sop.get("ReferencedFrameNumber")
    frame = None
    if frames is not None and frames != "":
        first = frames[0] if isinstance(frames, list | tuple) or type(
            frames).__name__ == "MultiValue" else frames
        frame = int(first) if int(first) >= 1 else None
    return ImageRef(study_uid=study_uid, series_uid=series_uid, sop_instance_uid=uid,
                    sop_class_uid=str(sop.get("ReferencedSOPClassUID", "")) or None,
                    frame=frame)


# -- key object selection -----------------------------------------------------------------------


def read_key_object_selection(ds: Dataset) -> list[KeyImage]:
    """The images a KOS selects (one per referenced frame), its description as their caption."""
    where = _evidence_series(ds)
    root = ds.get("ContentSequence") or []
    caption = "\n".join(_text(i.get("TextValue")) for i in root
                        if i.get("ValueType") == "TEXT" and _code(i) == _KEY_DESCRIPTION)
    observer = next((str(i.get("PersonName", "")) for i in root
                     if i.get("ValueType") == "PNAME"), "")
    found: list[KeyImage] = []
    for item in root:
        if item.get("ValueType") != "IMAGE" or not item.get("ReferencedSOPSequence"):
            continue
        sop = item.ReferencedSOPSequence[0]
        frames = sop.get("ReferencedFrameNumber")
        numbers: list[int | None] = [None]
        if frames is not None and frames != "":
            values = list(frames) if type(frames).__name__ == "MultiValue" or isinstance(
                frames, list) else [frames]
            numbers = [int(v) for v in values if int(v) >= 1] or [None]
        ref = _image_ref(ds, sop, where)
        if ref is None:
            continue
        for number in numbers:
            found.append(KeyImage(image=ref.model_copy(update={"frame": number}),
                                  caption=caption[:1024], author_name=observer[:255],
                                  source=MarkSource.KOS,
                                  source_sop_instance_uid=str(ds.SOPInstanceUID)))
    return found


# -- measurement reports ------------------------------------------------------------------------


def _measured(group: Dataset) -> Measured:
    values: dict[str, Any] = {}
    for item in _walk(group.get("ContentSequence")):
        if item.get("ValueType") != "NUM" or not item.get("MeasuredValueSequence"):
            continue
        name = _NAMES.get(_code(item))
        if name is None or name in values:
            continue
        mv = item.MeasuredValueSequence[0]
        value = float(mv.NumericValue)
        unit = _code(mv, "MeasurementUnitsCodeSequence")[0]
        if name == "length_mm":
            value *= _LENGTH_SCALE.get(unit, 1.0)
        elif name == "area_mm2":
            value *= _AREA_SCALE.get(unit, 1.0)
        elif name in ("mean", "stdev", "min", "max"):
            values["unit"] = "HU" if unit == "[hnsf'U]" else (unit if unit != "1" else None)
        values[name] = value
    return Measured(**values)


def _group_mark(ds: Dataset, group: Dataset, n: int,
                where: Mapping[str, tuple[str, str]], observer: str) -> Mark | None:
    tracking_id = tracking_uid = ""
    for item in group.get("ContentSequence") or []:
        if _code(item) == _TRACKING_ID:
            tracking_id = _text(item.get("TextValue"))
        elif _code(item) == _TRACKING_UID:
            tracking_uid = _text(item.get("UID"))
    measured = _measured(group)
    for item in _walk(group.get("ContentSequence")):
        value_type = item.get("ValueType")
        graphic_type = str(item.get("GraphicType", ""))
        if value_type == "SCOORD":
            points = _pairs(item.get("GraphicData"))
            image = next((c for c in item.get("ContentSequence") or []
                          if c.get("ValueType") == "IMAGE"), None)
            if image is None or not points or not image.get("ReferencedSOPSequence"):
                continue
            ref = _image_ref(ds, image.ReferencedSOPSequence[0], where)
            if ref is None:
                continue
            if graphic_type == "CIRCLE" and len(points) == 2:
                points = _circle_to_axes(points)
            kind = _kind(graphic_type, points, measured)
            return _mark(ds, n, tracking_uid, kind, tracking_id, measured, observer,
                         image=ref, points=points)
        if value_type == "SCOORD3D":
            points3d = _triples(item.get("GraphicData"))
            frame_of_reference = _text(item.get("ReferencedFrameOfReferenceUID"))
            if not points3d or not frame_of_reference:
                continue
            kind = _kind(graphic_type, points3d, measured)
            return _mark(ds, n, tracking_uid, kind, tracking_id, measured, observer,
                         frame_of_reference_uid=frame_of_reference, points3d=points3d)
    return None


def _mark(ds: Dataset, n: int, tracking_uid: str, kind: MarkKind, tracking_id: str,
          measured: Measured, observer: str, **where: Any) -> Mark:
    text = "" if tracking_id.lower() == kind.value else tracking_id
    return Mark(id=_mark_id(str(ds.SOPInstanceUID), n, tracking_uid), kind=kind, text=text[:1024],
                measured=measured, author_name=observer[:255], source=MarkSource.SR,
                source_sop_instance_uid=str(ds.SOPInstanceUID), **where)


def read_measurement_report(ds: Dataset) -> list[Mark]:
    """The measurement groups of a TID 1500 report that have coordinates, as marks."""
    where = _evidence_series(ds)
    observer = next((str(i.get("PersonName", "")) for i in ds.get("ContentSequence") or []
                     if i.get("ValueType") == "PNAME"), "")
    groups = [i for i in _walk(ds.get("ContentSequence"))
              if i.get("ValueType") == "CONTAINER" and _code(i) == _MEASUREMENT_GROUP]
    marks = [_group_mark(ds, group, n, where, observer) for n, group in enumerate(groups)]
    return [m for m in marks if m is not None]


# -- presentation states ------------------------------------------------------------------------


def _referenced_images(ds: Dataset) -> list[ImageRef]:
    found = []
    for series in ds.get("ReferencedSeriesSequence") or []:
        for sop in series.get("ReferencedImageSequence") or []:
            ref = _image_ref(ds, sop, {str(sop.ReferencedSOPInstanceUID): (
                str(ds.get("StudyInstanceUID", "")), str(series.SeriesInstanceUID))})
            if ref is not None:
                found.append(ref)
    return found


def read_presentation_state(ds: Dataset) -> tuple[list[Mark], PresentationState]:
    """The graphic annotations of a presentation state as marks (PIXEL units only; text
    objects become the text of the graphic they are anchored on, or arrows of their own), and
    how it shows its images (window, inversion, rotation, layers)."""
    images = _referenced_images(ds)
    by_uid = {i.sop_instance_uid: i for i in images}
    creator = str(ds.get("ContentCreatorName", "") or "")
    layers = [Layer(name=str(layer.GraphicLayer), order=int(layer.get("GraphicLayerOrder", 0)),
                    description=_text(layer.get("GraphicLayerDescription")),
                    color=_color(layer.get("GraphicLayerRecommendedDisplayCIELabValue")))
              for layer in ds.get("GraphicLayerSequence") or []]
    by_layer = {layer.name: layer for layer in layers}
    marks: list[Mark] = []
    source = str(ds.SOPInstanceUID)
    for annotation in ds.get("GraphicAnnotationSequence") or []:
        layer = by_layer.get(str(annotation.get("GraphicLayer", "")))
        author = (layer.description if layer and layer.description else creator)[:255]
        color = layer.color if layer else ""
        targets = [r for r in (_image_ref(ds, sop, {
            k: (v.study_uid, v.series_uid) for k, v in by_uid.items()})
            for sop in annotation.get("ReferencedImageSequence") or []) if r is not None]
        targets = targets or images
        drawn: list[Mark] = []
        for graphic in annotation.get("GraphicObjectSequence") or []:
            if str(graphic.get("GraphicAnnotationUnits", "")) != "PIXEL":
                continue
            points = _pairs(graphic.get("GraphicData"))
            graphic_type = str(graphic.get("GraphicType", ""))
            if not points:
                continue
            if graphic_type == "CIRCLE" and len(points) == 2:
                points = _circle_to_axes(points)
            kind = _kind(graphic_type, points, Measured())
            if kind is MarkKind.ARROW and len(points) == 2:
                kind = MarkKind.LENGTH  # a bare line; its text object may make it an arrow
            for target in targets:
                drawn.append(Mark(id=_mark_id(source, len(marks) + len(drawn),
                                              _text(graphic.get("TrackingUID"))
                                              if len(targets) == 1 else ""),
                                  kind=kind, image=target, points=points, author_name=author,
                                  color=color, source=MarkSource.GSPS,
                                  source_sop_instance_uid=source))
        for text in annotation.get("TextObjectSequence") or []:
            if str(text.get("AnchorPointAnnotationUnits", "")) == "PIXEL":
                anchor = _pairs(text.get("AnchorPoint"))[:1]
            elif str(text.get("BoundingBoxAnnotationUnits", "")) == "PIXEL":
                anchor = _pairs(text.get("BoundingBoxTopLeftHandCorner"))[:1]
            else:
                continue
            value = _text(text.get("UnformattedTextValue"))
            owner = next((m for m in drawn if anchor and not m.text and anchor[0] in (
                m.points[0], m.points[-1])), None)
            if owner is not None:
                owner.text = value[:1024]
                if owner.kind is MarkKind.LENGTH and owner.points[-1] == anchor[0]:
                    owner.kind = MarkKind.ARROW  # the text at its tail: an arrow
                continue
            for target in targets:
                drawn.append(Mark(id=_mark_id(source, len(marks) + len(drawn)),
                                  kind=MarkKind.ARROW, image=target, points=anchor,
                                  text=value[:1024], author_name=author, color=color,
                                  source=MarkSource.GSPS, source_sop_instance_uid=source))
        marks.extend(drawn)
    state = PresentationState(
        sop_instance_uid=source, series_uid=str(ds.get("SeriesInstanceUID", "")),
        label=_text(ds.get("ContentLabel")), description=_text(ds.get("ContentDescription")),
        creator=creator, images=images, voi=_voi(ds), layers=layers,
        invert=str(ds.get("PresentationLUTShape", "")) == "INVERSE",
        rotation=int(ds.get("ImageRotation", 0) or 0),
        flip_horizontal=str(ds.get("ImageHorizontalFlip", "N")) == "Y")
    return marks, state


def _voi(ds: Dataset) -> list[Voi]:
    found = []
    for item in ds.get("SoftcopyVOILUTSequence") or []:
        center, width = item.get("WindowCenter"), item.get("WindowWidth")
        if center is None or width is None:
            continue
        center_v = float(center[0] if type(center).__name__ == "MultiValue" else center)
        width_v = float(width[0] if type(width).__name__ == "MultiValue" else width)
        uids = [str(r.ReferencedSOPInstanceUID) for r in item.get("ReferencedImageSequence") or []]
        found.append(Voi(center=center_v, width=width_v,
                         function=str(item.get("VOILUTFunction", "LINEAR") or "LINEAR"),
                         sop_instance_uids=uids))
    return found


# -- a study's -----------------------------------------------------------------------------------


def read_object(ds: Dataset, found: ArchivedMarks) -> None:
    """Add what one KOS, SR or presentation state holds to ``found``; others add nothing."""
    sop_class = str(ds.get("SOPClassUID", ""))
    if sop_class == KEY_OBJECT_SELECTION:
        found.key_images.extend(read_key_object_selection(ds))
    elif sop_class in MEASUREMENT_SR:
        found.marks.extend(read_measurement_report(ds))
    elif sop_class in PRESENTATION_STATES:
        marks, state = read_presentation_state(ds)
        found.marks.extend(marks)
        found.presentation_states.append(state)


def read_files(paths: list[Path], instance_numbers: Mapping[str, tuple[str, int | None]]
               ) -> ArchivedMarks:
    """What the stored objects at ``paths`` hold; a file that cannot be read is logged and
    skipped. ``instance_numbers``: SOP Instance UID -> (series UID, instance number) of the
    study's images, to fill in what the objects do not say."""
    found = ArchivedMarks()
    for path in paths:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                read_object(dcmread(path), found)
        except Exception:
            log.warning("cannot read the marks of %s", path, exc_info=True)
    for mark in found.marks:
        if mark.image is not None and not mark.image.series_uid:
            series = instance_numbers.get(mark.image.sop_instance_uid, ("", None))[0]
            mark.image = mark.image.model_copy(update={"series_uid": series})
    for key in found.key_images:
        series, number = instance_numbers.get(key.image.sop_instance_uid, ("", None))
        if not key.image.series_uid:
            key.image = key.image.model_copy(update={"series_uid": series})
        key.instance_number = key.instance_number or number
    return found
