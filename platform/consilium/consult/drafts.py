"""The conclusion being written: saved on the server as the consultant types, so nothing is
lost with a closed tab or another computer, and never overwritten silently (each save names the
draft version it started from; a stale one answers 409). Only the people who may sign see it: a
draft opinion does not reach the requester. Signing discards it."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from consilium.consult.cases import load_case, now, parties
from consilium.consult.context import ConsultContext
from consilium.consult.models import CaseStatus, ConclusionDraft, ConsultCase
from consilium.errors import Conflict, Forbidden, InvalidInput
from consilium.identity.policy import Principal, may_act_on_case

MAX_DRAFT_CHARS = 100_000  # per field: a long report is ~10k


# the signing action a draft prepares, by the case's state
SIGNING_ACTION = {CaseStatus.ACCEPTED: "conclude", CaseStatus.CONCLUDED: "amend",
                  CaseStatus.AMENDED: "amend"}


def _signing_action(principal: Principal, case: ConsultCase) -> str:
    action = SIGNING_ACTION.get(CaseStatus(case.status))
    if action is None:
        raise Conflict(f"no conclusion is being written for a case that is {case.status}")
    if not may_act_on_case(principal, action, parties(case)):
        raise Forbidden("only the consultant who signs sees and saves the draft conclusion")
    return action


def conclusion_draft(ctx: ConsultContext, principal: Principal,
                     case_id: int) -> ConclusionDraft | None:
    """The saved draft of the case's next conclusion (or amendment), if any."""
    with Session(ctx.engine) as session:
        case = load_case(session, principal, case_id)
        _signing_action(principal, case)
        return session.exec(select(ConclusionDraft).where(
            ConclusionDraft.case_id == case_id)).first()


def save_conclusion_draft(ctx: ConsultContext, principal: Principal, case_id: int, *,
                          version: int | None, findings: str, impression: str,
                          recommendations: str) -> ConclusionDraft:
    """Save the text; ``version`` is the draft version it was based on (None: there was none).
    A save based on another version than the stored one answers 409 and changes nothing."""
    for name, text in (("findings", findings), ("impression", impression),
                       ("recommendations", recommendations)):
        if len(text) > MAX_DRAFT_CHARS:
            raise InvalidInput(f"{name} is longer than {MAX_DRAFT_CHARS} characters")
    with Session(ctx.engine, expire_on_commit=False) as session:
        case = load_case(session, principal, case_id)
        _signing_action(principal, case)
        draft = session.exec(select(ConclusionDraft).where(
            ConclusionDraft.case_id == case_id).with_for_update()).first()
        stored = draft.version if draft is not None else None
        if version != stored:
            raise Conflict(f"the draft changed since you loaded it (version {stored}, yours "
                           f"{version}); reload it and merge your changes")
        if draft is None:
            draft = ConclusionDraft(case_id=case_id, findings="", impression="",
                                    recommendations="", author=principal.subject,
                                    updated_at=now(), version=0)
        draft.findings, draft.impression = findings, impression
        draft.recommendations = recommendations
        draft.author, draft.author_name = principal.subject, principal.display_name
        draft.updated_at = now()
        draft.version += 1
        session.add(draft)
        try:
            session.commit()
        except IntegrityError as exc:  # two first saves at once: one case, one draft
            raise Conflict("the draft was created meanwhile; reload it") from exc
        session.refresh(draft)
        return draft
