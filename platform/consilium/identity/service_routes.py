"""HTTP adapters of service identities: an institution's admin issues, lists and revokes the
API tokens of its machines (:mod:`consilium.identity.services`).

    GET    /api/service-tokens              the institution's tokens (never the secrets)
    POST   /api/service-tokens              issue one (ServiceTokenCreate): the token, once
    DELETE /api/service-tokens/{token_id}   revoke it at once

403 for anyone but an admin (with an institution); another institution's token is a 404 like
a missing one. Issuing and revoking are recorded (``grant``/``revoke``, the system named).
"""

from __future__ import annotations

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import Route

from consilium.audit import AuditTrail
from consilium.errors import Forbidden, InvalidInput
from consilium.http_json import read_model
from consilium.identity.policy import Principal, may_manage_service_tokens
from consilium.identity.services import (
    ServiceTokenCreate,
    ServiceTokenIssued,
    ServiceTokenPublic,
    issue_token,
    revoke_token,
    tokens_of,
)
from consilium.identity.web import json_endpoint, web_actor


def _admin_institution(principal: Principal) -> str:
    if not may_manage_service_tokens(principal) or principal.institution_id is None:
        raise Forbidden("service tokens are managed by the institution's admins")
    return principal.institution_id


def service_token_routes(engine: Engine, audit: AuditTrail) -> list[Route]:

    async def listing(_request: Request, principal: Principal) -> list[ServiceTokenPublic]:
        return await run_in_threadpool(tokens_of, engine, _admin_institution(principal))

    async def create(request: Request, principal: Principal) -> ServiceTokenIssued:
        institution = _admin_institution(principal)
        body = await read_model(request, ServiceTokenCreate)
        return await run_in_threadpool(issue_token, engine, audit,
                                       web_actor(request, principal), institution, body)

    async def revoke(request: Request, principal: Principal) -> ServiceTokenPublic:
        institution = _admin_institution(principal)
        raw = str(request.path_params["token_id"])
        if not raw.isdigit() or len(raw) > 12:
            raise InvalidInput("not a token id")
        return await run_in_threadpool(revoke_token, engine, audit,
                                       web_actor(request, principal), institution, int(raw))

    return [
        Route("/api/service-tokens", json_endpoint(listing), methods=["GET"]),
        Route("/api/service-tokens", json_endpoint(create), methods=["POST"]),
        Route("/api/service-tokens/{token_id}", json_endpoint(revoke), methods=["DELETE"]),
    ]
