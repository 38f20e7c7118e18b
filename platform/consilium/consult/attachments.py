"""Files a party adds to a case (a referral letter, a lab report, a prior study's report).

Accepted: PDF, PNG, JPEG and DICOM files, each checked against its first bytes (a file that is
not what its Content-Type says is refused, 415), at most ``consult.attachment_max_mb``. The
file is kept by content (:mod:`consilium.consult.files`) before its row is committed; adding
one is a change of the case (its version moves, an event, the parties notified), reading one
an audited export.
"""

from __future__ import annotations

import logging
import unicodedata

from sqlmodel import Session, col, select

from consilium.audit import Actor, AuditAction
from consilium.consult.cases import actor_of, load_case, notify, now, parties, record_event
from consilium.consult.context import ConsultContext
from consilium.consult.files import read_file, write_file
from consilium.consult.models import (
    FINAL_STATUSES,
    CaseAttachment,
    CaseStatus,
    ConsultCase,
    EventKind,
)
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

# what a file must begin with to be what its Content-Type says
_SIGNATURES: dict[str, tuple[int, bytes, str]] = {
    "application/pdf": (0, b"%PDF-", "a PDF starts with %PDF-"),
    "image/png": (0, b"\x89PNG\r\n\x1a\n", "a PNG starts with its 8-byte signature"),
    "image/jpeg": (0, b"\xff\xd8\xff", "a JPEG starts with FF D8 FF"),
    "application/dicom": (128, b"DICM", "a DICOM file has 'DICM' after its 128-byte preamble"),
}
ALLOWED_MEDIA_TYPES = tuple(_SIGNATURES)


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
    case = load_case(session, principal, case_id)
    if CaseStatus(case.status) in FINAL_STATUSES:
        raise Conflict(f"cannot attach to a case that is {case.status}")
    if not may_act_on_case(principal, "message", parties(case)):  # any party of the case
        raise Forbidden("you may not attach files to this case")
    return case


def check_may_attach(ctx: ConsultContext, principal: Principal, case_id: int) -> None:
    """404/409/403 before the body is read: an outsider learns nothing from a size limit."""
    with Session(ctx.engine) as session:
        _attachable(session, principal, case_id)


def add_attachment(ctx: ConsultContext, principal: Principal, case_id: int, *,
                   filename: str, media_type: str, data: bytes,
                   actor: Actor | None = None) -> CaseAttachment:
    """Attach a file to the case: the file first, then its row, the event and the audit."""
    config = ctx.files
    check_may_attach(ctx, principal, case_id)
    media_type = check_content(data, media_type, config.attachment_max_bytes)
    sha256 = write_file(config, data)
    with Session(ctx.engine, expire_on_commit=False) as session:
        case = _attachable(session, principal, case_id)
        attachment = CaseAttachment(
            case_id=case_id, filename=clean_filename(filename), media_type=media_type,
            size=len(data), sha256=sha256, uploaded_by=principal.subject,
            uploaded_by_name=principal.display_name,
            uploaded_by_institution=principal.institution_id or "", at=now())
        session.add(attachment)
        session.flush()
        case.version += 1
        session.add(case)
        record_event(session, case, principal, EventKind.ATTACHMENT, case.status, {
            "attachment": attachment.id, "filename": attachment.filename,
            "media_type": media_type, "size": len(data), "sha256": sha256})
        session.commit()
    ctx.audit.record(actor or actor_of(principal), AuditAction.STORE,
                     patient_id=case.patient_id, patient_name=case.patient_name,
                     data_institution=case.requester_institution,
                     detail={"what": "case attachment", "case": case_id,
                             "attachment": attachment.id, "sha256": sha256})
    notify(ctx, case, "attachment")
    return attachment


def attachments_of(ctx: ConsultContext, principal: Principal,
                   case_id: int) -> list[CaseAttachment]:
    with Session(ctx.engine) as session:
        load_case(session, principal, case_id)
        return list(session.exec(select(CaseAttachment).where(CaseAttachment.case_id == case_id)
                                 .order_by(col(CaseAttachment.at), col(CaseAttachment.id))))


def read_attachment(ctx: ConsultContext, principal: Principal, case_id: int,
                    attachment_id: int, actor: Actor | None = None
                    ) -> tuple[CaseAttachment, bytes]:
    """An attachment's row and bytes, for a caller who may see the case (audited export)."""
    with Session(ctx.engine) as session:
        case = load_case(session, principal, case_id)
        attachment = session.get(CaseAttachment, attachment_id)
    if attachment is None or attachment.case_id != case_id:
        raise NotFound("no such attachment")
    data = read_file(ctx.files, attachment.sha256)
    if data is None:
        log.error("attachment %s of case %s: file %s is missing", attachment_id, case_id,
                  attachment.sha256)
        raise NotFound("the attachment's file is missing")
    ctx.audit.record(actor or actor_of(principal), AuditAction.EXPORT,
                     patient_id=case.patient_id, patient_name=case.patient_name,
                     data_institution=case.requester_institution,
                     detail={"what": "case attachment", "case": case_id,
                             "attachment": attachment_id, "sha256": attachment.sha256})
    return attachment, data
