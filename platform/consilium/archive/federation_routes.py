"""HTTP adapters of the federated search and of retrieves with progress.

    GET  /api/federation/sources                  the archive and the PACS the caller may ask
    GET  /api/federation/studies?PatientID=&PatientName=&StudyDate=&AccessionNumber=
                                &ModalitiesInStudy=   one list over all of them, each study
                                                  labelled with its source; every source's state
    POST /api/federation/retrieve                 start fetching a PACS study into the archive
                                                  ({"source", "study_uid", "expected"?})
    GET  /api/federation/retrieve/{job_id}        the job's progress and outcome

400 without a filter; 403 for a PACS of another institution (recorded); a job is visible to
its requester only (404 otherwise, like a missing one).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import Route

from consilium.archive import federation, remote
from consilium.archive.access import Reader
from consilium.archive.federation import (
    FederatedAnswer,
    FederatedSearch,
    SourceKind,
    SourcePublic,
)
from consilium.archive.retrieval import Retrievals, RetrieveJobPublic
from consilium.audit import AuditAction, AuditOutcome
from consilium.errors import Forbidden, InvalidInput, NotFound
from consilium.http_api import json_endpoint, read_model
from consilium.identity.policy import Principal, may_query_pacs
from consilium.service import Runtime


class RetrieveRequest(BaseModel):
    """``POST /api/federation/retrieve``."""

    model_config = ConfigDict(extra="ignore")

    source: str = Field(description="a PACS source id from the search ('dimse:<AE>', "
                        "'dicomweb:<id>')")
    study_uid: str
    expected: int | None = Field(default=None, ge=0, description="instances the search showed")


def federation_routes(runtime: Runtime, retrievals: Retrievals) -> list[Route]:
    settings = runtime.settings
    searcher = FederatedSearch(settings, runtime.engine, runtime.access, runtime.audit)

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
        reader = Reader.of_connection(request)
        source = federation.source_by_id(settings, body.source)
        if source is None or source.kind is SourceKind.ARCHIVE:
            raise NotFound(f"no PACS source {body.source!r} is configured")
        if not may_query_pacs(principal, source.institution):
            detail: dict[str, Any] = {"what": "retrieve", "source": source.id}
            runtime.audit.submit(reader.actor, AuditAction.DENIED, AuditOutcome.DENIED,
                                 study_uid=body.study_uid, detail=detail)
            raise Forbidden("that PACS belongs to another institution; its studies are "
                            "shared through consult requests")
        job = retrievals.start(source, body.study_uid, reader.actor, body.expected)
        return job.public()

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
    ]
