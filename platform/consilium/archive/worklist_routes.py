"""HTTP adapters of the Modality Worklist: the registrar books and edits scheduled procedures
and sees what arrived for them (and what contradicts them).

    GET   /api/scheduled-procedures?from=YYYYMMDD&to=YYYYMMDD&status=&match=
                                                the caller's institution's items, with their
                                                match state and last MPPS status
    POST  /api/scheduled-procedures             book one (ProcedureCreate)
    GET   /api/scheduled-procedures/{id}        one item
    PATCH /api/scheduled-procedures/{id}        edit or cancel it (ProcedureUpdate, version)
    GET   /api/scheduled-procedures/{id}/steps  its performed procedure steps (MPPS)

Who: :func:`consilium.identity.policy.may_schedule` (clinicians of the institution; 403
otherwise). Another institution's item is answered like a missing one (404, recorded at the
edge). Every booking and edit is audited (``schedule``), every list (``query``).
"""

from __future__ import annotations

import re

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import Route

from consilium.archive import mpps, worklist
from consilium.archive.context import ArchiveContext
from consilium.archive.worklist_models import (
    MatchState,
    PerformedStepPublic,
    ProcedureCreate,
    ProcedurePublic,
    ProcedureStatus,
    ProcedureUpdate,
    ScheduledProcedure,
)
from consilium.audit import AuditAction
from consilium.errors import Forbidden, InvalidInput
from consilium.http_api import json_endpoint, read_model, web_actor
from consilium.identity.policy import Principal, may_schedule

_DATE = re.compile(r"^\d{8}$")


def _institution(principal: Principal) -> str:
    institution = principal.institution_id or ""
    if not may_schedule(principal, institution):
        raise Forbidden("scheduled procedures are for clinicians of the institution")
    return institution


def _id(request: Request) -> int:
    raw = request.path_params["procedure_id"]
    if not str(raw).isdigit() or len(str(raw)) > 12:
        raise InvalidInput("not a procedure id")
    return int(raw)


def worklist_routes(ctx: ArchiveContext) -> list[Route]:
    engine = ctx.engine
    audit = ctx.audit

    def record(request: Request, principal: Principal, item: ScheduledProcedure,
               what: str) -> None:
        audit.submit(web_actor(request, principal), AuditAction.SCHEDULE,
                     patient_id=item.patient_id, patient_name=item.patient_name,
                     study_uid=item.study_uid, owner=item.institution_id,
                     detail={"what": what, "accession": item.accession_number,
                             "modality": item.modality, "date": item.scheduled_date,
                             "status": item.status})

    async def listing(request: Request, principal: Principal) -> list[ProcedurePublic]:
        institution = _institution(principal)
        q = request.query_params
        date_from, date_to = q.get("from", ""), q.get("to", "")
        for value in (date_from, date_to):
            if value and not _DATE.match(value):
                raise InvalidInput("from/to must be YYYYMMDD")
        status = q.get("status", "")
        if status and status not in {s.value for s in ProcedureStatus}:
            raise InvalidInput("unknown status")
        match = q.get("match", "")
        if match and match not in {m.value for m in MatchState}:
            raise InvalidInput("match must be waiting, matched or mismatch")

        def run() -> list[ProcedurePublic]:
            rows = worklist.procedures(engine, institution, date_from=date_from,
                                       date_to=date_to, status=status)
            answers = worklist.public(engine, rows)
            return [a for a in answers if not match or a.match == match]

        found = await run_in_threadpool(run)
        audit.submit(web_actor(request, principal), AuditAction.QUERY, detail={
            "what": "scheduled procedures", "from": date_from, "to": date_to,
            "status": status, "match": match, "results": len(found)})
        return found

    async def create(request: Request, principal: Principal) -> ProcedurePublic:
        institution = _institution(principal)
        body = await read_model(request, ProcedureCreate)
        row = await run_in_threadpool(worklist.create_procedure, engine, institution, body,
                                      principal.subject)
        record(request, principal, row, "booked")
        return (await run_in_threadpool(worklist.public, engine, [row]))[0]

    async def one(request: Request, principal: Principal) -> ProcedurePublic:
        institution = _institution(principal)
        row = await run_in_threadpool(worklist.procedure, engine, institution, _id(request))
        answer = (await run_in_threadpool(worklist.public, engine, [row]))[0]
        audit.submit(web_actor(request, principal), AuditAction.QUERY,
                     patient_id=row.patient_id, patient_name=row.patient_name,
                     study_uid=row.study_uid, owner=row.institution_id,
                     detail={"what": "scheduled procedure", "id": row.id})
        return answer

    async def edit(request: Request, principal: Principal) -> ProcedurePublic:
        institution = _institution(principal)
        procedure_id = _id(request)
        body = await read_model(request, ProcedureUpdate)
        row = await run_in_threadpool(worklist.update_procedure, engine, institution,
                                      procedure_id, body)
        record(request, principal, row, "cancelled" if row.status == "cancelled" else "edited")
        return (await run_in_threadpool(worklist.public, engine, [row]))[0]

    async def steps(request: Request, principal: Principal) -> list[PerformedStepPublic]:
        institution = _institution(principal)
        procedure_id = _id(request)
        row = await run_in_threadpool(worklist.procedure, engine, institution, procedure_id)
        found = await run_in_threadpool(mpps.steps_of, engine, institution, procedure_id)
        audit.submit(web_actor(request, principal), AuditAction.QUERY,
                     patient_id=row.patient_id, study_uid=row.study_uid,
                     owner=row.institution_id,
                     detail={"what": "performed procedure steps", "id": procedure_id})
        return [mpps.step_public(s) for s in found]

    base = "/api/scheduled-procedures"
    return [
        Route(base, json_endpoint(listing), methods=["GET"]),
        Route(base, json_endpoint(create), methods=["POST"]),
        Route(base + "/{procedure_id}", json_endpoint(one), methods=["GET"]),
        Route(base + "/{procedure_id}", json_endpoint(edit), methods=["PATCH"]),
        Route(base + "/{procedure_id}/steps", json_endpoint(steps), methods=["GET"]),
    ]
