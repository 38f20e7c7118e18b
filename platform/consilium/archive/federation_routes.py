"""HTTP adapters of the federated search and of retrieves with progress.

    GET  /api/federation/sources                  the archive and the PACS the caller may ask
    GET  /api/federation/studies?PatientID=&PatientName=&StudyDate=&AccessionNumber=
                                &ModalitiesInStudy=   one list over all of them, each study
                                                  labelled with its source; every source's state
    POST /api/federation/retrieve                 start fetching a PACS study into the archive
                                                  ({"source", "study_uid", "expected"?})
    GET  /api/federation/retrieve/{job_id}        the job's progress and outcome
    POST /api/federation/case-studies             a PACS study for a draft consult request,
                                                  fetched when it is submitted
                                                  ({"case_id", "source", "study_uid", "expected"?})
    GET  /api/federation/case-studies?case_id=    a request's remote studies and their state

400 without a filter; 403 for a PACS of another institution (recorded); a job is visible to
its requester only (404 otherwise, like a missing one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import Route

from consilium.archive import federation, prefetch, remote
from consilium.archive.access import Reader
from consilium.archive.context import ArchiveContext
from consilium.archive.federation import (
    FederatedAnswer,
    FederatedSearch,
    SourceKind,
    SourcePublic,
)
from consilium.archive.retrieval import Retrievals, RetrieveJobPublic
from consilium.audit import AuditAction, AuditOutcome
from consilium.errors import Conflict, Forbidden, InvalidInput, NotFound
from consilium.http_api import json_endpoint, read_model
from consilium.identity.policy import Principal, may_query_pacs


@dataclass(frozen=True)
class CaseAccess:
    """What the consult domain says of a case for the caller (the application asks it):
    whom it goes to, and whether the caller may still add studies (a draft of theirs)."""

    target_institution: str
    may_add: bool


CaseAccessCheck = Callable[[Principal, int], CaseAccess]  # NotFound when not visible


class CaseStudyRequest(BaseModel):
    """``POST /api/federation/case-studies``."""

    model_config = ConfigDict(extra="ignore")

    case_id: int
    source: str
    study_uid: str
    expected: int | None = Field(default=None, ge=0)


class RetrieveRequest(BaseModel):
    """``POST /api/federation/retrieve``."""

    model_config = ConfigDict(extra="ignore")

    source: str = Field(description="a PACS source id from the search ('dimse:<AE>', "
                        "'dicomweb:<id>')")
    study_uid: str
    expected: int | None = Field(default=None, ge=0, description="instances the search showed")


def federation_routes(ctx: ArchiveContext, retrievals: Retrievals,
                      case_access: CaseAccessCheck) -> list[Route]:
    settings = ctx.settings
    searcher = FederatedSearch(settings, ctx.engine, ctx.access, ctx.audit)

    def usable_source(request: Request, principal: Principal, source_id: str,
                      study_uid: str) -> federation.Source:
        source = federation.source_by_id(settings, source_id)
        if source is None or source.kind is SourceKind.ARCHIVE:
            raise NotFound(f"no PACS source {source_id!r} is configured")
        if not may_query_pacs(principal, source.institution):
            detail: dict[str, Any] = {"what": "retrieve", "source": source.id}
            ctx.audit.submit(Reader.of_connection(request).actor, AuditAction.DENIED,
                             AuditOutcome.DENIED, study_uid=study_uid, detail=detail)
            raise Forbidden("that PACS belongs to another institution; its studies are "
                            "shared through consult requests")
        return source

    async def listing(request: Request, _principal: Principal) -> list[SourcePublic]:
        reader = Reader.of_connection(request)
        return [SourcePublic(id=s.id, kind=s.kind, institution=s.institution, label=s.label)
                for s in searcher.allowed_sources(reader)]

    async def search(request: Request, _principal: Principal) -> FederatedAnswer:
        filters = remote.StudyFilters.parse(request.query_params)
        if filters.empty:
            raise InvalidInput("give at least one filter: PatientID, PatientName, StudyDate, "
                               "AccessionNumber or ModalitiesInStudy")
        reader = Reader.of_connection(request)
        return await run_in_threadpool(searcher.search, reader, filters)

    async def retrieve(request: Request, principal: Principal) -> RetrieveJobPublic:
        body = await read_model(request, RetrieveRequest)
        remote.check_study_uid(body.study_uid)
        source = usable_source(request, principal, body.source, body.study_uid)
        job = retrievals.start(source, body.study_uid, Reader.of_connection(request).actor,
                               body.expected)
        return job.public()

    async def add_case_study(request: Request, principal: Principal
                             ) -> prefetch.CaseRemoteStudyPublic:
        body = await read_model(request, CaseStudyRequest)
        remote.check_study_uid(body.study_uid)
        access = await run_in_threadpool(case_access, principal, body.case_id)
        if not access.may_add:
            raise Conflict("studies are added to a draft request by its author")
        source = usable_source(request, principal, body.source, body.study_uid)
        return await run_in_threadpool(prefetch.add_remote_study, ctx.engine,
                                       body.case_id, source, body.study_uid, body.expected,
                                       Reader.of_connection(request).actor)

    async def case_studies(request: Request, principal: Principal
                           ) -> list[prefetch.CaseRemoteStudyPublic]:
        raw = request.query_params.get("case_id", "")
        if not raw.isdigit() or len(raw) > 12:
            raise InvalidInput("case_id must be a case number")
        await run_in_threadpool(case_access, principal, int(raw))
        return await run_in_threadpool(prefetch.remote_studies, ctx.engine, int(raw))

    async def progress(request: Request, principal: Principal) -> RetrieveJobPublic:
        job = retrievals.job(str(request.path_params["job_id"])[:32])
        if job is None or job.requester.subject != principal.subject:
            raise NotFound("no such retrieve")
        return job.public()

    return [
        Route("/api/federation/sources", json_endpoint(listing), methods=["GET"]),
        Route("/api/federation/studies", json_endpoint(search), methods=["GET"]),
        Route("/api/federation/retrieve", json_endpoint(retrieve), methods=["POST"]),
        Route("/api/federation/retrieve/{job_id}", json_endpoint(progress), methods=["GET"]),
        Route("/api/federation/case-studies", json_endpoint(add_case_study), methods=["POST"]),
        Route("/api/federation/case-studies", json_endpoint(case_studies), methods=["GET"]),
    ]
