"""HTTP adapters of the case documents (:mod:`consilium.consult.documents`):

    POST /api/cases/{id}/attachments?filename=NAME   body: the file's bytes, Content-Type its
                                                     media type (PDF, PNG, JPEG, DICOM) -> 201
    GET  /api/cases/{id}/attachments/{attachment_id} the file
    GET  /api/cases/{id}/conclusions/{version}.pdf   the signed conclusion as PDF

Errors as in :mod:`consilium.consult.routes`, plus 413 (over ``consult.attachment_max_mb``) and
415 (a type not accepted, or content that is not what the Content-Type says).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from consilium.consult import documents as docs
from consilium.consult import workflow as wf
from consilium.errors import PayloadTooLarge
from consilium.http_api import signed_in, web_actor
from consilium.identity.policy import Principal

Changed = Callable[[int, str], Awaitable[None]]


async def _limited_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is over ``limit`` (never buffered further)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the file is over the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the file is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def document_routes(ctx: wf.ConsultContext, changed: Changed) -> list[Route]:
    """The routes; ``changed`` notifies the parties (live) of a new attachment."""

    async def upload(request: Request, principal: Principal) -> Response:
        case_id = int(request.path_params["case_id"])
        docs.check_may_attach(ctx, principal, case_id)
        limit = docs._config(ctx).attachment_max_bytes
        data = await _limited_body(request, limit)
        attachment = docs.add_attachment(
            ctx, principal, case_id, filename=request.query_params.get("filename", ""),
            media_type=request.headers.get("content-type", ""), data=data,
            actor=web_actor(request, principal))
        await changed(case_id, "attachment")
        return JSONResponse(docs.attachment_json(attachment), status_code=201)

    async def download(request: Request, principal: Principal) -> Response:
        attachment, data = docs.read_attachment(
            ctx, principal, int(request.path_params["case_id"]),
            int(request.path_params["attachment_id"]), web_actor(request, principal))
        return Response(data, media_type=attachment.media_type, headers={
            "Content-Disposition": docs.content_disposition(attachment.filename),
            "X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-store"})

    async def conclusion_pdf(request: Request, principal: Principal) -> Response:
        case_id = int(request.path_params["case_id"])
        version = int(request.path_params["version"])
        data = docs.conclusion_pdf(ctx, principal, case_id, version, web_actor(request, principal))
        return Response(data, media_type="application/pdf", headers={
            "Content-Disposition": docs.content_disposition(docs.pdf_filename(case_id, version)),
            "X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-store"})

    return [
        Route("/api/cases/{case_id:int}/attachments", signed_in(upload),
              methods=["POST"]),
        Route("/api/cases/{case_id:int}/attachments/{attachment_id:int}",
              signed_in(download), methods=["GET"]),
        Route("/api/cases/{case_id:int}/conclusions/{version:int}.pdf",
              signed_in(conclusion_pdf), methods=["GET"]),
    ]
