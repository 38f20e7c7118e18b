"""Documents of a consult case: attachments, the signed conclusion as PDF, and the conclusion
written into the archive beside each of its studies.

Files (attachments and conclusion PDFs) are kept by content, ``<files_dir>/<sha256>``, written
atomically (temporary file, fsync, rename, fsync of the folder) before the database row that
names them is committed. A crash in between leaves an unreferenced file, never a row without
its file.

On signing (:func:`consilium.consult.workflow.conclude` and ``amend``), every linked study
gets two new instances in a new series each: an Encapsulated PDF (the same bytes as
``GET /api/cases/{id}/conclusions/{version}.pdf``) and a Basic Text SR (findings, impression,
recommendations; an amendment names its predecessor). They enter the archive through
:func:`consilium.archive.ingest.ingest_part10`, owned by the study's institution, so the
hospital's own DICOM nodes find the opinion beside the images.

Failure policy: the signature is committed first and is what counts. Writing into the archive
comes after; a failure there (a study whose files are gone, a full disk, a refused instance) is
logged at ERROR and recorded as a ``failed`` row with its reason; the conclusion stays signed.
:func:`retry_archiving` writes what failed again (before every signing and at every start).
UIDs and bytes are derived from the signed conclusion only, so a retry of an instance that did
get stored is an idempotent duplicate.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import threading
import time
import unicodedata
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from sqlmodel import Session, col, select

from consilium.archive import catalog, storage
from consilium.archive.catalog import StudyFacts
from consilium.archive.ingest import ArchiveStore, IngestSource, ingest_part10
from consilium.audit import Actor, AuditAction, AuditOutcome
from consilium.consult import workflow as wf
from consilium.consult.models import (
    FINAL_STATUSES,
    ArchivedDocument,
    CaseAttachment,
    CaseStatus,
    CaseStudy,
    Conclusion,
    ConsultCase,
    EventKind,
)
from consilium.consult.pdf_text import PdfText
from consilium.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from consilium.identity.policy import Principal, may_act_on_case

log = logging.getLogger(__name__)

ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")  # Debian's fonts-dejavu-core
MIB = 1024 * 1024

# what a file must begin with to be what its Content-Type says
_SIGNATURES: dict[str, tuple[int, bytes, str]] = {
    "application/pdf": (0, b"%PDF-", "a PDF starts with %PDF-"),
    "image/png": (0, b"\x89PNG\r\n\x1a\n", "a PNG starts with its 8-byte signature"),
    "image/jpeg": (0, b"\xff\xd8\xff", "a JPEG starts with FF D8 FF"),
    "application/dicom": (128, b"DICM", "a DICOM file has 'DICM' after its 128-byte preamble"),
}
ALLOWED_MEDIA_TYPES = tuple(_SIGNATURES)

CONSULT_NOTE = ("11488-4", "LN", "Consult note")
FINDING = ("121071", "DCM", "Finding")
IMPRESSION = ("121073", "DCM", "Impression")
RECOMMENDATION = ("121075", "DCM", "Recommendation")

# copied from an archived instance of the study, so the new instances join its patient and study
_PATIENT_STUDY = ("PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate",
                  "PatientSex", "StudyInstanceUID", "StudyDate", "StudyTime",
                  "ReferringPhysicianName", "StudyID", "AccessionNumber", "StudyDescription")
_TYPE_2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
           "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber")


@dataclass(frozen=True)
class DocumentsConfig:
    """Where documents go; part of :class:`~consilium.consult.workflow.ConsultContext`."""

    store: ArchiveStore
    files_dir: Path
    attachment_max_bytes: int = 20 * MIB
    institution_names: Mapping[str, str] = field(default_factory=dict)
    fsync: bool = True
    text: PdfText = field(default_factory=PdfText)  # language and zone of the PDF


def _config(ctx: wf.ConsultContext) -> DocumentsConfig:
    if ctx.documents is None:
        raise RuntimeError("the consult context has no documents configuration")
    return ctx.documents


# -- files -------------------------------------------------------------------------------------


def _write_file(config: DocumentsConfig, data: bytes) -> str:
    """Keep ``data`` at ``<files_dir>/<sha256>`` durably; idempotent. Returns the hash."""
    sha256 = hashlib.sha256(data).hexdigest()
    target = config.files_dir / sha256
    if target.exists() and target.stat().st_size == len(data):
        return sha256
    config.files_dir.mkdir(parents=True, exist_ok=True)
    tmp = config.files_dir / f".{sha256}.{os.getpid()}.{threading.get_ident()}.part"
    with tmp.open("wb") as out:
        out.write(data)
        out.flush()
        if config.fsync:
            os.fsync(out.fileno())
    os.replace(tmp, target)
    if config.fsync:  # the entry (and the folder's own, the first time this process needs it)
        storage.sync_directories([config.files_dir])
    return sha256


PARTIAL_MAX_AGE = 3600.0  # seconds: a write goes from its temporary name to its own in ms


def sweep_partial_files(files_dir: Path, older_than: float = PARTIAL_MAX_AGE) -> int:
    """Remove temporary files that a crash left behind (never referenced: the row is written
    after the rename). By age, not by process id: several hosts may share the folder."""
    if not files_dir.is_dir():
        return 0
    limit = time.time() - older_than
    removed = 0
    for path in files_dir.glob(".*.part"):
        try:
            if path.stat().st_mtime < limit:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    if removed:
        log.info("removed %d temporary files left in %s by an interrupted write", removed,
                 files_dir)
    return removed


def _read_file(config: DocumentsConfig, sha256: str) -> bytes | None:
    path = config.files_dir / sha256
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    if hashlib.sha256(data).hexdigest() != sha256:
        log.error("document file %s does not match its hash; not served", path)
        return None
    return data


# -- attachments -------------------------------------------------------------------------------


def clean_filename(name: str) -> str:
    """A display name: no folders, no control characters, at most 255 characters."""
    name = unicodedata.normalize("NFC", name).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip(" .")
    return name[:255] or "attachment"


def check_content(data: bytes, media_type: str, max_bytes: int) -> str:
    """The normalized media type, if ``data`` may be attached as it; else the error."""
    media_type = media_type.split(";", 1)[0].strip().lower()
    if not data:
        raise InvalidInput("the file is empty")
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"the file is over the limit of {max_bytes} bytes")
    if media_type not in _SIGNATURES:
        raise UnsupportedMediaType(
            f"{media_type or 'no Content-Type'} is not accepted; attach one of "
            + ", ".join(ALLOWED_MEDIA_TYPES))
    offset, magic, what = _SIGNATURES[media_type]
    if data[offset:offset + len(magic)] != magic:
        raise UnsupportedMediaType(f"the content is not {media_type}: {what}")
    return media_type


def _attachable(session: Session, principal: Principal, case_id: int) -> ConsultCase:
    case = wf.load_case(session, principal, case_id)
    if CaseStatus(case.status) in FINAL_STATUSES:
        raise Conflict(f"cannot attach to a case that is {case.status}")
    if not may_act_on_case(principal, "message", wf.parties(case)):  # any party of the case
        raise Forbidden("you may not attach files to this case")
    return case


def check_may_attach(ctx: wf.ConsultContext, principal: Principal, case_id: int) -> None:
    """404/409/403 before the body is read: an outsider learns nothing from a size limit."""
    with Session(ctx.engine) as session:
        _attachable(session, principal, case_id)


def add_attachment(ctx: wf.ConsultContext, principal: Principal, case_id: int, *,
                   filename: str, media_type: str, data: bytes,
                   actor: Actor | None = None) -> CaseAttachment:
    """Attach a file to the case: the file first, then its row, the event and the audit."""
    config = _config(ctx)
    check_may_attach(ctx, principal, case_id)
    media_type = check_content(data, media_type, config.attachment_max_bytes)
    sha256 = _write_file(config, data)
    with Session(ctx.engine, expire_on_commit=False) as session:
        case = _attachable(session, principal, case_id)
        attachment = CaseAttachment(
            case_id=case_id, filename=clean_filename(filename), media_type=media_type,
            size=len(data), sha256=sha256, uploaded_by=principal.subject,
            uploaded_by_name=principal.display_name,
            uploaded_by_institution=principal.institution_id or "", at=wf.now())
        session.add(attachment)
        session.flush()
        case.version += 1
        session.add(case)
        wf._event(session, case, principal, EventKind.ATTACHMENT, case.status, {
            "attachment": attachment.id, "filename": attachment.filename,
            "media_type": media_type, "size": len(data), "sha256": sha256})
        session.commit()
    ctx.audit.record(actor or wf._actor(principal), AuditAction.STORE,
                     patient_id=case.patient_id, patient_name=case.patient_name,
                     data_institution=case.requester_institution,
                     detail={"what": "case attachment", "case": case_id,
                             "attachment": attachment.id, "sha256": sha256})
    return attachment


def attachments_of(ctx: wf.ConsultContext, principal: Principal,
                   case_id: int) -> list[CaseAttachment]:
    with Session(ctx.engine) as session:
        wf.load_case(session, principal, case_id)
        return list(session.exec(select(CaseAttachment).where(CaseAttachment.case_id == case_id)
                                 .order_by(col(CaseAttachment.at), col(CaseAttachment.id))))


def read_attachment(ctx: wf.ConsultContext, principal: Principal, case_id: int,
                    attachment_id: int, actor: Actor | None = None
                    ) -> tuple[CaseAttachment, bytes]:
    """An attachment's row and bytes, for a caller who may see the case (audited export)."""
    with Session(ctx.engine) as session:
        case = wf.load_case(session, principal, case_id)
        attachment = session.get(CaseAttachment, attachment_id)
    if attachment is None or attachment.case_id != case_id:
        raise NotFound("no such attachment")
    data = _read_file(_config(ctx), attachment.sha256)
    if data is None:
        log.error("attachment %s of case %s: file %s is missing", attachment_id, case_id,
                  attachment.sha256)
        raise NotFound("the attachment's file is missing")
    ctx.audit.record(actor or wf._actor(principal), AuditAction.EXPORT,
                     patient_id=case.patient_id, patient_name=case.patient_name,
                     data_institution=case.requester_institution,
                     detail={"what": "case attachment", "case": case_id,
                             "attachment": attachment_id, "sha256": attachment.sha256})
    return attachment, data


