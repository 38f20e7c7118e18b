"""What a clinician's home page lists beside the live inbox: the cases they finished.

A concluded case leaves the consultant's inbox (which holds what is still to do) but not their
work: they come back to it to amend, to answer a message, to show a colleague. This is their
list of it: the cases they concluded (and the ones they amended or that were closed after),
newest conclusion first. ``GET /api/worklist/finished``.
"""

from __future__ import annotations

from sqlalchemy import Engine
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import Route

from consilium.consult.cases import parties
from consilium.consult.models import CasePublic, CaseStatus, ConsultCase
from consilium.consult.workflow import allowed_actions
from consilium.http_api import json_endpoint
from consilium.identity.policy import Principal, may_see_case

FINISHED = (CaseStatus.CONCLUDED, CaseStatus.AMENDED, CaseStatus.CLOSED)
LIMIT = 100


def finished_cases(engine: Engine, principal: Principal, limit: int = LIMIT) -> list[ConsultCase]:
    """The cases ``principal`` concluded, newest conclusion first, as the policy lets them see."""
    stmt = (select(ConsultCase)
            .where(ConsultCase.assignee_subject == principal.subject)
            .where(col(ConsultCase.status).in_([s.value for s in FINISHED]))
            .order_by(col(ConsultCase.concluded_at).desc(), col(ConsultCase.id).desc())
            .limit(limit))
    with Session(engine) as session:
        return [c for c in session.exec(stmt) if may_see_case(principal, parties(c))]


def worklist_routes(engine: Engine) -> list[Route]:
    async def finished(_request: Request, principal: Principal) -> list[CasePublic]:
        rows = await run_in_threadpool(finished_cases, engine, principal)
        return [CasePublic.model_validate(c, update={
            "allowed_actions": allowed_actions(principal, c)}) for c in rows]

    return [Route("/api/worklist/finished", json_endpoint(finished))]
