"""A case's marks as DICOM objects that other viewers read: a Key Object Selection document
(PS3.3 A.35.4, TID 2010) for its key images, a Comprehensive 3D SR measurement report
(TID 1500) for its measurements and a Grayscale Softcopy Presentation State (PS3.3 A.33.1) for
its graphic annotations, written with highdicom beside the signed conclusion or protocol.

Every object is built from :class:`~consilium.archive.marks.Mark` /
:class:`~consilium.archive.marks.KeyImage` and the headers of the instances they reference
(``sources``, read by the caller through :func:`consilium.archive.catalog.instance_headers`);
a mark whose image is not among them is left out, never invented. The dates are the signing
time and the UIDs derived from what is signed, so writing again gives the same instances.

How each kind of mark is written (the reader, :mod:`consilium.archive.marks_read`, inverts it):

========== ======================================= ==========================================
kind       TID 1500 (image: SCOORD, world: 3D)     GSPS graphic object (image marks only)
========== ======================================= ==========================================
length     TID 1410 POLYLINE (2) + Length;         POLYLINE (2) + a text object "84.2 mm"
           world: TID 1501 Length with SCOORD3D
angle      TID 1410 POLYLINE (3) + Angle;          POLYLINE (3), vertex in the middle
           world: TID 1501 Angle with SCOORD3D
ellipse    ELLIPSE (major, minor axis endpoints)   ELLIPSE
           + Area, Mean, SD, Min, Max
rectangle  closed POLYLINE (5) / world POLYGON     closed POLYLINE (5)
freehand   closed POLYLINE / world POLYGON         closed POLYLINE
arrow      POLYLINE (2, tip first) / world POINT   POLYLINE (2) + the text at its tail
========== ======================================= ==========================================

Points of an ellipse or a rectangle are either two opposite corners of the (axis-aligned)
bounding box or, for an ellipse, its four axis endpoints (major, major, minor, minor).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from consilium.archive.marks import KeyImage, Mark, MarkKind

KEY_OBJECT_SELECTION = "1.2.840.10008.5.1.4.1.1.88.59"
COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
GRAYSCALE_PS = "1.2.840.10008.5.1.4.1.1.11.1"

MM = Code("mm", "UCUM", "millimeter")
MM2 = Code("mm2", "UCUM", "square millimeter")
DEGREE = Code("deg", "UCUM", "degree")
HU = Code("[hnsf'U]", "UCUM", "Hounsfield unit")
NO_UNITS = Code("1", "UCUM", "no units")
LENGTH, ANGLE, AREA = codes.SCT.Length, codes.SCT.Angle, codes.SCT.Area
STATISTICS = (("mean", codes.SCT.Mean), ("stdev", codes.SCT.StandardDeviation),
              ("min", codes.SCT.Minimum), ("max", codes.SCT.Maximum))
_CLOSED = (MarkKind.RECTANGLE, MarkKind.FREEHAND)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Signing:
    """What the objects written for one signed document share: who signed, for whom, when."""

    title: str  # "Consult conclusion v2": the series descriptions and the GSPS's description
    author_name: str  # as shown ("Елена Кузнецова") or a DICOM PN ("Кузнецова^Елена")
    institution_name: str
    signed_at: datetime


def person_name(name: str) -> str:
    """A shown name as a DICOM PN: 'Елена Кузнецова' -> 'Кузнецова^Елена' (family last, as the
    identity providers give it); a PN stays as it is."""
    if "^" in name or not name.strip():
        return name.strip()[:64]
    *given, family = name.split()
    return f"{family}^{' '.join(given)}"[:64] if given else family[:64]


# -- geometry ---------------------------------------------------------------------------------


def _box(points: Sequence[Sequence[float]]) -> tuple[float, float, float, float]:
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return min(xs), min(ys), max(xs), max(ys)


def ellipse_axes(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The four axis endpoints (major first) of an ellipse given as them or as two corners."""
    if len(points) == 4:
        (a, b, c, d) = points
        if math.dist(a, b) >= math.dist(c, d):
            return [a, b, c, d]
        return [c, d, a, b]
    x0, y0, x1, y1 = _box(points)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    horizontal = [(x0, cy), (x1, cy)]
    vertical = [(cx, y0), (cx, y1)]
    return horizontal + vertical if x1 - x0 >= y1 - y0 else vertical + horizontal


