"""HTTP adapters of the case documents (:mod:`consilium.consult.attachments`,
:mod:`consilium.consult.conclusion_pdf`):

    POST /api/cases/{id}/attachments?filename=NAME   body: the file's bytes, Content-Type its
                                                     media type (PDF, PNG, JPEG, DICOM) -> 201
                                                     AttachmentPublic
    GET  /api/cases/{id}/attachments/{attachment_id} the file
    GET  /api/cases/{id}/conclusions/{version}.pdf   the signed conclusion as PDF

Errors as in :mod:`consilium.consult.routes`, plus 413 (over ``consult.attachment_max_mb``) and
415 (a type not accepted, or content that is not what the Content-Type says).
"""

from __future__ import annotations

import re
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from consilium.consult import attachments as att
from consilium.consult.conclusion_pdf import conclusion_pdf, pdf_filename
from consilium.consult.context import ConsultContext
from consilium.consult.models import AttachmentPublic, CaseAttachment
from consilium.http_api import json_response, read_limited, signed_in, web_actor
from consilium.identity.policy import Principal

_SAFE = re.compile(r"[^A-Za-z0-9._-]")
PRIVATE = {"X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-store"}


def content_disposition(filename: str) -> str:
    """``attachment`` with an ASCII fallback and the RFC 5987 UTF-8 name."""
    fallback = _SAFE.sub("_", filename) or "attachment"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def attachment_public(attachment: CaseAttachment) -> AttachmentPublic:
    return AttachmentPublic.model_validate(attachment, from_attributes=True)


def document_routes(ctx: ConsultContext) -> list[Route]:

    async def upload(request: Request, principal: Principal) -> Response:
        case_id = int(request.path_params["case_id"])
        await run_in_threadpool(att.check_may_attach, ctx, principal, case_id)
        data = await read_limited(request, ctx.files.attachment_max_bytes, "the file")
        attachment = await run_in_threadpool(
            att.add_attachment, ctx, principal, case_id,
            filename=request.query_params.get("filename", ""),
            media_type=request.headers.get("content-type", ""), data=data,
            actor=web_actor(request, principal))
        return json_response(attachment_public(attachment), status_code=201)

    async def download(request: Request, principal: Principal) -> Response:
        attachment, data = await run_in_threadpool(
            att.read_attachment, ctx, principal, int(request.path_params["case_id"]),
            int(request.path_params["attachment_id"]), web_actor(request, principal))
        return Response(data, media_type=attachment.media_type, headers={
            "Content-Disposition": content_disposition(attachment.filename), **PRIVATE})

    async def pdf(request: Request, principal: Principal) -> Response:
        case_id = int(request.path_params["case_id"])
        version = int(request.path_params["version"])
        data = await run_in_threadpool(conclusion_pdf, ctx, principal, case_id, version,
                                       web_actor(request, principal))
        return Response(data, media_type="application/pdf", headers={
            "Content-Disposition": content_disposition(pdf_filename(case_id, version)),
            **PRIVATE})

    return [
        Route("/api/cases/{case_id:int}/attachments", signed_in(upload), methods=["POST"]),
        Route("/api/cases/{case_id:int}/attachments/{attachment_id:int}", signed_in(download),
              methods=["GET"]),
        Route("/api/cases/{case_id:int}/conclusions/{version:int}.pdf", signed_in(pdf),
              methods=["GET"]),
    ]
