"""HTTP adapters of the remote PACS: a clinician finds studies still only in their own
hospital's PACS and fetches them into the archive.

    GET  /api/remote/pacs                                     the PACS nodes the caller may query
    GET  /api/remote/pacs/{ae_title}/studies?PatientID=&PatientName=&StudyDate=
                                             &AccessionNumber=&ModalitiesInStudy=
                                                              study-level C-FIND (a filter needed)
    POST /api/remote/pacs/{ae_title}/studies/{study_uid}/retrieve
                                                              C-MOVE of the study to our AE

Errors: 400 invalid (or no filter), 401, 403 (another institution's PACS), 404 (unknown AE
title), 502 (the PACS cannot be reached, refuses the association or fails) with
``{"error": reason}``. Every query and retrieve is audited, refusals and failures included.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import Route

from consilium.archive import remote
from consilium.archive.context import ArchiveContext
from consilium.audit import AuditAction, AuditOutcome
from consilium.errors import Forbidden, InvalidInput, NotFound
from consilium.http_api import json_endpoint, web_actor
from consilium.identity.policy import Principal, may_query_pacs
from consilium.settings import DicomNode, Institution, NodeKind


class PacsNode(BaseModel):
    """A hospital PACS the caller may query."""

    ae_title: str
    institution: str
    institution_name: str
    description: str


class RemoteStudyPublic(BaseModel):
    """A study-level C-FIND answer of a PACS."""

    study_uid: str
    patient_id: str
    patient_name: str
    patient_birth_date: str
    study_date: str
    description: str
    accession: str
    modalities: list[str]
    series: int | None
    instances: int | None
    in_archive: bool = Field(description="already in the archive")


class RetrieveOutcome(BaseModel):
    """What the PACS reported for the C-MOVE of a study into the archive."""

    study_uid: str
    completed: int
    failed: int
    warning: int
    in_archive: bool


def pacs_nodes(ctx: ArchiveContext) -> list[tuple[Institution, DicomNode]]:
    """Every configured PACS the archive can open an association to."""
    return [(inst, node) for inst in ctx.settings.institutions for node in inst.nodes
            if node.kind is NodeKind.PACS and node.reachable]


def remote_routes(ctx: ArchiveContext) -> list[Route]:
    settings = ctx.settings
    audit = ctx.audit

    def allowed_node(request: Request, principal: Principal, what: str,
                     study_uid: str = "") -> DicomNode:
        """The PACS named in the path, if the caller may use it; a refusal is audited (written
        before the answer: call it in a worker thread)."""
        ae_title = request.path_params["ae_title"]
        found = next(((i, n) for i, n in pacs_nodes(ctx) if n.ae_title == ae_title), None)
        if found is None:
            raise NotFound(f"no PACS {ae_title!r} is configured")
        institution, node = found
        if not may_query_pacs(principal, institution.id):
            audit.record(web_actor(request, principal), AuditAction.DENIED, AuditOutcome.DENIED,
                         study_uid=study_uid,
                         detail={"what": what, "pacs": node.ae_title,
                                 "pacs_institution": institution.id})
            raise Forbidden(f"PACS {ae_title} belongs to another institution; its studies "
                            "are shared through consult requests"
                            if principal.is_clinician else
                            "querying a PACS is for clinicians of its institution")
        return node

    async def listing(request: Request, principal: Principal) -> list[PacsNode]:
        return [PacsNode(ae_title=node.ae_title, institution=inst.id,
                         institution_name=inst.name, description=node.description)
                for inst, node in pacs_nodes(ctx) if may_query_pacs(principal, inst.id)]

    async def find(request: Request, principal: Principal) -> list[RemoteStudyPublic]:
        node = await run_in_threadpool(allowed_node, request, principal, "remote query")
        filters = remote.StudyFilters.parse(request.query_params)
        if filters.empty:
            raise InvalidInput("give at least one filter: PatientID, PatientName, StudyDate, "
                               "AccessionNumber or ModalitiesInStudy")
        keys = filters.keys()
        exact_id = filters.patient_id if not set("*?") & set(filters.patient_id) else ""
        detail: dict[str, Any] = {"service": "C-FIND SCU", "pacs": node.ae_title, "keys": keys}

        def run() -> list[remote.RemoteStudy]:
            return remote.mark_in_archive(
                ctx.engine, remote.find_remote_studies(settings, node, filters))

        try:
            found = await run_in_threadpool(run)
        except remote.RemotePacsError as exc:
            audit.record(web_actor(request, principal), AuditAction.QUERY, AuditOutcome.FAILURE,
                         patient_id=exact_id, detail={**detail, "error": exc.message})
            raise
        audit.record(web_actor(request, principal), AuditAction.QUERY, patient_id=exact_id,
                     detail={**detail, "matches": len(found)})
        return [RemoteStudyPublic.model_validate(s.as_json()) for s in found]

    async def retrieve(request: Request, principal: Principal) -> RetrieveOutcome:
        study_uid = remote.check_study_uid(request.path_params["study_uid"])
        node = await run_in_threadpool(allowed_node, request, principal, "remote retrieve",
                                       study_uid)
        detail: dict[str, Any] = {"service": "C-MOVE SCU", "pacs": node.ae_title,
                                  "destination": settings.dicom_ae_title}

        def run() -> remote.RetrieveResult:
            result = remote.retrieve_remote_study(settings, node, study_uid)
            indexed = remote.indexed_study_uids(ctx.engine, [study_uid])
            return remote.RetrieveResult(result.study_uid, result.completed, result.failed,
                                         result.warning, result.status, study_uid in indexed)

        try:
            result = await run_in_threadpool(run)
        except remote.RemotePacsError as exc:
            audit.record(web_actor(request, principal), AuditAction.FETCH, AuditOutcome.FAILURE,
                         study_uid=study_uid, detail={**detail, "error": exc.message})
            raise
        ok = result.in_archive and result.failed == 0
        audit.record(web_actor(request, principal), AuditAction.FETCH,
                     AuditOutcome.SUCCESS if ok else AuditOutcome.FAILURE, study_uid=study_uid,
                     detail={**detail, "completed": result.completed, "failed": result.failed,
                             "warning": result.warning, "status": f"0x{result.status:04X}"})
        return RetrieveOutcome.model_validate(result.as_json())

    return [
        Route("/api/remote/pacs", json_endpoint(listing), methods=["GET"]),
        Route("/api/remote/pacs/{ae_title}/studies", json_endpoint(find), methods=["GET"]),
        Route("/api/remote/pacs/{ae_title}/studies/{study_uid}/retrieve", json_endpoint(retrieve),
              methods=["POST"]),
    ]