def outline(mark: Mark) -> list[tuple[float, float]]:
    """The polyline of an image mark as written (closed for rectangles and freehand)."""
    points = list(mark.points)
    if mark.kind is MarkKind.RECTANGLE and len(points) == 2:
        x0, y0, x1, y1 = _box(points)
        points = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    if mark.kind in _CLOSED and points and points[0] != points[-1]:
        points.append(points[0])
    return points


def _needed(kind: MarkKind) -> int:
    return {MarkKind.LENGTH: 2, MarkKind.ARROW: 2, MarkKind.ANGLE: 3,
            MarkKind.ELLIPSE: 2, MarkKind.RECTANGLE: 2, MarkKind.FREEHAND: 3}[kind]


def drawable(mark: Mark, sources: Mapping[str, Dataset]) -> bool:
    """Whether the mark can be written on its image: the image is known, enough points."""
    return (mark.image is not None and mark.image.sop_instance_uid in sources
            and len(mark.points) >= _needed(mark.kind)
            and not (mark.kind is MarkKind.ELLIPSE and len(mark.points) not in (2, 4)))


def in_world(mark: Mark) -> bool:
    return (mark.frame_of_reference_uid is not None
            and len(mark.points3d) >= (1 if mark.kind is MarkKind.ARROW else _needed(mark.kind)))


def _angle(points: Sequence[Sequence[float]]) -> float:
    a, v, b = (np.asarray(p, dtype=float) for p in points[:3])
    u, w = a - v, b - v
    cosine = float(np.dot(u, w) / max(np.linalg.norm(u) * np.linalg.norm(w), 1e-12))
    return math.degrees(math.acos(max(-1.0, min(1.0, cosine))))


# -- the three objects -------------------------------------------------------------------------


def _observer(signing: Signing) -> hd.sr.ObserverContext:
    return hd.sr.ObserverContext(
        observer_type=codes.DCM.Person,
        observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(
            name=person_name(signing.author_name) or "Consilium",
            organization_name=signing.institution_name[:64] or None))


def _finish(ds: Dataset, signing: Signing, description: str) -> Dataset:
    """Unicode throughout (Cyrillic names), the signing time as the content's time, and the
    patient's names as text (the source may have been encoded in another character set)."""
    ds.SpecificCharacterSet = "ISO_IR 192"
    for keyword in ("PatientName", "ReferringPhysicianName"):
        if keyword in ds:
            setattr(ds, keyword, str(ds.get(keyword) or ""))
    at = signing.signed_at.astimezone(UTC)
    date, time = at.strftime("%Y%m%d"), at.strftime("%H%M%S")
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    ds.SeriesDate, ds.SeriesTime = date, time
    if "ContentDate" in ds:
        ds.ContentDate, ds.ContentTime = date, time
    if "PresentationCreationDate" in ds:
        ds.PresentationCreationDate, ds.PresentationCreationTime = date, time
    ds.TimezoneOffsetFromUTC = "+0000"
    ds.SeriesDescription = description[:64]
    return ds


