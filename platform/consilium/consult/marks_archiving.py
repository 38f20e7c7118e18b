"""Which marks objects a study gets when a document about it is signed, and building each:
a Key Object Selection (``kos``) when a key image is stored in the study, a TID 1500 report
(``mr``) when a mark can be reported, and a presentation state per series with drawn marks
(``pr1``, ``pr2``, ...; one series of states).

Used by :mod:`consilium.consult.archiving` for conclusions and, through
:func:`archive_marks`, by any other signed document (the consilium's protocol), so that every
signature leaves the same objects by the same path. UIDs derive from the signed document's
``seed`` and the kind, so a retry names the same instances.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from pydicom.dataset import Dataset
from sqlmodel import Session

from consilium.archive import catalog
from consilium.archive.ingest import ArchiveStore, IngestSource, ingest_part10
from consilium.archive.marks import KeyImage, Mark
from consilium.audit import Actor, AuditAction, AuditOutcome
from consilium.consult import marks_dicom as md
from consilium.consult.conclusion_dicom import derived_uid, part10
from consilium.consult.context import ConsultContext
from consilium.consult.marks_source import case_marks

log = logging.getLogger(__name__)

SOP_CLASS = {"kos": md.KEY_OBJECT_SELECTION, "mr": md.COMPREHENSIVE_3D_SR,
             "pr": md.GRAYSCALE_PS}
SERIES_OFFSET = {"kos": 0, "mr": 1, "pr": 2}  # from the document's series base


def family(kind: str) -> str:
    """'pr2' -> 'pr': the kinds of one family share a series."""
    return kind.rstrip("0123456789")


@dataclass(frozen=True)
class StudyMarks:
    """The marks and key images of one study and the headers of the images they reference."""

    marks: list[Mark]
    key_images: list[KeyImage]
    sources: dict[str, Dataset]


def of_study(store: ArchiveStore, study_uid: str, marks: Sequence[Mark],
             key_images: Sequence[KeyImage], only_study: bool) -> StudyMarks:
    """What of the marks belongs to the study: those on its images, and world marks without
    an image when the document is about this study alone (a frame of reference alone does not
    say which study it is)."""
    mine = [m for m in marks if (m.image is not None and m.image.study_uid == study_uid)
            or (m.image is None and only_study)]
    keys = [k for k in key_images if k.image.study_uid == study_uid]
    wanted = [m.image.sop_instance_uid for m in mine if m.image is not None]
    sources = catalog.instance_headers(store, study_uid,
                                       wanted + [k.image.sop_instance_uid for k in keys])
    if not sources and any(m.image is None for m in mine):
        try:  # world marks alone: the report's evidence is an image of the study
            header, _owner = catalog.study_header(store, study_uid)
            sources[str(header.SOPInstanceUID)] = header
        except LookupError:
            pass
    return StudyMarks(mine, keys, sources)


def kinds(found: StudyMarks) -> list[str]:
    """The objects the study gets, in writing order."""
    written = []
    if any(k.image.sop_instance_uid in found.sources for k in found.key_images):
        written.append("kos")
    if md.reportable(found.marks, found.sources):
        written.append("mr")
    written += [f"pr{n}" for n in range(1, len(md.by_series(found.marks, found.sources)) + 1)]
    return written


def _numbered(found: StudyMarks) -> list[KeyImage]:
    """The key images with their series and instance numbers from the archive's headers."""
    numbered = []
    for key in found.key_images:
        header = found.sources.get(key.image.sop_instance_uid)
        if header is None:
            continue
        number = header.get("InstanceNumber")
        numbered.append(key.model_copy(update={
            "image": key.image.model_copy(update={
                "series_uid": str(header.SeriesInstanceUID),
                "sop_class_uid": str(header.SOPClassUID)}),
            "instance_number": key.instance_number or (int(number) if number else None)}))
    return numbered


