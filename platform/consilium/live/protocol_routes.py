"""HTTP adapters of the consilium's protocol and of replay: parse, call one domain function (in
a worker thread), deliver the change it made (:meth:`consilium.live.hub.LiveHub.announce`),
answer.

    GET  /api/consilia/{id}/protocol             the protocol (status, editor, text, versions,
                                                 signatures, pdf_url, archived)
    GET  /api/consilia/{id}/protocol/versions    every saved version with its text
    PUT  /api/consilia/{id}/protocol             {text, version}: save (the editor), on version
    POST /api/consilia/{id}/protocol/pen         {subject}: hand the pen (the chair)
    POST /api/consilia/{id}/protocol/submit      {version}: put it to signing (the chair)
    POST /api/consilia/{id}/protocol/sign        {version, agree, dissent?}: sign (a member)
    POST /api/consilia/{id}/protocol/reopen      back to writing (the chair)
    POST /api/consilia/{id}/protocol/close       close it: PDF to the case, the archive (chair)
    GET  /api/consilia/{id}/protocol.pdf         the closed protocol's PDF
    GET  /api/consilia/{id}/replay               {session, last_seq, timeline, truncated}
    GET  /api/consilia/{id}/replay/state?seq=n   {seq, state}: the state after change n

Errors as for sessions (:mod:`.routes`): 404 for a session that is not the caller's and one
that does not exist alike (recorded at the edge), checked before the body is read; 403 not the
chair or not the editor; 409 the protocol's or the session's status does not allow it, or it
changed meanwhile (a save on an older version).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from consilium.audit import AuditAction
from consilium.consult.context import ConsultContext
from consilium.consult.document_routes import PRIVATE, content_disposition
from consilium.errors import InvalidInput
from consilium.http_api import json_endpoint, signed_in, web_actor
from consilium.identity.policy import Principal
from consilium.live import protocol, protocol_close, sessions
from consilium.live.events import PROTOCOL_MAX
from consilium.live.hub import LiveHub
from consilium.live.replay import Replays, timeline
from consilium.live.routes import _body, _json
from consilium.live.sequencer import last_seq_of


class SaveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(max_length=PROTOCOL_MAX)
    version: int = Field(ge=0, description="the saved version the text was made on")


class PenBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subject: str = Field(min_length=1, max_length=256)


class VersionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1)


class SignBody(VersionBody):
    agree: bool
    dissent: str = Field(default="", max_length=protocol.DISSENT_MAX)


def protocol_routes(ctx: sessions.LiveContext, hub: LiveHub,
                    consult: ConsultContext) -> list[Route]:
    replays = Replays(ctx.engine)

    def run(function: Callable[..., Any], *args: Any) -> Awaitable[Any]:
        return anyio.to_thread.run_sync(lambda: function(*args))

    async def answer(principal: Principal, session_id: str) -> dict[str, Any]:
        return _json(await run(protocol.protocol_of, ctx, principal, session_id))

    async def read(request: Request, principal: Principal) -> dict[str, Any]:
        return await answer(principal, request.path_params["session_id"])

    async def versions(request: Request, principal: Principal) -> dict[str, Any]:
        found = await run(protocol.versions_of, ctx, principal,
                          request.path_params["session_id"])
        return {"versions": [_json(v) for v in found]}

    def change(body_model: type[BaseModel] | None,
               act: Callable[[Request, Principal, str, Any], Any]) -> Any:
        async def handler(request: Request, principal: Principal) -> dict[str, Any]:
            session_id = request.path_params["session_id"]
            await run(sessions.detail, ctx, principal, session_id)  # the session first
            body = await _body(request, body_model) if body_model is not None else None
            outcome = await run(act, request, principal, session_id, body)
            await hub.announce(outcome)
            return await answer(principal, session_id)
        return json_endpoint(handler)

    def save(_r: Request, p: Principal, sid: str, body: SaveBody) -> Any:
        return protocol.save(ctx, p, sid, body.text, body.version)

    def pen(_r: Request, p: Principal, sid: str, body: PenBody) -> Any:
        return protocol.give_pen(ctx, p, sid, body.subject)

    def submit(_r: Request, p: Principal, sid: str, body: VersionBody) -> Any:
        return protocol.submit(ctx, p, sid, body.version)

    def sign(_r: Request, p: Principal, sid: str, body: SignBody) -> Any:
        return protocol.sign(ctx, p, sid, body.version, body.agree, body.dissent)

    def reopen(_r: Request, p: Principal, sid: str, _body: None) -> Any:
        return protocol.reopen(ctx, p, sid)

    def close(request: Request, p: Principal, sid: str, _body: None) -> Any:
        return protocol_close.close(ctx, consult, p, sid, web_actor(request, p))

    async def pdf(request: Request, principal: Principal) -> Response:
        name, data = await run(protocol_close.protocol_pdf, ctx, consult, principal,
                               request.path_params["session_id"], web_actor(request, principal))
        return Response(data, media_type="application/pdf", headers={
            "Content-Disposition": content_disposition(name), **PRIVATE})

    async def replay(request: Request, principal: Principal) -> dict[str, Any]:
        session_id = request.path_params["session_id"]
        session = await run(sessions.detail, ctx, principal, session_id)
        entries, truncated = await run(timeline, ctx.engine, session_id)
        ctx.audit.submit(web_actor(request, principal), AuditAction.VIEW,
                         detail={"what": "consilium replay", "session": session_id,
                                 "case": session.case_id})
        return {"session": _json(session), "last_seq": session.last_seq, "timeline": entries,
                "truncated": truncated}

    async def state(request: Request, principal: Principal) -> dict[str, Any]:
        session_id = request.path_params["session_id"]
        await run(sessions.detail, ctx, principal, session_id)
        try:
            seq = int(request.query_params.get("seq", ""))
        except ValueError as exc:
            raise InvalidInput("seq is a whole number") from exc
        if seq < 0:
            raise InvalidInput("seq >= 0")
        newest = await run(last_seq_of, ctx.engine, session_id)
        found = await run(replays.state_at, session_id, min(seq, newest))
        return {"seq": found["seq"], "state": found}

    base = "/api/consilia/{session_id:str}"
    return [
        Route(f"{base}/protocol", json_endpoint(read), methods=["GET"]),
        Route(f"{base}/protocol", change(SaveBody, save), methods=["PUT"]),
        Route(f"{base}/protocol/versions", json_endpoint(versions), methods=["GET"]),
        Route(f"{base}/protocol/pen", change(PenBody, pen), methods=["POST"]),
        Route(f"{base}/protocol/submit", change(VersionBody, submit), methods=["POST"]),
        Route(f"{base}/protocol/sign", change(SignBody, sign), methods=["POST"]),
        Route(f"{base}/protocol/reopen", change(None, reopen), methods=["POST"]),
        Route(f"{base}/protocol/close", change(None, close), methods=["POST"]),
        Route(f"{base}/protocol.pdf", signed_in(pdf), methods=["GET"]),
        Route(f"{base}/replay", json_endpoint(replay), methods=["GET"]),
        Route(f"{base}/replay/state", json_endpoint(state), methods=["GET"]),
    ]
