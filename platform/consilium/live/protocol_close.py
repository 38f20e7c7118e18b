"""Closing the protocol: its PDF attached to the case, a case event, and the archive.

The chair closes a protocol put to signing once at least one participant agreed. What it says
(:class:`~consilium.live.protocol_pdf.ProtocolDocument`) is gathered and the PDF rendered and
kept by content first; then one transaction closes the protocol (only if nobody signed or
reopened meanwhile), attaches the PDF to the case (an attachment like a party's, so the case
page lists it; the case's version moves), writes the case event and the ``protocol.closed``
change. Writing into the archive comes after, as for a conclusion
(:mod:`consilium.consult.archiving`): the closing counts; a failure is kept as a ``failed`` row
and written again by :func:`retry_protocol_archiving` (at every start and before each closing).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from pydicom.dataset import Dataset
from sqlalchemy import update
from sqlmodel import Session, col, select

from consilium.archive import catalog
from consilium.audit import Actor, AuditAction
from consilium.consult.annotations import list_key_images
from consilium.consult.archiving import store_beside
from consilium.consult.cases import actor_of
from consilium.consult.conclusion_dicom import BASIC_TEXT_SR, ENCAPSULATED_PDF
from consilium.consult.context import ConsultContext
from consilium.consult.files import read_file, write_file
from consilium.consult.models import (
    CaseAttachment,
    CaseEvent,
    ConsultCase,
    EventKind,
)
from consilium.errors import Conflict, Forbidden, NotFound
from consilium.identity.policy import Principal
from consilium.live import protocol as proto
from consilium.live.events import ChangeKind
from consilium.live.models import ConsiliumSession, SessionChange
from consilium.live.protocol_dicom import protocol_pdf_dataset, protocol_sr_dataset, protocol_uids
from consilium.live.protocol_models import (
    Protocol,
    ProtocolArchived,
    ProtocolSignature,
    ProtocolStatus,
)
from consilium.live.protocol_pdf import Person, ProtocolDocument, Signed, render_protocol_pdf
from consilium.live.sequencer import Draft, read_state, utcnow
from consilium.live.sessions import LiveContext, Outcome, study_uids_of_case

log = logging.getLogger(__name__)

KINDS = ("pdf", "sr")


def _document(ctx: LiveContext, db: Session, row: ConsiliumSession, protocol: Protocol,
              signatures: list[ProtocolSignature], closed_by: Person,
              closed_at: datetime) -> ProtocolDocument:
    case = db.get(ConsultCase, row.case_id)
    if case is None:
        raise NotFound("no such case")
    state, _ = read_state(db.connection(), row.id)
    members = state["members"]
    table = SessionChange.__table__.c  # type: ignore[attr-defined]
    joined = set(db.connection().execute(select(table.actor).where(
        table.session_id == row.id, table.kind == ChangeKind.MEMBER_JOINED.value)).scalars())
    joined |= {s.subject for s in signatures} | {row.chair_subject}
    participants = [Person(subject, m.get("name", ""), m.get("institution", ""))
                    for subject, m in members.items() if subject in joined]
    sha = proto.content_sha256(row.id, protocol.version, protocol.text, signatures)
    uids = study_uids_of_case(db, row.case_id)
    return ProtocolDocument(
        case_id=row.case_id, session_id=row.id, title=row.title, question=case.question,
        patient_name=case.patient_name, patient_id=case.patient_id,
        opened_at=proto.aware(row.opened_at), ended_at=proto.aware(row.ended_at),
        chair=Person(row.chair_subject, row.chair_name, row.chair_institution),
        participants=participants, version=protocol.version, text=protocol.text,
        signatures=[Signed(Person(s.subject, s.name, s.institution), s.agree, s.dissent,
                           (proto.aware(s.at) or s.at).astimezone(UTC)) for s in signatures],
        closed_at=closed_at.astimezone(UTC), closed_by=closed_by,
        content_sha256=sha, facts=catalog.study_facts(ctx.engine, uids),
        key_images=list_key_images(db, row.case_id))


def close(ctx: LiveContext, consult: ConsultContext, principal: Principal, session_id: str,
          actor: Actor | None = None) -> Outcome:
    """The chair closes the protocol put to signing (at least one agreed); see the module."""
    config = consult.files
    proto.check_access(ctx, principal, session_id)
    retry_protocol_archiving(ctx, consult)  # what failed before, first
    with Session(ctx.engine) as db:
        row = proto.session_row(db, session_id)
        protocol = proto.find_protocol(db, row)
        if row.chair_subject != principal.subject:
            raise Forbidden("only the chair closes the protocol")
        if protocol is None or protocol.status != ProtocolStatus.SIGNING.value:
            raise Conflict("only a protocol put to signing can be closed")
        signatures = proto.signatures_of(db, protocol)
        if not any(s.agree for s in signatures):
            raise Conflict("nobody has signed in agreement yet")
        doc = _document(ctx, db, row, protocol, signatures,
                        Person(principal.subject, principal.display_name,
                               principal.institution_id or ""), utcnow())
        signed_ids = [s.id for s in signatures]
    pdf = render_protocol_pdf(doc, config.institution_names, config.text)
    pdf_sha = write_file(config, pdf)  # the file before the row that names it
    with Session(ctx.engine, expire_on_commit=False) as db:
        row = proto.session_row(db, session_id)
        protocol = proto.find_protocol(db, row)
        assert protocol is not None
        if [s.id for s in proto.signatures_of(db, protocol)] != signed_ids:
            raise Conflict("someone signed meanwhile; close again")
        case = db.get(ConsultCase, row.case_id)
        assert case is not None
        attachment = CaseAttachment(
            case_id=row.case_id, filename=pdf_filename(row.case_id, session_id),
            media_type="application/pdf", size=len(pdf), sha256=pdf_sha,
            uploaded_by=principal.subject, uploaded_by_name=principal.display_name,
            uploaded_by_institution=principal.institution_id or "", at=doc.closed_at)
        db.add(attachment)
        db.flush()
        proto.claim(db, protocol, ProtocolStatus.SIGNING, doc.version,
                     status=ProtocolStatus.CLOSED.value, closed_at=doc.closed_at,
                     closed_by=principal.subject, content_sha256=doc.content_sha256,
                     pdf_sha256=pdf_sha, attachment_id=attachment.id)
        db.execute(update(ConsultCase).where(col(ConsultCase.id) == case.id)
                   .values(version=ConsultCase.version + 1))
        agreed = sum(s.agree for s in doc.signatures)
        db.add(CaseEvent(case_id=row.case_id, at=doc.closed_at, kind=EventKind.CONSILIUM.value,
                         actor=principal.subject, actor_name=principal.display_name,
                         actor_institution=principal.institution_id or "",
                         from_status=case.status, to_status=case.status,
                         detail=json.dumps({
                             "event": "protocol", "session": session_id,
                             "version": doc.version, "agreed": agreed,
                             "dissented": len(doc.signatures) - agreed,
                             "attachment": attachment.id, "sha256": doc.content_sha256},
                             ensure_ascii=False)))
        change = proto.append_change(db.connection(), Draft(
            session_id, ChangeKind.PROTOCOL_CLOSED, principal.subject, {
                "version": doc.version, "content_sha256": doc.content_sha256,
                "attachment_id": attachment.id, "by": principal.subject}, at=doc.closed_at))
        db.commit()
        db.refresh(row)
        protocol_id = protocol.id or 0
    consult.audit.record(actor or actor_of(principal), AuditAction.STORE,
                         patient_id=case.patient_id, patient_name=case.patient_name,
                         data_institution=case.requester_institution,
                         detail={"what": "consilium protocol", "case": row.case_id,
                                 "session": session_id, "attachment": attachment.id,
                                 "sha256": pdf_sha})
    archive_protocol(ctx, consult, protocol_id, doc, pdf)
    return Outcome(row, [change])


def pdf_filename(case_id: int, session_id: str) -> str:
    return f"consult-{case_id}-consilium-{session_id}-protocol.pdf"


# -- the archive ----------------------------------------------------------------------------------


def archive_protocol(ctx: LiveContext, consult: ConsultContext, protocol_id: int,
                     doc: ProtocolDocument, pdf: bytes) -> list[ProtocolArchived]:
    """The closed protocol beside each study of its case, PDF and SR; each outcome kept.
    Never raises: the protocol is closed whatever happens here."""
    try:
        with Session(ctx.engine) as db:
            uids = study_uids_of_case(db, doc.case_id)
        return [_archive_one(ctx, consult, protocol_id, doc, pdf, uid, kind)
                for uid in uids for kind in KINDS]
    except Exception:
        log.exception("ARCHIVING FAILED for the protocol of session %s; it stays closed",
                      doc.session_id)
        return []


def _archive_one(ctx: LiveContext, consult: ConsultContext, protocol_id: int,
                 doc: ProtocolDocument, pdf: bytes, study_uid: str,
                 kind: str) -> ProtocolArchived:
    names = dict(consult.files.institution_names)
    series_uid, sop_uid = protocol_uids(doc, study_uid, kind)
    institution = names.get(doc.chair.institution, doc.chair.institution)

    def build(source: Dataset, _owner: str) -> Dataset:
        if kind == "pdf":
            return protocol_pdf_dataset(source, pdf, doc, sop_uid, series_uid, institution)
        return protocol_sr_dataset(source, doc, sop_uid, series_uid, institution, names)

    stored = store_beside(consult, study_uid, build,
                          Actor(doc.closed_by.subject, doc.closed_by.name,
                                doc.closed_by.institution, channel="consult"),
                          {"what": f"consilium protocol {kind}", "case": doc.case_id,
                           "session": doc.session_id, "sop_instance_uid": sop_uid})
    sop_class = ENCAPSULATED_PDF if kind == "pdf" else BASIC_TEXT_SR
    with Session(ctx.engine, expire_on_commit=False) as db:
        found = db.exec(select(ProtocolArchived).where(
            ProtocolArchived.protocol_id == protocol_id, ProtocolArchived.study_uid == study_uid,
            ProtocolArchived.kind == kind)).first()
        found = found or ProtocolArchived(protocol_id=protocol_id, study_uid=study_uid,
                                          kind=kind, status=stored.status, at=utcnow())
        found.series_uid, found.sop_instance_uid, found.sop_class_uid = (series_uid, sop_uid,
                                                                         sop_class)
        found.status, found.reason, found.at = stored.status, stored.reason, utcnow()
        db.add(found)
        db.commit()
    return found


def retry_protocol_archiving(ctx: LiveContext, consult: ConsultContext) -> int:
    """Write again what failed to be archived; the number still failing. Never raises."""
    if consult.documents is None:
        return 0
    try:
        with Session(ctx.engine) as db:
            failed = list(db.exec(select(ProtocolArchived).where(
                ProtocolArchived.status == "failed").order_by(col(ProtocolArchived.id))
                .limit(100)))
        left = 0
        for archived in failed:
            again = _rebuild(ctx, consult, archived)
            if again is None or again.status != "stored":
                left += 1
        return left
    except Exception:
        log.exception("retrying the archiving of consilium protocols failed")
        return -1


def _rebuild(ctx: LiveContext, consult: ConsultContext,
             archived: ProtocolArchived) -> ProtocolArchived | None:
    """The failed write again, from what was closed: the kept PDF, the same document."""
    with Session(ctx.engine) as db:
        protocol = db.get(Protocol, archived.protocol_id)
        if protocol is None or protocol.status != ProtocolStatus.CLOSED.value:
            return None
        row = proto.session_row(db, protocol.session_id)
        state, _ = read_state(db.connection(), row.id)
        closer = state["members"].get(protocol.closed_by) or {}
        doc = _document(ctx, db, row, protocol, proto.signatures_of(db, protocol),
                        Person(protocol.closed_by, closer.get("name", ""),
                               closer.get("institution", "")),
                        proto.aware(protocol.closed_at) or utcnow())
    pdf = read_file(consult.files, protocol.pdf_sha256)
    if pdf is None:
        log.error("the PDF of the protocol of session %s is missing", protocol.session_id)
        return None
    return _archive_one(ctx, consult, protocol.id or 0, doc, pdf, archived.study_uid,
                        archived.kind)


def protocol_pdf(ctx: LiveContext, consult: ConsultContext, principal: Principal,
                 session_id: str, actor: Actor | None = None) -> tuple[str, bytes]:
    """(file name, bytes) of a closed protocol's PDF, for whoever may see the session (an
    audited export)."""
    proto.check_access(ctx, principal, session_id)
    with Session(ctx.engine) as db:
        row = proto.session_row(db, session_id)
        protocol = proto.find_protocol(db, row)
        case = db.get(ConsultCase, row.case_id)
    if protocol is None or protocol.status != ProtocolStatus.CLOSED.value or case is None:
        raise NotFound("the protocol is not closed")
    data = read_file(consult.files, protocol.pdf_sha256)
    if data is None:
        log.error("the PDF of the protocol of session %s is missing", session_id)
        raise NotFound("the protocol's file is missing")
    consult.audit.record(actor or actor_of(principal), AuditAction.EXPORT,
                         patient_id=case.patient_id, patient_name=case.patient_name,
                         data_institution=case.requester_institution,
                         detail={"what": "consilium protocol pdf", "case": row.case_id,
                                 "session": session_id})
    return pdf_filename(row.case_id, session_id), data