def build(found: StudyMarks, kind: str, signing: md.Signing, seed: Sequence[object],
          series_base: int) -> Dataset:
    """The object ``kind`` of the study; ValueError if there is nothing for it (the marks
    changed since the kinds were chosen)."""
    series_uid = derived_uid("series", *seed, family(kind))
    sop_uid = derived_uid("instance", *seed, kind)
    number = series_base + SERIES_OFFSET[family(kind)]
    tracking = {m.id: derived_uid("mark", *seed, m.id) for m in found.marks}
    if kind == "kos":
        return md.key_object_selection(found.sources, _numbered(found), signing, sop_uid,
                                       series_uid, number)
    if kind == "mr":
        return md.measurement_report(found.sources, found.marks, signing, sop_uid, series_uid,
                                     number, tracking)
    index = int(kind[2:] or 0)
    groups = md.by_series(found.marks, found.sources)
    if family(kind) != "pr" or not 1 <= index <= len(groups):
        raise ValueError(f"nothing to write as {kind}")
    return md.presentation_state(found.sources, groups[index - 1], signing, sop_uid,
                                 series_uid, number, tracking, index)


@dataclass(frozen=True)
class Archived:
    """One object written into a study (or the reason it was not)."""

    study_uid: str
    kind: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    status: str  # stored | failed
    reason: str = ""


def store_object(store: ArchiveStore, study_uid: str, ds: Dataset, owner: str) -> str:
    """Ingest one object into the study as its owner's; the refusal's reason, or ''."""
    result = ingest_part10(store, part10(ds), IngestSource(owner, "", "consult"))
    return "" if result.ok else f"refused by the archive: {result.reason}"


def archive_marks(ctx: ConsultContext, *, case_id: int, study_uids: Sequence[str],
                  signing: md.Signing, seed: Sequence[object], series_base: int,
                  actor: Actor, what: str) -> list[Archived]:
    """Write the case's KOS, measurement report and presentation states beside each study of
    a signed document (the consilium's protocol calls this as the conclusion's archiving
    does): audited per object (``what``: "protocol"), never raises; a failed object carries
    its reason for the caller to keep and retry (calling again writes the same UIDs)."""
    store = ctx.files.store
    with Session(ctx.engine) as session:
        marks, key_images = case_marks(session, case_id)
    done: list[Archived] = []
    for study_uid in study_uids:
        try:
            found = of_study(store, study_uid, marks, key_images, len(study_uids) == 1)
            chosen = kinds(found)
        except Exception as exc:
            log.exception("reading the marks of case %s for study %s failed", case_id, study_uid)
            done.append(Archived(study_uid, "marks", "", "", "", "failed",
                                 f"{type(exc).__name__}: {exc}"))
            continue
        for kind in chosen:
            done.append(_write(ctx, found, kind, study_uid, signing, (*seed, study_uid),
                               series_base, actor, what, case_id))
    return done


def _write(ctx: ConsultContext, found: StudyMarks, kind: str, study_uid: str,
           signing: md.Signing, seed: Sequence[object], series_base: int, actor: Actor,
           what: str, case_id: int) -> Archived:
    series_uid = derived_uid("series", *seed, family(kind))
    sop_uid = derived_uid("instance", *seed, kind)
    reason, owner = "", ""
    try:
        _header, owner = catalog.study_header(ctx.files.store, study_uid)
        reason = store_object(ctx.files.store, study_uid,
                              build(found, kind, signing, seed, series_base), owner)
    except Exception as exc:
        log.exception("archiving the %s of case %s into study %s failed", kind, case_id,
                      study_uid)
        reason = f"{type(exc).__name__}: {exc}"
    ctx.audit.record(actor, AuditAction.STORE,
                     AuditOutcome.FAILURE if reason else AuditOutcome.SUCCESS,
                     study_uid=study_uid, owner=owner,
                     detail={"what": f"{what} {kind}", "case": case_id,
                             "sop_instance_uid": sop_uid, **({"reason": reason} if reason else {})})
    return Archived(study_uid, kind, series_uid, sop_uid, SOP_CLASS[family(kind)],
                    "failed" if reason else "stored", reason[:1000])