def key_object_selection(sources: Mapping[str, Dataset], key_images: Sequence[KeyImage],
                         signing: Signing, sop_uid: str, series_uid: str,
                         series_number: int) -> Dataset:
    """A KOS naming the key images that are among ``sources`` (frames of multi-frame images in
    ReferencedFrameNumber), their captions as its description. ValueError if none is."""
    chosen = [k for k in key_images if k.image.sop_instance_uid in sources]
    if not chosen:
        raise ValueError("none of the key images is stored in the study")
    order = list(dict.fromkeys(k.image.sop_instance_uid for k in chosen))
    captions = [f"{k.instance_number or ''}{'/' + str(k.image.frame) if k.image.frame else ''}"
                f": {k.caption}" for k in chosen if k.caption.strip()]
    content = hd.ko.KeyObjectSelection(
        document_title=codes.DCM.OfInterest,
        referenced_objects=[sources[uid] for uid in order],
        observer_person_context=_observer(signing),
        description="\n".join([signing.title, *captions])[:10000])
    frames = {uid: sorted({k.image.frame for k in chosen
                           if k.image.sop_instance_uid == uid and k.image.frame})
              for uid in order}
    for item in content[0].ContentSequence:
        if item.ValueType == "IMAGE":
            ref = item.ReferencedSOPSequence[0]
            if frames.get(ref.ReferencedSOPInstanceUID):
                ref.ReferencedFrameNumber = frames[ref.ReferencedSOPInstanceUID]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = hd.ko.KeyObjectSelectionDocument(
            evidence=[sources[uid] for uid in order], content=content,
            series_instance_uid=series_uid, series_number=series_number,
            sop_instance_uid=sop_uid, instance_number=1, manufacturer="Consilium",
            institution_name=signing.institution_name[:64] or None)
    return _finish(ds, signing, f"{signing.title} (key images)")


def _measurements(mark: Mark, world: bool) -> list[tuple[Code, float, Code]]:
    m = mark.measured
    found: list[tuple[Code, float, Code]] = []
    length = m.length_mm
    if length is None and world and mark.kind is MarkKind.LENGTH:
        length = math.dist(mark.points3d[0], mark.points3d[1])
    if length is not None:
        found.append((LENGTH, length, MM))
    angle = m.angle_deg
    if angle is None and world and mark.kind is MarkKind.ANGLE:
        angle = _angle(mark.points3d)
    if angle is not None:
        found.append((ANGLE, angle, DEGREE))
    if m.area_mm2 is not None:
        found.append((AREA, m.area_mm2, MM2))
    unit = HU if (m.unit or "").upper() in ("HU", "[HNSF'U]") else NO_UNITS
    found.extend((concept, float(getattr(m, name)), unit) for name, concept in STATISTICS
                 if getattr(m, name) is not None)
    return [(c, v, u) for c, v, u in found if math.isfinite(v)]


def _tracking(mark: Mark, uid: str) -> hd.sr.TrackingIdentifier:
    return hd.sr.TrackingIdentifier(uid=uid, identifier=(mark.text or mark.kind.value)[:64])


def _image_group(mark: Mark, source: Dataset, uid: str
                 ) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    assert mark.image is not None
    frames = [mark.image.frame] if mark.image.frame else None
    if mark.kind is MarkKind.ELLIPSE:
        kind, points = "ELLIPSE", ellipse_axes(mark.points)
    else:
        kind, points = "POLYLINE", outline(mark)
    region = hd.sr.ImageRegion(
        graphic_type=kind, graphic_data=np.asarray(points, dtype=float),
        source_image=hd.sr.SourceImageForRegion.from_source_image(source, frames))
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=_tracking(mark, uid), referenced_region=region,
        measurements=[hd.sr.Measurement(name=c, value=v, unit=u)
                      for c, v, u in _measurements(mark, world=False)])


