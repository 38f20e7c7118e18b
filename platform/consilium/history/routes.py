"""HTTP adapters of the history: the audit search and case statistics for heads.

    GET /api/audit?patient_id=&study_uid=&actor=&action=&outcome=&since=&until=&limit=&offset=
                   &format=
                                  audit events of the caller's institution (heads, admins)
    GET /api/history/cases?status=&priority=&institution=&specialty=&person=&since=&until=
                                  the cases the head's institution sent or received
    GET /api/history/turnaround?...&group=institution,specialty,month
                                  turnaround medians and 90th percentiles

``format=csv`` exports either (the export itself is audited). Errors (answered by the web
edge): 400 a parameter that cannot be read, 401, 403 for callers who are not heads (admins
for the audit search).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from consilium.audit import AuditAction, AuditTrail
from consilium.consult.models import CaseBase
from consilium.errors import Forbidden, InvalidInput
from consilium.history.audit_search import AuditFilter, parse_audit_query, search_audit
from consilium.history.audit_search import to_csv as audit_csv
from consilium.history.consult_stats import CaseFilter, parse_grouping, turnaround
from consilium.history.consult_stats import cases as history_cases
from consilium.history.consult_stats import to_csv as history_csv
from consilium.http_api import json_response, signed_in, web_actor
from consilium.identity.models import Role
from consilium.identity.policy import Principal, may_read_audit

CSV = "text/csv; charset=utf-8"


class AuditEventPublic(BaseModel):
    """An event of ``GET /api/audit``."""

    at: datetime
    action: str
    outcome: str
    actor: str = Field(description="user subject or AE title")
    actor_name: str
    actor_institution: str
    source: str = Field(description="IP address or AE@host")
    channel: str = Field(description="web, api, dimse, socket")
    patient_id: str
    patient_name: str
    study_uid: str
    detail: str = Field(description="JSON: what was asked or done")


class CaseRow(CaseBase):
    """A case of ``GET /api/history/cases``."""

    id: int


class TurnaroundRow(BaseModel):
    """A group of ``GET /api/history/turnaround``: the grouping keys asked for (``group``),
    then the figures (hours from submission)."""

    target_institution: str | None = Field(default=None, description="when grouped by it")
    specialty: str | None = Field(default=None, description="when grouped by it")
    month: str | None = Field(default=None, description="YYYY-MM, when grouped by it")
    cases: int
    accepted: int
    concluded: int
    to_acceptance_median_h: float | None
    to_acceptance_p90_h: float | None
    to_conclusion_median_h: float | None
    to_conclusion_p90_h: float | None
    overdue: int


def audit_filter(request: Request, principal: Principal) -> AuditFilter:
    """The audit search of the query string, scoped to the caller's institution; 400 when a
    parameter cannot be read."""
    try:
        return parse_audit_query(request.query_params, principal.institution_id or "",
                                 principal.has_role(Role.ADMIN))
    except ValueError as exc:
        raise InvalidInput(f"bad parameter: {exc}") from exc


def audit_rows(engine: Engine, audit: AuditTrail, flt: AuditFilter) -> list[dict[str, Any]]:
    """The events matching ``flt``, after what is queued for the writer (the search sees what
    was just done). Blocking: call it in a worker thread."""
    audit.flush()
    return search_audit(engine, flt)


def case_filter(request: Request) -> CaseFilter:
    q = request.query_params

    def when(name: str) -> datetime | None:
        return datetime.fromisoformat(q[name]) if q.get(name) else None

    return CaseFilter(
        status=q.get("status", ""),
        priority=q.get("priority", ""), other_institution=q.get("institution", ""),
        specialty=q.get("specialty", ""), person=q.get("person", ""),
        since=when("since"), until=when("until"))


def history_routes(engine: Engine, audit: AuditTrail, time_zone: str = "UTC") -> list[Route]:
    """``time_zone``: the region's, in which the CSV exports write their instants."""

    async def api_audit(request: Request, principal: Principal) -> Response:
        if not may_read_audit(principal):
            raise Forbidden("forbidden")
        flt = audit_filter(request, principal)
        rows = await run_in_threadpool(audit_rows, engine, audit, flt)
        if request.query_params.get("format") == "csv":
            await run_in_threadpool(audit.record, web_actor(request, principal),
                                    AuditAction.EXPORT,
                                    detail={"what": "audit csv", "rows": len(rows)})
            return Response(audit_csv(rows, time_zone), media_type=CSV, headers={
                "Content-Disposition": 'attachment; filename="consilium-audit.csv"'})
        return json_response([AuditEventPublic.model_validate(r) for r in rows])

    async def api_history(request: Request, principal: Principal) -> Response:
        """Heads: the cases their institution sent or received (``/cases``) and turnaround
        figures (``/turnaround``); ``format=csv`` exports either."""
        if not principal.has_role(Role.HEAD):
            raise Forbidden("for heads of department")
        what = request.path_params["what"]
        try:
            flt = case_filter(request)
            grouping = parse_grouping(request.query_params.get("group"))
        except ValueError as exc:
            raise InvalidInput(f"bad parameter: {exc}") from exc
        rows = await run_in_threadpool(history_cases, engine, principal, flt)
        if what == "turnaround":
            data = turnaround(rows, group_by=grouping)
        else:
            data = [{k: (v.isoformat() if hasattr(v, "isoformat") else v)
                     for k, v in c.model_dump().items()} for c in rows]
        if request.query_params.get("format") == "csv":
            await run_in_threadpool(audit.record, web_actor(request, principal),
                                    AuditAction.EXPORT, detail={"what": f"history {what} csv"})
            return Response(history_csv(data, time_zone), media_type=CSV, headers={
                "Content-Disposition": 'attachment; filename="consilium-' + (
                    "turnaround" if what == "turnaround" else "cases") + '.csv"'})
        if what == "turnaround":
            return JSONResponse([TurnaroundRow.model_validate(row).model_dump(
                mode="json", exclude_unset=True) for row in data])
        return json_response([CaseRow.model_validate(c) for c in rows])

    return [
        Route("/api/audit", signed_in(api_audit)),
        Route("/api/history/{what:str}", signed_in(api_history)),
    ]
