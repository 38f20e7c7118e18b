"""What every part of the consult domain does with a case: load it for a caller (404 for a
case they may not see, exactly as for one that does not exist), name its parties for the
policy, put an event in its history, and tell the parties of a change."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, col, select

from consilium.audit import Actor
from consilium.consult.context import ConsultContext
from consilium.consult.models import CaseEvent, CaseStudy, Conclusion, ConsultCase, EventKind
from consilium.errors import NotFound
from consilium.identity.policy import CaseParties, Principal, may_see_case


def now() -> datetime:
    return datetime.now(UTC)


def aware(value: datetime) -> datetime:
    """A stored time as UTC (SQLite gives them back without a zone)."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def parties(case: ConsultCase) -> CaseParties:
    return CaseParties(case.requester_subject, case.requester_institution,
                       case.target_institution, case.target_subject, case.assignee_subject,
                       submitted=case.submitted_at is not None)


def actor_of(principal: Principal) -> Actor:
    """The caller as the audit names them when the adapter gave no actor (no address)."""
    return Actor(principal.subject, principal.display_name, principal.institution_id or "")


def load_case(session: Session, principal: Principal, case_id: int) -> ConsultCase:
    case = session.get(ConsultCase, case_id)
    if case is None or not may_see_case(principal, parties(case)):
        raise NotFound("no such case")
    return case


def record_event(session: Session, case: ConsultCase, principal: Principal, kind: EventKind,
                 from_status: str = "", detail: dict[str, Any] | None = None) -> None:
    """A line of the case's history, committed with the change it describes."""
    session.add(CaseEvent(
        case_id=case.id or 0, at=now(), kind=kind.value, actor=principal.subject,
        actor_name=principal.display_name, actor_institution=principal.institution_id or "",
        from_status=from_status, to_status=case.status,
        detail=json.dumps(detail, ensure_ascii=False) if detail else ""))


def case_study_uids(session: Session, case_id: int) -> list[str]:
    return list(session.exec(select(CaseStudy.study_uid).where(CaseStudy.case_id == case_id)
                             .order_by(col(CaseStudy.id))))


def signed_version(ctx: ConsultContext, case_id: int, version: int
                   ) -> tuple[ConsultCase, Conclusion, list[str]]:
    """A signed conclusion with its case and the case's studies (no policy: the callers
    checked the reader, or act for the author)."""
    with Session(ctx.engine) as session:
        case = session.get(ConsultCase, case_id)
        conclusion = session.exec(select(Conclusion).where(
            Conclusion.case_id == case_id, Conclusion.version == version)).first()
        if case is None or conclusion is None:
            raise NotFound("no such conclusion")
        uids = case_study_uids(session, case_id)
    return case, conclusion, uids


def notify(ctx: ConsultContext, case: ConsultCase, what: str) -> None:
    """Tell the parties (live) that ``case`` changed; called after the commit."""
    ctx.notify(case, what)