def _world_group(mark: Mark, uid: str) -> (
        hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations
        | hd.sr.MeasurementsAndQualitativeEvaluations):
    assert mark.frame_of_reference_uid is not None
    points = [tuple(p) for p in mark.points3d]
    measured = _measurements(mark, world=True)
    if mark.kind in (MarkKind.LENGTH, MarkKind.ANGLE) and measured:
        # an open polyline is no region (TID 1410): the points go with the measurement
        coordinates = hd.sr.CoordinatesForMeasurement3D(
            graphic_type="POLYLINE", graphic_data=np.asarray(points, dtype=float),
            frame_of_reference_uid=mark.frame_of_reference_uid)
        return hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=_tracking(mark, uid),
            measurements=[hd.sr.Measurement(name=c, value=v, unit=u,
                                            referenced_coordinates=[coordinates])
                          for c, v, u in measured])
    if mark.kind is MarkKind.ELLIPSE and len(points) == 4:
        kind, data = "ELLIPSE", points
    elif mark.kind in (MarkKind.ARROW, MarkKind.LENGTH, MarkKind.ANGLE):
        kind, data = "POINT", points[:1]
    else:
        kind, data = "POLYGON", points + ([points[0]] if points[0] != points[-1] else [])
    region = hd.sr.ImageRegion3D(graphic_type=kind, graphic_data=np.asarray(data, dtype=float),
                                 frame_of_reference_uid=mark.frame_of_reference_uid)
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=_tracking(mark, uid), referenced_region=region,
        measurements=[hd.sr.Measurement(name=c, value=v, unit=u) for c, v, u in measured])


def reportable(marks: Sequence[Mark], sources: Mapping[str, Dataset]) -> list[Mark]:
    """The marks a measurement report can hold: world marks and marks on a known image."""
    return [m for m in marks if in_world(m) or drawable(m, sources)]


def measurement_report(sources: Mapping[str, Dataset], marks: Sequence[Mark],
                       signing: Signing, sop_uid: str, series_uid: str, series_number: int,
                       tracking_uids: Mapping[str, str]) -> Dataset:
    """A verified, complete Comprehensive 3D SR with a TID 1500 report of the marks (world
    marks in SCOORD3D). ``tracking_uids``: mark id -> its Tracking UID. ValueError if no mark
    can be written; ``sources`` must hold at least one instance of the study (the evidence)."""
    usable = reportable(marks, sources)
    if not usable:
        raise ValueError("no mark can be written into a measurement report")
    groups: list[hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations
                 | hd.sr.MeasurementsAndQualitativeEvaluations] = []
    for mark in usable:
        uid = tracking_uids[mark.id]
        try:
            if in_world(mark):
                groups.append(_world_group(mark, uid))
            else:
                assert mark.image is not None
                groups.append(_image_group(mark, sources[mark.image.sop_instance_uid], uid))
        except (ValueError, TypeError) as exc:  # highdicom refuses an RT Dose as a source
            log.warning("mark %s left out of the measurement report: %s", mark.id, exc)
    if not groups:
        raise ValueError("no mark can be written into a measurement report")
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_person_context=_observer(signing)),
        procedure_reported=codes.SCT.ImagingProcedure, imaging_measurements=groups)
    referenced = list(dict.fromkeys(m.image.sop_instance_uid for m in usable
                                    if m.image is not None and m.image.sop_instance_uid in sources))
    evidence = [sources[uid] for uid in referenced] or [next(iter(sources.values()))]
    at = signing.signed_at.astimezone(UTC)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = hd.sr.Comprehensive3DSR(
            evidence=evidence, content=report[0], series_instance_uid=series_uid,
            series_number=series_number, sop_instance_uid=sop_uid, instance_number=1,
            manufacturer="Consilium", is_complete=True, is_final=True, is_verified=True,
            institution_name=signing.institution_name[:64] or None,
            verifying_observer_name=person_name(signing.author_name) or "Consilium",
            verifying_organization=signing.institution_name[:64] or "Consilium")
    for observer in ds.get("VerifyingObserverSequence", []):
        observer.VerificationDateTime = at.strftime("%Y%m%d%H%M%S+0000")
    return _finish(ds, signing, f"{signing.title} (measurements)")


# -- presentation state -------------------------------------------------------------------------