def attachment_json(attachment: CaseAttachment) -> dict[str, Any]:
    return {"id": attachment.id, "case_id": attachment.case_id, "filename": attachment.filename,
            "media_type": attachment.media_type, "size": attachment.size,
            "sha256": attachment.sha256, "uploaded_by": attachment.uploaded_by,
            "uploaded_by_name": attachment.uploaded_by_name, "at": attachment.at.isoformat()}


# -- what a conclusion document says -----------------------------------------------------------


def _study_facts(ctx: wf.ConsultContext, uids: list[str]) -> list[StudyFacts]:
    return catalog.study_facts(ctx.engine, uids)


def _case_parts(ctx: wf.ConsultContext, case_id: int, version: int
                ) -> tuple[ConsultCase, Conclusion, list[str]]:
    with Session(ctx.engine) as session:
        case = session.get(ConsultCase, case_id)
        conclusion = session.exec(select(Conclusion).where(
            Conclusion.case_id == case_id, Conclusion.version == version)).first()
        if case is None or conclusion is None:
            raise NotFound("no such conclusion")
        uids = list(session.exec(select(CaseStudy.study_uid).where(CaseStudy.case_id == case_id)
                                 .order_by(col(CaseStudy.id))))
    return case, conclusion, uids


def _person(name: str) -> str:
    """DICOM PN to text: 'ИВАНОВ^ИВАН' -> 'ИВАНОВ ИВАН'."""
    return " ".join(part for part in name.split("=")[0].split("^") if part)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def render_pdf(ctx: wf.ConsultContext, case: ConsultCase, conclusion: Conclusion,
               facts: list[StudyFacts]) -> bytes:
    """The signed conclusion as a one-document PDF (DejaVu fonts, so Cyrillic prints). The
    bytes depend only on what is signed: the PDF's creation date is the signing time."""
    from fpdf import FPDF
    from fpdf.enums import XPos, YPos

    names = ctx.documents.institution_names if ctx.documents else {}
    tr = ctx.documents.text if ctx.documents else PdfText()
    signed_at = _aware(conclusion.signed_at).astimezone(UTC)
    pdf = FPDF(format="A4")
    pdf.set_creation_date(signed_at)
    pdf.set_title(tr("doc_title", case=case.id, version=conclusion.version))
    pdf.set_author(conclusion.author_name or conclusion.author)
    pdf.set_creator("Consilium")
    pdf.add_font("DejaVu", "", str(FONT_DIR / "DejaVuSans.ttf"))
    pdf.add_font("DejaVu", "B", str(FONT_DIR / "DejaVuSans-Bold.ttf"))
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()

    def line(text: str, size: float = 10, style: str = "", gap: float = 0) -> None:
        pdf.set_font("DejaVu", style, size)
        pdf.multi_cell(0, size * 0.5, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        if gap:
            pdf.ln(gap)

    def labelled(label: str, value: str) -> None:
        line(label, 9, "B")
        line(value or "-", 10, gap=2)

    def inst(identifier: str) -> str:
        return names.get(identifier, identifier)

    line(tr("title"), 15, "B", gap=2)
    line(tr("case_line", case=case.id, version=conclusion.version,
            when=tr.instant(signed_at)), 9, gap=3)
    line(tr("from", institution=inst(case.requester_institution),
            person=case.requester_name), 10)
    line(tr("to", institution=inst(case.target_institution))
         + (f", {case.target_specialty}" if case.target_specialty else ""), 10, gap=3)
    patient = facts[0] if facts else None
    labelled(tr("patient"), tr("patient_line", name=_person(patient.patient_name),
                               patient_id=patient.patient_id,
                               born=tr.date(patient.birth_date) or "-",
                               sex=tr.sex(patient.sex))
             if patient else f"{_person(case.patient_name)} · ID {case.patient_id}")
    labelled(tr("studies"), "\n".join(
        tr("study_line", date=tr.date(f.study_date) or "-", modalities=f.modalities or "-",
           description=f.description or "-", accession=f.accession_number or "-")
        for f in facts))
    labelled(tr("question"), case.question)
    if case.clinical_info:
        labelled(tr("clinical_info"), case.clinical_info)
    labelled(tr("findings"), conclusion.findings)
    labelled(tr("impression"), conclusion.impression)
    labelled(tr("recommendations"), conclusion.recommendations)
    if conclusion.replaces_version:
        labelled(tr("amendment"), tr("amendment_line", version=conclusion.replaces_version,
                                     reason=conclusion.amendment_reason))
    labelled(tr("signed_by"), f"{conclusion.author_name or conclusion.author}, "
                              f"{inst(conclusion.author_institution)}, "
                              f"{tr.instant(signed_at)}")
    line(tr("sha256", sha=conclusion.content_sha256), 7)
    return bytes(pdf.output())


def _ensure_pdf(ctx: wf.ConsultContext, case: ConsultCase, conclusion: Conclusion,
                uids: list[str]) -> bytes:
    """The conclusion's PDF: rendered once, kept by content, the same bytes ever after."""
    config = _config(ctx)
    if conclusion.pdf_sha256:
        kept = _read_file(config, conclusion.pdf_sha256)
        if kept is not None:
            return kept
    data = render_pdf(ctx, case, conclusion, _study_facts(ctx, uids))
    sha256 = _write_file(config, data)
    if sha256 != conclusion.pdf_sha256:
        with Session(ctx.engine) as session:
            row = session.get(Conclusion, conclusion.id)
            if row is not None and not row.pdf_sha256:
                row.pdf_sha256 = sha256
                session.add(row)
                session.commit()
    return data


def conclusion_pdf(ctx: wf.ConsultContext, principal: Principal, case_id: int, version: int,
                   actor: Actor | None = None) -> bytes:
    """The PDF of a signed version, for a caller who may see the case (audited export)."""
    with Session(ctx.engine) as session:
        wf.load_case(session, principal, case_id)
    case, conclusion, uids = _case_parts(ctx, case_id, version)
    data = _ensure_pdf(ctx, case, conclusion, uids)
    ctx.audit.record(actor or wf._actor(principal), AuditAction.EXPORT,
                     study_uid=uids[0] if uids else "", patient_id=case.patient_id,
                     patient_name=case.patient_name,
                     detail={"what": "conclusion pdf", "case": case_id, "version": version})
    return data


def pdf_filename(case_id: int, version: int) -> str:
    return f"consult-{case_id}-conclusion-v{version}.pdf"


# -- DICOM objects -----------------------------------------------------------------------------


def _code(value: tuple[str, str, str]) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value
    return item


def _uid(*parts: object) -> str:
    """A UID derived from what is signed, so a retry names the same instance."""
    return str(generate_uid(entropy_srcs=["consilium-consult", *map(str, parts)]))


def _base(source: Dataset, sop_class: str, sop_uid: str, series_uid: str, modality: str,
          series_number: int, description: str, conclusion: Conclusion,
          institution_name: str) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    signed_at = _aware(conclusion.signed_at).astimezone(UTC)
    date, time = signed_at.strftime("%Y%m%d"), signed_at.strftime("%H%M%S")
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    ds.TimezoneOffsetFromUTC = "+0000"
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_uid
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for keyword in _PATIENT_STUDY:
            value = source.get(keyword)
            if value is not None and value != "":
                setattr(ds, keyword, str(value))
    for keyword in _TYPE_2:
        if keyword not in ds:
            setattr(ds, keyword, "")
    ds.Modality = modality
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = description
    ds.SeriesDate, ds.SeriesTime = date, time
    ds.Manufacturer = "Consilium"
    ds.InstitutionName = institution_name[:64]
    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = date, time
    return ds


def _part10(ds: Dataset) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def encapsulated_pdf(source: Dataset, pdf: bytes, conclusion: Conclusion, sop_uid: str,
                     series_uid: str, institution_name: str) -> Dataset:
    """An Encapsulated PDF instance (PS3.3 A.45.1) of the conclusion in the source's study."""
    title = f"Consult conclusion v{conclusion.version}"
    ds = _base(source, ENCAPSULATED_PDF, sop_uid, series_uid, "DOC",
               9000 + 2 * conclusion.version, title, conclusion, institution_name)
    ds.ConversionType = "WSD"
    ds.BurnedInAnnotation = "YES"
    ds.AcquisitionDateTime = _aware(conclusion.signed_at).astimezone(UTC).strftime(
        "%Y%m%d%H%M%S+0000")
    ds.DocumentTitle = title
    ds.ConceptNameCodeSequence = Sequence([_code(CONSULT_NOTE)])
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocumentLength = len(pdf)
    ds.EncapsulatedDocument = pdf + (b"\0" if len(pdf) % 2 else b"")
    return ds


def basic_text_sr(source: Dataset, conclusion: Conclusion, sop_uid: str, series_uid: str,
                  institution_name: str, predecessor: ArchivedDocument | None) -> Dataset:
    """A verified Basic Text SR (PS3.3 A.35.1): findings, impression, recommendations."""
    ds = _base(source, BASIC_TEXT_SR, sop_uid, series_uid, "SR",
               9001 + 2 * conclusion.version, f"Consult conclusion v{conclusion.version} (SR)",
               conclusion, institution_name)
    ds.ReferencedPerformedProcedureStepSequence = Sequence()
    ds.PerformedProcedureCodeSequence = Sequence()
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "VERIFIED"
    observer = Dataset()
    observer.VerifyingObserverName = (conclusion.author_name or conclusion.author)[:64]
    observer.VerifyingObserverIdentificationCodeSequence = Sequence()
    observer.VerifyingOrganization = institution_name[:64] or conclusion.author_institution
    observer.VerificationDateTime = _aware(conclusion.signed_at).astimezone(UTC).strftime(
        "%Y%m%d%H%M%S+0000")
    ds.VerifyingObserverSequence = Sequence([observer])
    if predecessor is not None:
        sop = Dataset()
        sop.ReferencedSOPClassUID = predecessor.sop_class_uid
        sop.ReferencedSOPInstanceUID = predecessor.sop_instance_uid
        series = Dataset()
        series.SeriesInstanceUID = predecessor.series_uid
        series.ReferencedSOPSequence = Sequence([sop])
        study = Dataset()
        study.StudyInstanceUID = predecessor.study_uid
        study.ReferencedSeriesSequence = Sequence([series])
        ds.PredecessorDocumentsSequence = Sequence([study])
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = Sequence([_code(CONSULT_NOTE)])
    ds.ContinuityOfContent = "SEPARATE"
    items = []
    for concept, text in ((FINDING, conclusion.findings), (IMPRESSION, conclusion.impression),
                          (RECOMMENDATION, conclusion.recommendations)):
        if not text.strip():
            continue
        item = Dataset()
        item.RelationshipType = "CONTAINS"
        item.ValueType = "TEXT"
        item.ConceptNameCodeSequence = Sequence([_code(concept)])
        item.TextValue = text
        items.append(item)
    ds.ContentSequence = Sequence(items)
    return ds


# -- writing a conclusion into the archive -----------------------------------------------------


def archive_conclusion(ctx: wf.ConsultContext, conclusion_id: int) -> list[ArchivedDocument]:
    """Write the signed conclusion beside each of its studies (PDF and SR); record each
    outcome. Never raises: the conclusion is signed whatever happens here."""
    if ctx.documents is None:
        return []
    try:
        with Session(ctx.engine) as session:
            conclusion = session.get(Conclusion, conclusion_id)
        if conclusion is None:
            return []
        case, conclusion, uids = _case_parts(ctx, conclusion.case_id, conclusion.version)
        pdf = functools.cache(lambda: _ensure_pdf(ctx, case, conclusion, uids))
        return [_archive_one(ctx, case, conclusion, uid, kind, pdf)
                for uid in uids for kind in ("pdf", "sr")]
    except Exception:
        log.exception("ARCHIVING FAILED for conclusion %s; it stays signed", conclusion_id)
        return []


def _archive_one(ctx: wf.ConsultContext, case: ConsultCase, conclusion: Conclusion,
                 study_uid: str, kind: str, pdf: Callable[[], bytes]) -> ArchivedDocument:
    config = _config(ctx)
    names = config.institution_names
    seed = (case.id, conclusion.version, conclusion.content_sha256,
            _aware(conclusion.signed_at).isoformat(), study_uid, kind)
    series_uid, sop_uid = _uid("series", *seed), _uid("instance", *seed)
    sop_class = ENCAPSULATED_PDF if kind == "pdf" else BASIC_TEXT_SR
    status, reason, owner = "stored", "", ""
    try:
        source, owner = catalog.study_header(config.store, study_uid)
        institution = names.get(conclusion.author_institution, conclusion.author_institution)
        if kind == "pdf":
            ds = encapsulated_pdf(source, pdf(), conclusion, sop_uid, series_uid, institution)
        else:
            ds = basic_text_sr(source, conclusion, sop_uid, series_uid, institution,
                               _predecessor(ctx, conclusion, study_uid))
        result = ingest_part10(config.store, _part10(ds), IngestSource(owner, "", "consult"))
        if not result.ok:
            status, reason = "failed", f"refused by the archive: {result.reason}"
    except Exception as exc:
        log.exception("archiving the %s of case %s v%s into study %s failed", kind, case.id,
                      conclusion.version, study_uid)
        status, reason = "failed", f"{type(exc).__name__}: {exc}"
    if status == "failed":
        log.error("ARCHIVING FAILED: %s of case %s version %s into study %s: %s", kind, case.id,
                  conclusion.version, study_uid, reason)
    ctx.audit.record(
        Actor(conclusion.author, conclusion.author_name, conclusion.author_institution,
              channel="consult"), AuditAction.STORE,
        AuditOutcome.SUCCESS if status == "stored" else AuditOutcome.FAILURE,
        study_uid=study_uid, owner=owner,  # written for its owner: its patient is named
        detail={"what": f"conclusion {kind}", "case": case.id, "version": conclusion.version,
                "sop_instance_uid": sop_uid, **({"reason": reason} if reason else {})})
    with Session(ctx.engine, expire_on_commit=False) as session:
        row = session.exec(select(ArchivedDocument).where(
            ArchivedDocument.conclusion_id == conclusion.id,
            ArchivedDocument.study_uid == study_uid, ArchivedDocument.kind == kind)).first()
        row = row or ArchivedDocument(case_id=case.id or 0, conclusion_id=conclusion.id or 0,
                                      study_uid=study_uid, kind=kind, status=status, at=wf.now())
        row.series_uid, row.sop_instance_uid, row.sop_class_uid = series_uid, sop_uid, sop_class
        row.status, row.reason, row.at = status, reason[:1000], wf.now()
        session.add(row)
        session.commit()
    return row


def _predecessor(ctx: wf.ConsultContext, conclusion: Conclusion,
                 study_uid: str) -> ArchivedDocument | None:
    """The SR of the version this one replaces, in the same study, if it was stored."""
    if not conclusion.replaces_version:
        return None
    with Session(ctx.engine) as session:
        return session.exec(select(ArchivedDocument).join(
            Conclusion, col(Conclusion.id) == col(ArchivedDocument.conclusion_id)).where(
            Conclusion.case_id == conclusion.case_id,
            Conclusion.version == conclusion.replaces_version,
            ArchivedDocument.study_uid == study_uid, ArchivedDocument.kind == "sr",
            ArchivedDocument.status == "stored")).first()


def retry_archiving(ctx: wf.ConsultContext) -> int:
    """Write again what failed to be archived; the number still failing. Never raises."""
    if ctx.documents is None:
        return 0
    try:
        return _retry(ctx)
    except Exception:
        log.exception("retrying the archiving of conclusions failed")
        return -1


def _retry(ctx: wf.ConsultContext) -> int:
    with Session(ctx.engine) as session:
        failed = list(session.exec(select(ArchivedDocument).where(
            ArchivedDocument.status == "failed").order_by(col(ArchivedDocument.id)).limit(100)))
    left = 0
    for row in failed:
        try:
            case, conclusion, uids = _case_parts(ctx, row.case_id, _version_of(ctx, row))
        except NotFound:
            continue
        pdf = functools.partial(_ensure_pdf, ctx, case, conclusion, uids)
        if _archive_one(ctx, case, conclusion, row.study_uid, row.kind, pdf).status != "stored":
            left += 1
    return left


def _version_of(ctx: wf.ConsultContext, row: ArchivedDocument) -> int:
    with Session(ctx.engine) as session:
        conclusion = session.get(Conclusion, row.conclusion_id)
    if conclusion is None:
        raise NotFound("no such conclusion")
    return conclusion.version


def archived_of(ctx: wf.ConsultContext, case_id: int) -> dict[int, list[ArchivedDocument]]:
    """What each conclusion of a case (by its id) wrote into the archive, stored or failed."""
    with Session(ctx.engine) as session:
        rows = list(session.exec(select(ArchivedDocument).where(
            ArchivedDocument.case_id == case_id).order_by(col(ArchivedDocument.id))))
    found: dict[int, list[ArchivedDocument]] = {}
    for row in rows:
        found.setdefault(row.conclusion_id, []).append(row)
    return found


def conclusion_json(conclusion: Conclusion, archived: list[ArchivedDocument]) -> dict[str, Any]:
    """A conclusion as the API shows it: its fields, where its PDF is, what was archived."""
    body = {k: (v.isoformat() if isinstance(v, datetime) else v)
            for k, v in conclusion.model_dump().items()}
    body["pdf_url"] = f"/api/cases/{conclusion.case_id}/conclusions/{conclusion.version}.pdf"
    body["archived"] = [{"study_uid": r.study_uid, "series_uid": r.series_uid,
                         "sop_instance_uid": r.sop_instance_uid,
                         "sop_class_uid": r.sop_class_uid, "kind": r.kind}
                        for r in archived if r.status == "stored"]
    body["archive_failures"] = [{"study_uid": r.study_uid, "kind": r.kind, "reason": r.reason}
                                for r in archived if r.status != "stored"]
    return body


_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def content_disposition(filename: str) -> str:
    """``attachment`` with an ASCII fallback and the RFC 5987 UTF-8 name."""
    from urllib.parse import quote

    fallback = _SAFE.sub("_", filename) or "attachment"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
