"""What the parties of consult cases read: the inbox, their own requests, one case with its
parts, its history and its timeline. Every read of one case loads it for the reader first
(404 for a case they may not see, as for one that does not exist)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlmodel import Session, col, select

from consilium.archive.marks import KeyImage
from consilium.audit import AuditAction, AuditEvent, AuditOutcome
from consilium.consult.annotations import list_key_images
from consilium.consult.archiving import archived_of
from consilium.consult.attachments import attachments_of
from consilium.consult.cases import case_study_uids, load_case, parties
from consilium.consult.context import ConsultContext
from consilium.consult.models import (
    ArchivedDocument,
    CaseAttachment,
    CaseEvent,
    CaseMessage,
    CaseStatus,
    CaseStudy,
    Conclusion,
    ConsultCase,
    Priority,
)
from consilium.consult.workflow import allowed_actions
from consilium.identity.models import Role
from consilium.identity.policy import Principal, may_see_case

MAX_REQUESTS = 200  # of one's own requests in the case list, newest first


def history(ctx: ConsultContext, principal: Principal, case_id: int) -> list[CaseEvent]:
    with Session(ctx.engine) as session:
        load_case(session, principal, case_id)
        return list(session.exec(select(CaseEvent).where(CaseEvent.case_id == case_id)
                                 .order_by(col(CaseEvent.at), col(CaseEvent.id))))


# what the audit trail knows of the case's images, shown in its timeline
IMAGE_ACCESS_ACTIONS = {AuditAction.VIEW.value: "viewed", AuditAction.RETRIEVE.value: "retrieved"}


@dataclass(frozen=True)
class TimelineEntry:
    """One line of a case's timeline: a case event, or an access to its images."""

    at: datetime
    kind: str
    actor: str
    actor_name: str
    actor_institution: str
    from_status: str = ""
    to_status: str = ""
    detail: str = ""
    study_uid: str = ""
    channel: str = ""


def timeline(ctx: ConsultContext, principal: Principal, case_id: int) -> list[TimelineEntry]:
    """The case's events merged with who opened or retrieved its studies since it was created
    (from the audit trail), in time order: what a head reviews as "who did what, when"."""
    ctx.audit.flush()  # the views queued just before are part of it
    with Session(ctx.engine) as session:
        case = load_case(session, principal, case_id)
        uids = case_study_uids(session, case_id)
        events = session.exec(select(CaseEvent).where(CaseEvent.case_id == case_id)
                              .order_by(col(CaseEvent.at), col(CaseEvent.id))).all()
        entries = [TimelineEntry(at=e.at, kind=e.kind, actor=e.actor, actor_name=e.actor_name,
                                 actor_institution=e.actor_institution,
                                 from_status=e.from_status, to_status=e.to_status,
                                 detail=e.detail) for e in events]
        accesses = session.exec(select(AuditEvent).where(
            col(AuditEvent.study_uid).in_(uids),
            col(AuditEvent.action).in_(list(IMAGE_ACCESS_ACTIONS)),
            AuditEvent.outcome == AuditOutcome.SUCCESS.value,
            col(AuditEvent.at) >= case.created_at).order_by(col(AuditEvent.at))).all()
    entries += [TimelineEntry(at=a.at, kind=IMAGE_ACCESS_ACTIONS[a.action], actor=a.actor,
                              actor_name=a.actor_name, actor_institution=a.actor_institution,
                              detail=a.detail, study_uid=a.study_uid, channel=a.channel)
                for a in accesses]
    entries.sort(key=lambda e: _sort_time(e.at))
    return entries


def conclusions(ctx: ConsultContext, principal: Principal, case_id: int) -> list[Conclusion]:
    with Session(ctx.engine) as session:
        load_case(session, principal, case_id)
        return list(session.exec(select(Conclusion).where(Conclusion.case_id == case_id)
                                 .order_by(col(Conclusion.version))))


def inbox(ctx: ConsultContext, principal: Principal) -> list[ConsultCase]:
    """The target side's open cases, most urgent and soonest due first; for the requester
    side, their own cases, newest first."""
    with Session(ctx.engine) as session:
        if principal.has_role(Role.CONSULTANT) or principal.has_role(Role.HEAD):
            incoming = list(session.exec(select(ConsultCase).where(
                ConsultCase.target_institution == (principal.institution_id or ""),
                col(ConsultCase.status).in_([s.value for s in (
                    CaseStatus.SUBMITTED, CaseStatus.ACCEPTED, CaseStatus.RETURNED)]))))
        else:
            incoming = []
        visible = [c for c in incoming if may_see_case(principal, parties(c))
                   and (not c.target_subject or c.target_subject == principal.subject
                        or principal.has_role(Role.HEAD))]
    visible.sort(key=lambda c: (Priority(c.priority).rank, _sort_time(c.due_at)))
    return visible


def _sort_time(value: datetime | None) -> datetime:
    if value is None:
        return datetime.max.replace(tzinfo=UTC)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def requests_of(ctx: ConsultContext, principal: Principal) -> list[ConsultCase]:
    """The caller's own requests, newest first."""
    with Session(ctx.engine) as session:
        return list(session.exec(select(ConsultCase).where(
            ConsultCase.requester_subject == principal.subject)
            .order_by(col(ConsultCase.created_at).desc()).limit(MAX_REQUESTS)))


@dataclass(frozen=True)
class CaseView:
    """One case as a party sees it: the case, what it links, its thread, what was signed and
    archived, its files, and what the reader may do with it now."""

    case: ConsultCase
    studies: list[CaseStudy]
    messages: list[CaseMessage]
    conclusions: list[Conclusion]
    archived: dict[int, list[ArchivedDocument]]  # by conclusion id
    attachments: list[CaseAttachment]
    allowed_actions: list[str]
    key_images: list[KeyImage]


def case_view(ctx: ConsultContext, principal: Principal, case_id: int) -> CaseView:
    with Session(ctx.engine) as session:
        case = load_case(session, principal, case_id)
        studies = list(session.exec(select(CaseStudy).where(CaseStudy.case_id == case_id)
                                    .order_by(col(CaseStudy.id))))
        messages = list(session.exec(select(CaseMessage).where(
            CaseMessage.case_id == case_id).order_by(col(CaseMessage.at))))
        key_images = list_key_images(session, case_id)
    return CaseView(case, studies, messages, conclusions(ctx, principal, case_id),
                    archived_of(ctx, case_id), attachments_of(ctx, principal, case_id),
                    allowed_actions(principal, case), key_images)
