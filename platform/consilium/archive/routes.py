"""HTTP adapters of the archive outside DICOMweb: the study list and the health check.

    GET /api/studies   the studies the caller may see (own institution and grants), newest
                       first, through the gate (which records the query)
    GET /healthz       status, version and the archive's counts (no patient data)
    GET /api/archive/studies/{study_uid}/marks
                       key images, measurements and graphic annotations of the study's Key
                       Object Selections, TID 1500 reports and presentation states, through
                       the gate (metadata of the study: 404 for foreign and missing alike)
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
from consilium.archive import catalog, marks_read
from consilium.archive.access import ArchiveAccess, Purpose, Reader
from consilium.archive.marks_read import ArchivedMarks
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


MARKS_OBJECTS_MAX = 500  # objects read for one answer (newest series last are kept)
MARKS_OBJECT_MAX_BYTES = 32 * 2**20  # a larger KOS, SR or state is not read


def study_marks(access: ArchiveAccess, reader: Reader, study_uid: str) -> ArchivedMarks:
    """What the study's KOS, TID 1500 SR and presentation states hold, for a reader who may
    read the study's metadata (the gate records the access or the refusal)."""
    found = access.require_instances(reader, study_uid, purpose=Purpose.METADATA,
                                     detail={"what": "archived marks"})
    if access.store is None:
        return ArchivedMarks()
    store = access.store
    objects = [i for i in found if i.sop_class_uid in marks_read.READ_CLASSES
               and i.size_bytes <= MARKS_OBJECT_MAX_BYTES][-MARKS_OBJECTS_MAX:]
    numbers = {i.sop_uid: (i.series_uid, i.instance_number) for i in found}
    return marks_read.read_files([store.path_of(i.path) for i in objects], numbers)


def archive_routes(engine: Engine, access: ArchiveAccess) -> list[Route]:

    async def health(_request: Request) -> JSONResponse:
        n_studies, n_instances = await anyio.to_thread.run_sync(catalog.counts, engine)
        return json_response(Health(status="ok", version=__version__, studies=n_studies,
                                    instances=n_instances))

    async def studies(request: Request, _principal: Principal) -> list[StudySummary]:
        return [StudySummary.model_validate(row) for row in await studies_for(access, request)]

    async def marks(request: Request, _principal: Principal) -> ArchivedMarks:
        return await anyio.to_thread.run_sync(
            study_marks, access, Reader.of_connection(request), request.path_params["study_uid"])

    return [
        Route("/healthz", health),
        Route("/api/archive/studies/{study_uid}/marks", json_endpoint(marks)),
        Route("/api/studies", json_endpoint(studies)),
    ]
