"""HTTP adapters of the archive outside DICOMweb: the study list and the health check.

    GET /api/studies   the studies the caller may see (own institution and grants), newest
                       first, through the gate (which records the query)
    GET /healthz       status, version and the archive's counts (no patient data)
"""

from __future__ import annotations

from typing import Any

import anyio
from pydantic import BaseModel, Field
from sqlalchemy import Engine
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from consilium import __version__
from consilium.archive import catalog
from consilium.archive.access import ArchiveAccess, Reader
from consilium.http_api import json_endpoint, json_response
from consilium.identity.policy import Principal


class StudySummary(BaseModel):
    """A study of ``GET /api/studies``."""

    study_uid: str
    study_date: str | None
    description: str | None
    modalities: str | None = Field(description="backslash-separated modality codes")
    num_series: int
    num_instances: int
    accession_number: str | None
    institution_id: str = Field(description="the institution that owns the study")
    patient_id: str | None
    patient_name: str | None


class Health(BaseModel):
    """``GET /healthz``."""

    status: str
    version: str
    studies: int
    instances: int


async def studies_for(access: ArchiveAccess, request: Request) -> list[dict[str, Any]]:
    """The caller's study list through the gate (which records the query)."""
    return await anyio.to_thread.run_sync(access.visible_studies,
                                          Reader.of_connection(request, "web"))


def archive_routes(engine: Engine, access: ArchiveAccess) -> list[Route]:

    async def health(_request: Request) -> JSONResponse:
        n_studies, n_instances = await anyio.to_thread.run_sync(catalog.counts, engine)
        return json_response(Health(status="ok", version=__version__, studies=n_studies,
                                    instances=n_instances))

    async def studies(request: Request, _principal: Principal) -> list[StudySummary]:
        return [StudySummary.model_validate(row) for row in await studies_for(access, request)]

    return [
        Route("/healthz", health),
        Route("/api/studies", json_endpoint(studies)),
    ]
