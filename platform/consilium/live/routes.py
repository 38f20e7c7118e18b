"""HTTP adapters of live consilium sessions: parse, call one function of :mod:`.sessions` (in a
worker thread), announce what changed (:meth:`consilium.live.hub.LiveHub.announce`), answer.

    GET  /api/consilia                          my sessions (chair or invited), soonest first
    GET  /api/cases/{case_id}/consilia          the sessions of a case
    POST /api/cases/{case_id}/consilia          schedule {scheduled_at?, title?, invitees?};
                                                without scheduled_at it opens now
    GET  /api/consilia/{session_id}             one session
    GET  /api/consilia/{session_id}/changes     its record: ?after=<seq>&limit=<n> (replay)
    POST /api/consilia/{session_id}/start       open a scheduled session (the chair)
    POST /api/consilia/{session_id}/invite      {subjects: [...]} (the chair)
    POST /api/consilia/{session_id}/uninvite    {subject} (the chair)
    POST /api/consilia/{session_id}/end         (the chair)

Errors as everywhere in the JSON API: 400, 401, 403 (a member who is not the chair), 404 for a
case or session that is not the caller's and one that does not exist alike (recorded at the
edge), 409 (the session's status does not allow it). The case or session is checked before the
body is read.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import anyio
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.routing import Route

from consilium.errors import InvalidInput
from consilium.http_api import json_endpoint, web_actor
from consilium.identity.policy import Principal
from consilium.live import sessions
from consilium.live.hub import LiveHub
from consilium.live.sequencer import load_changes

M = TypeVar("M", bound=BaseModel)
CHANGES_PAGE = 1000


class ScheduleBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(default="", max_length=200)
    scheduled_at: datetime | None = None
    invitees: list[str] = Field(default_factory=list, max_length=sessions.MAX_INVITEES)


class InviteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subjects: list[str] = Field(min_length=1, max_length=sessions.MAX_INVITEES)


class UninviteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subject: str = Field(min_length=1, max_length=256)


async def _body(request: Request, model: type[M]) -> M:
    raw = await request.body()
    try:
        return model.model_validate(json.loads(raw or b"{}"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput("the body is not JSON") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise InvalidInput(f"bad request: {where}: {first.get('msg')}") from exc


def _json(value: BaseModel) -> dict[str, Any]:
    return value.model_dump(mode="json")


def live_routes(ctx: sessions.LiveContext, hub: LiveHub) -> list[Route]:
    def run(function: Callable[..., Any], *args: Any) -> Awaitable[Any]:
        return anyio.to_thread.run_sync(lambda: function(*args))

    async def mine(request: Request, principal: Principal) -> dict[str, Any]:
        return {"sessions": [_json(s) for s in await run(sessions.sessions_of, ctx, principal)]}

    async def of_case(request: Request, principal: Principal) -> dict[str, Any]:
        found = await run(sessions.case_sessions, ctx, principal,
                          int(request.path_params["case_id"]))
        return {"sessions": [_json(s) for s in found]}

    async def schedule(request: Request, principal: Principal) -> dict[str, Any]:
        case_id = int(request.path_params["case_id"])
        await run(sessions.case_sessions, ctx, principal, case_id)  # the case first
        body = await _body(request, ScheduleBody)
        outcome = await run(lambda: sessions.schedule(
            ctx, principal, case_id, title=body.title, at=body.scheduled_at,
            invitees=body.invitees, actor=web_actor(request, principal)))
        await hub.announce(outcome)
        return await detail_of(principal, outcome.session.id)

    async def detail_of(principal: Principal, session_id: str) -> dict[str, Any]:
        return _json(await run(sessions.detail, ctx, principal, session_id))

    async def detail(request: Request, principal: Principal) -> dict[str, Any]:
        return await detail_of(principal, request.path_params["session_id"])

    async def changes(request: Request, principal: Principal) -> dict[str, Any]:
        session_id = request.path_params["session_id"]
        await detail_of(principal, session_id)
        try:
            after = int(request.query_params.get("after", "0"))
            limit = min(CHANGES_PAGE, int(request.query_params.get("limit", CHANGES_PAGE)))
        except ValueError as exc:
            raise InvalidInput("after and limit are whole numbers") from exc
        if after < 0 or limit < 1:
            raise InvalidInput("after >= 0 and limit >= 1")
        found = await run(lambda: load_changes(ctx.engine, session_id, after, limit=limit))
        return {"session_id": session_id, "changes": found}

    async def start(request: Request, principal: Principal) -> dict[str, Any]:
        session_id = request.path_params["session_id"]
        outcome = await run(sessions.start, ctx, principal, session_id)
        await hub.announce(outcome)
        return await detail_of(principal, session_id)

    async def invite(request: Request, principal: Principal) -> dict[str, Any]:
        session_id = request.path_params["session_id"]
        await detail_of(principal, session_id)
        body = await _body(request, InviteBody)
        outcome = await run(lambda: sessions.invite(ctx, principal, session_id, body.subjects,
                                                    web_actor(request, principal)))
        await hub.announce(outcome)
        return await detail_of(principal, session_id)

    async def uninvite(request: Request, principal: Principal) -> dict[str, Any]:
        session_id = request.path_params["session_id"]
        await detail_of(principal, session_id)
        body = await _body(request, UninviteBody)
        outcome = await run(lambda: sessions.uninvite(ctx, principal, session_id, body.subject,
                                                      web_actor(request, principal)))
        await hub.announce(outcome)
        return await detail_of(principal, session_id)

    async def end(request: Request, principal: Principal) -> dict[str, Any]:
        session_id = request.path_params["session_id"]
        outcome = await run(lambda: sessions.end(ctx, principal, session_id,
                                                 web_actor(request, principal)))
        await hub.announce(outcome)
        return await detail_of(principal, session_id)

    def endpoint(handler: Callable[[Request, Principal], Awaitable[Any]]) -> Any:
        return json_endpoint(handler)  # a session not found: on record at the edge

    base = "/api/consilia/{session_id:str}"
    return [
        Route("/api/consilia", endpoint(mine), methods=["GET"]),
        Route("/api/cases/{case_id:int}/consilia", endpoint(of_case), methods=["GET"]),
        Route("/api/cases/{case_id:int}/consilia", endpoint(schedule), methods=["POST"]),
        Route(base, endpoint(detail), methods=["GET"]),
        Route(f"{base}/changes", endpoint(changes), methods=["GET"]),
        Route(f"{base}/start", endpoint(start), methods=["POST"]),
        Route(f"{base}/invite", endpoint(invite), methods=["POST"]),
        Route(f"{base}/uninvite", endpoint(uninvite), methods=["POST"]),
        Route(f"{base}/end", endpoint(end), methods=["POST"]),
    ]