def lab_of(color: str) -> hd.color.CIELabColor | None:
    """'#rrggbb' as the CIELab colour of a graphic layer; None for anything else."""
    if len(color) != 7 or not color.startswith("#"):
        return None
    try:
        r, g, b = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    except ValueError:
        return None
    return hd.color.CIELabColor.from_rgb(r, g, b)


def label_of(mark: Mark) -> str:
    """What a mark's text object says: its text and what it measures."""
    m = mark.measured
    parts = [mark.text] if mark.text else []
    if m.length_mm is not None:
        parts.append(f"{m.length_mm:.1f} mm")
    if m.angle_deg is not None:
        parts.append(f"{m.angle_deg:.1f}°")
    if m.area_mm2 is not None:
        parts.append(f"{m.area_mm2:.1f} mm²")
    if m.mean is not None:
        unit = f" {m.unit}" if m.unit else ""
        parts.append(f"mean {m.mean:.1f}{unit}" + (f" SD {m.stdev:.1f}" if m.stdev is not None
                                                      else ""))
    return ", ".join(parts)[:1024]


def _shape(mark: Mark) -> tuple[str, list[tuple[float, float]]]:
    if mark.kind is MarkKind.ELLIPSE:
        return "ELLIPSE", ellipse_axes(mark.points)
    return "POLYLINE", outline(mark)


def _anchor(mark: Mark) -> tuple[float, float]:
    """Where a mark's text object is anchored: the tail of an arrow, else the first point of
    the graphic as written (the reader gives the text back to the graphic it touches)."""
    points = _shape(mark)[1]
    return points[-1] if mark.kind is MarkKind.ARROW else points[0]


def _graphic(mark: Mark, uid: str) -> hd.pr.GraphicObject:
    kind, points = _shape(mark)
    return hd.pr.GraphicObject(graphic_type=kind, graphic_data=np.asarray(points, dtype=float),
                               units="PIXEL", tracking_id=mark.id[:64], tracking_uid=uid)


def by_series(marks: Sequence[Mark], sources: Mapping[str, Dataset]) -> list[list[Mark]]:
    """The drawable image marks by the series of their image (in series UID order): one
    presentation state each, since one state has one modality LUT and window for its images."""
    found: dict[str, list[Mark]] = {}
    for mark in marks:
        if drawable(mark, sources) and mark.image is not None:
            series = str(sources[mark.image.sop_instance_uid].SeriesInstanceUID)
            found.setdefault(series, []).append(mark)
    return [found[uid] for uid in sorted(found)]


def _first(value: object) -> float:
    """The first of a multi-valued number (Window Center and Width may hold several)."""
    if type(value).__name__ == "MultiValue" or isinstance(value, list | tuple):
        return float(value[0])  # type: ignore[index]
    return float(value)  # type: ignore[arg-type]


def _window(images: Sequence[Dataset]) -> list[hd.pr.SoftcopyVOILUTTransformation] | None:
    """The window of the first image that has one, so a viewer applying the state shows the
    images as their modality meant (without one, the VOI would be identity)."""
    for image in images:
        center, width = image.get("WindowCenter"), image.get("WindowWidth")
        if center is None or width is None or center == "" or width == "":
            continue
        if _first(width) > 0:
            return [hd.pr.SoftcopyVOILUTTransformation(window_center=_first(center),
                                                       window_width=_first(width))]
    return None


def _modality_lut(images: Sequence[Dataset]) -> hd.ModalityLUTTransformation | None:
    """The rescale of a multi-frame image that keeps it outside functional groups (US, XA,
    legacy multi-frame CT), which highdicom looks for only in the shared group."""
    image = images[0]
    if "SharedFunctionalGroupsSequence" in image or int(image.get("NumberOfFrames", 1) or 1) < 2:
        return None
    rescale_type = str(image.get("RescaleType", "") or "") or (
        "HU" if image.get("Modality") == "CT" else "US")
    return hd.ModalityLUTTransformation(
        rescale_intercept=float(image.get("RescaleIntercept", 0) or 0),
        rescale_slope=float(image.get("RescaleSlope", 1) or 1), rescale_type=rescale_type)


