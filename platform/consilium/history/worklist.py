"""What a clinician's home page lists beside the live inbox: the cases they finished.

A concluded case leaves the consultant's inbox (which holds what is still to do) but not their
work: they come back to it to amend, to answer a message, to show a colleague. This is their
list of it: the cases they concluded (and the ones they amended or that were closed after),
newest conclusion first. ``GET /api/worklist/finished``.
"""

from __future__ import annotations

from typing import Any

import anyio
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from consilium.consult.models import CaseStatus, ConsultCase
from consilium.consult.workflow import parties
from consilium.identity.policy import Principal, may_see_case
from consilium.identity.web import current_principal

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
    async def finished(request: Request) -> JSONResponse:
        principal = current_principal(request)
        if not principal.authenticated:
            return JSONResponse({"error": "not authenticated"}, 401)
        rows = await anyio.to_thread.run_sync(finished_cases, engine, principal)
        body: list[dict[str, Any]] = [
            {k: (v.isoformat() if hasattr(v, "isoformat") else v)
             for k, v in c.model_dump().items()} for c in rows]
        return JSONResponse(body)

    return [Route("/api/worklist/finished", finished)]
