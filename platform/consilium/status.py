"""The admin's system status: is the archive taking studies, is there room, did anything fail to
be written, can people log in.

* DICOM nodes of the admin's institution (from the configuration) and each one's last
  association as the audit trail has it (the DIMSE handlers record every store, query and
  retrieve with the calling AE title as actor ``AE:<title>``);
* storage: the data folder's file system (used, free) and what the archive holds per
  institution;
* failed archive writes: signed conclusions whose PDF or SR could not be written into their
  study (``consult_archived_document`` rows with status ``failed``; the service retries them at
  every start), for cases the admin's institution sent or received;
* identity providers: each one's discovery document fetched now, with the time it took.

``GET /api/status`` (admins). Nothing here names a patient.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from datetime import datetime
from typing import Any

import anyio
import httpx
from pydantic import BaseModel, Field
from sqlalchemy import Engine, or_, select
from sqlmodel import Session, col
from sqlmodel import select as model_select
from starlette.requests import Request
from starlette.routing import Route

from consilium.archive import catalog
from consilium.audit import AuditEvent
from consilium.consult.models import ArchivedDocument, ConsultCase
from consilium.errors import Forbidden
from consilium.http_api import json_endpoint
from consilium.identity.models import Role
from consilium.identity.policy import Principal
from consilium.settings import OidcProvider, Settings

PROVIDER_TIMEOUT = 3.0  # seconds: a provider slower than this is as good as down for a login


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def dicom_nodes(settings: Settings, engine: Engine, institution_id: str) -> list[dict[str, Any]]:
    """The institution's configured nodes, each with its last association in the audit trail."""
    institution = settings.institution(institution_id)
    if institution is None:
        return []
    table = AuditEvent.__table__  # type: ignore[attr-defined]
    out = []
    with engine.connect() as conn:
        for node in institution.nodes:
            last = conn.execute(
                select(table.c.at, table.c.action, table.c.outcome, table.c.source)
                .where(table.c.actor == f"AE:{node.ae_title}")
                .order_by(table.c.at.desc(), table.c.id.desc()).limit(1)).first()
            out.append({
                "ae_title": node.ae_title, "kind": node.kind.value,
                "description": node.description, "host": node.host, "port": node.port,
                "last_at": _iso(last[0]) if last else None,
                "last_action": last[1] if last else None,
                "last_outcome": last[2] if last else None,
                "last_source": last[3] if last else None,
            })
    return out


def storage(settings: Settings, engine: Engine) -> dict[str, Any]:
    """The data folder's disk and the archive's share of it per institution."""
    folder = settings.data_dir.resolve()
    disk = shutil.disk_usage(folder)
    names = {i.id: i.name for i in settings.institutions}
    return {
        "data_dir": str(folder), "total_bytes": disk.total, "used_bytes": disk.used,
        "free_bytes": disk.free,
        "archive": [{"institution": inst, "institution_name": names.get(inst, inst),
                     "studies": n, "bytes": b}
                    for inst, (n, b) in sorted(catalog.usage(engine).items())],
    }


def failed_archive_writes(engine: Engine, institution_id: str, limit: int = 100
                          ) -> list[dict[str, Any]]:
    """Conclusion documents not written into their study, for the institution's cases."""
    with Session(engine) as session:
        rows = session.exec(
            model_select(ArchivedDocument, ConsultCase)
            .join(ConsultCase, col(ConsultCase.id) == col(ArchivedDocument.case_id))
            .where(col(ArchivedDocument.status) == "failed")
            .where(or_(col(ConsultCase.requester_institution) == institution_id,
                       col(ConsultCase.target_institution) == institution_id))
            .order_by(col(ArchivedDocument.at).desc()).limit(limit)).all()
    return [{"case_id": doc.case_id, "kind": doc.kind, "study_uid": doc.study_uid,
             "reason": doc.reason, "at": _iso(doc.at)} for doc, _case in rows]


async def provider_status(providers: list[OidcProvider],
                          http: httpx.AsyncClient | None = None) -> list[dict[str, Any]]:
    """Each provider's discovery document fetched now: reachable, and how fast."""
    client = http or httpx.AsyncClient(timeout=PROVIDER_TIMEOUT, follow_redirects=False)

    async def probe(provider: OidcProvider) -> dict[str, Any]:
        url = provider.issuer.rstrip("/") + "/.well-known/openid-configuration"
        started = time.monotonic()
        try:
            answer = await client.get(url, timeout=PROVIDER_TIMEOUT)
            ok = answer.status_code == 200 and answer.json().get("issuer") == provider.issuer
            error = "" if ok else f"HTTP {answer.status_code}"
        except (httpx.HTTPError, ValueError) as exc:
            ok, error = False, type(exc).__name__
        return {"id": provider.id, "name": provider.name, "issuer": provider.issuer,
                "reachable": ok, "error": error,
                "ms": round((time.monotonic() - started) * 1000)}

    try:
        return list(await asyncio.gather(*(probe(p) for p in providers)))
    finally:
        if http is None:
            await client.aclose()


class SystemStatus(BaseModel):
    """What ``GET /api/status`` answers an admin of an institution."""

    nodes: list[dict[str, Any]] = Field(description="the institution's DICOM nodes, each with "
                                        "its last association (from the audit trail)")
    storage: dict[str, Any] = Field(description="the data folder's disk: used, free; the "
                                    "archive's size per institution")
    failed_archive_writes: list[dict[str, Any]] = Field(
        description="conclusion documents of the institution's cases not yet in the archive")
    identity_providers: list[dict[str, Any]] = Field(
        description="each provider: reachable now, how fast, the error")
    ae_title: str
    dicom_port: int


def status_routes(settings: Settings, engine: Engine) -> list[Route]:
    async def api_status(_request: Request, principal: Principal) -> SystemStatus:
        if not principal.has_role(Role.ADMIN):
            raise Forbidden("for administrators")
        institution = principal.institution_id or ""

        def gather() -> dict[str, Any]:
            return {"nodes": dicom_nodes(settings, engine, institution),
                    "storage": storage(settings, engine),
                    "failed_archive_writes": failed_archive_writes(engine, institution)}

        found = await anyio.to_thread.run_sync(gather)
        found["identity_providers"] = await provider_status(
            settings.effective_identity_providers)
        found["ae_title"] = settings.dicom_ae_title
        found["dicom_port"] = settings.dicom_port
        return SystemStatus.model_validate(found)

    return [Route("/api/status", json_endpoint(api_status))]