def _for_highdicom(image: Dataset) -> Dataset:
    """The header as highdicom's presentation state expects it: a multi-frame image without
    functional groups (US, XA, legacy multi-frame CT) gets empty ones in a shallow copy (its
    rescale and window, kept outside them, are given explicitly)."""
    if "SharedFunctionalGroupsSequence" in image or int(image.get("NumberOfFrames", 1) or 1) < 2:
        return image
    copy = Dataset(image)
    copy.SharedFunctionalGroupsSequence = [Dataset()]
    copy.PerFrameFunctionalGroupsSequence = [Dataset()
                                             for _ in range(int(image.NumberOfFrames))]
    return copy


def presentation_state(sources: Mapping[str, Dataset], marks: Sequence[Mark],
                       signing: Signing, sop_uid: str, series_uid: str,
                       series_number: int, tracking_uids: Mapping[str, str],
                       instance_number: int = 1) -> Dataset:
    """A GSPS drawing the image marks of one series (:func:`by_series`): one graphic layer
    per author (named AUTHOR1..., the author's name as its description, the author's colour),
    a graphic annotation per image and frame, a text object per mark with its text and values,
    the images' own window. ValueError if no mark is on a known image."""
    usable = [m for m in marks if drawable(m, sources)]
    if not usable:
        raise ValueError("no mark is drawn on an image of the study")
    authors = list(dict.fromkeys((m.author_subject or m.author_name) for m in usable))
    layers = {}
    for n, author in enumerate(authors, 1):
        first = next(m for m in usable if (m.author_subject or m.author_name) == author)
        layers[author] = hd.pr.GraphicLayer(
            layer_name=f"AUTHOR{n}", order=n, description=(first.author_name or author)[:64],
            display_color=lab_of(first.color))
    annotations = []
    groups: dict[tuple[str, str, int | None], list[Mark]] = {}
    for mark in usable:
        assert mark.image is not None
        key = (mark.author_subject or mark.author_name, mark.image.sop_instance_uid,
               mark.image.frame)
        groups.setdefault(key, []).append(mark)
    for (author, sop, frame), group in groups.items():
        texts = [hd.pr.TextObject(text_value=label, units="PIXEL",
                                  anchor_point=_anchor(m),
                                  anchor_point_visible=True)
                 for m in group if (label := label_of(m))]
        annotations.append(hd.pr.GraphicAnnotation(
            referenced_images=[_for_highdicom(sources[sop])], graphic_layer=layers[author],
            referenced_frame_number=frame,
            graphic_objects=[_graphic(m, tracking_uids[m.id]) for m in group],
            text_objects=texts or None))
    referenced = [sources[uid] for uid in dict.fromkeys(
        m.image.sop_instance_uid for m in usable if m.image is not None)]
    modality_lut = _modality_lut(referenced)
    referenced = [_for_highdicom(image) for image in referenced]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = hd.pr.GrayscaleSoftcopyPresentationState(
            referenced_images=referenced, series_instance_uid=series_uid,
            series_number=series_number, sop_instance_uid=sop_uid,
            instance_number=instance_number,
            manufacturer="Consilium", manufacturer_model_name="Consilium",
            software_versions="1", device_serial_number="1", content_label="CONSILIUM",
            content_description=signing.title[:64], graphic_annotations=annotations,
            graphic_layers=list(layers.values()), voi_lut_transformations=_window(referenced),
            modality_lut_transformation=modality_lut,
            institution_name=signing.institution_name[:64] or None,
            content_creator_name=person_name(signing.author_name) or None)
    return _finish(ds, signing, f"{signing.title} (annotations)")
