"""Browser login through OpenID Connect (authorization code + PKCE, state, nonce), logout,
and ``/api/me``. Thin adapters over :mod:`consilium.identity.users` and the token checks."""

from __future__ import annotations

import base64
import hashlib
import logging
from html import escape
from typing import Any
from urllib.parse import urlencode

import httpx
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from consilium.audit import Actor, AuditAction, AuditOutcome, AuditTrail
from consilium.identity.middleware import SESSION_COOKIE, SESSION_SCOPE_KEY
from consilium.identity.models import MePublic
from consilium.identity.page_text import PAGE_STYLE, page_language, page_text
from consilium.identity.ratelimit import UnauthenticatedAudit, clip, make_rate_limiter
from consilium.identity.roster import Colleagues, Directory, colleagues, consult_targets
from consilium.identity.tokens import ProviderDirectory, TokenError
from consilium.identity.users import (
    LoginRefused,
    consume_login,
    create_session,
    end_session,
    map_claims,
    start_login,
    upsert_user,
)
from consilium.identity.web import client_address, current_principal, signed_in_principal
from consilium.settings import DEV_IDP_PROVIDER_ID, OidcProvider, Settings

log = logging.getLogger(__name__)


class ProviderUnavailable(Exception):
    """The identity provider answered with a server error: it is down, not refusing."""


def _safe_return_to(value: str | None) -> str:
    """Only same-site paths: an open redirect after login would be a phishing tool."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def identity_routes(
    settings: Settings, engine: Any, directory: ProviderDirectory, audit: AuditTrail,
    anonymous_audit: UnauthenticatedAudit | None = None,
) -> list[Route]:
    limiter = make_rate_limiter(settings.identity_login_attempts_per_minute,
                                settings.live_redis_url)
    # what callers who are not logged in cause: limited per address, text clipped
    anonymous = anonymous_audit or UnauthenticatedAudit(
        audit, settings.identity_unauthenticated_audit_per_minute, settings.live_redis_url)
    base = settings.effective_public_url

    def actor_of(request: Request, subject: str = "unknown", name: str = "",
                 institution: str = "") -> Actor:
        return Actor(subject, name, institution, client_address(request.scope), "web")

    def failure_page(request: Request, key: str, status: int = 401, **values: str) -> HTMLResponse:
        lang = page_language(request, settings.ui_default_language)
        message = page_text(lang, key, **values)
        return HTMLResponse(
            f"<!doctype html><html lang={lang}><meta charset=utf-8>"
            f"<title>{page_text(lang, 'failed.title')}</title>{PAGE_STYLE}"
            f"<h1>{page_text(lang, 'failed.title')}</h1><p role=alert>{escape(message)}</p>"
            f'<p><a href="/auth/login">{page_text(lang, "failed.again")}</a></p>',
            status_code=status)

    def provider_name(provider: OidcProvider, lang: str) -> str:
        """The end of the link's tag and its text: the demo provider in the page's language, a
        configured one by its configured name (data, not translated)."""
        if provider.id == DEV_IDP_PROVIDER_ID:
            return f">{page_text(lang, 'devidp.heading')}"
        return f" translate=no>{escape(provider.name)}"

    async def login_page(request: Request) -> HTMLResponse:
        lang = page_language(request, settings.ui_default_language)
        return_to = _safe_return_to(request.query_params.get("return_to"))
        items = "".join(
            f'<li><a class="provider" href="/auth/login/{escape(p.id)}?'
            f'{urlencode({"return_to": return_to})}"{provider_name(p, lang)}</a></li>'
            for p in settings.effective_identity_providers
        ) or f"<li>{page_text(lang, 'login.none')}</li>"
        return HTMLResponse(
            f"<!doctype html><html lang={lang}><meta charset=utf-8>"
            f"<title>{page_text(lang, 'login.title')}</title>{PAGE_STYLE}"
            f"<h1>{page_text(lang, 'login.title')}</h1><p>{page_text(lang, 'login.choose')}</p>"
            f"<ul>{items}</ul>")

    async def login_start(request: Request) -> Response:
        provider = settings.provider(request.path_params["provider"])
        if provider is None:
            return failure_page(request, "failed.unknown_provider", 404)
        if not await limiter.allow(client_address(request.scope)):
            await anonymous.record(actor_of(request), AuditAction.LOGIN_FAILED,
                                   AuditOutcome.DENIED,
                                   {"reason": "rate limited", "provider": provider.id})
            return failure_page(request, "failed.rate_limited", 429)
        try:
            metadata = await directory.metadata(provider.id)
        except Exception as exc:
            log.error("discovery of %s failed: %s", provider.id, exc)
            return failure_page(request, "failed.unreachable", 502)
        attempt = await run_in_threadpool(
            start_login, engine, provider.id,
            _safe_return_to(request.query_params.get("return_to")))
        params = {
            "response_type": "code", "client_id": provider.client_id,
            "redirect_uri": f"{base}/auth/callback/{provider.id}", "scope": provider.scopes,
            "state": attempt.state, "nonce": attempt.nonce,
            "code_challenge": _s256(attempt.code_verifier), "code_challenge_method": "S256",
        }
        return RedirectResponse(f"{metadata['authorization_endpoint']}?{urlencode(params)}", 303)

    async def callback(request: Request) -> Response:
        provider = settings.provider(request.path_params["provider"])
        if provider is None:
            return failure_page(request, "failed.unknown_provider", 404)
        params = request.query_params
        attempt = await run_in_threadpool(consume_login, engine, provider.id,
                                          params.get("state", ""))
        if attempt is None or "code" not in params:
            reason = clip(params.get("error_description") or params.get("error")
                          or "invalid state")
            await anonymous.record(actor_of(request), AuditAction.LOGIN_FAILED,
                                   AuditOutcome.FAILURE,
                                   {"reason": reason, "provider": provider.id})
            return failure_page(request, "failed.not_completed", reason=reason)
        try:
            metadata = await directory.metadata(provider.id)
            form = {
                "grant_type": "authorization_code", "code": params["code"],
                "redirect_uri": f"{base}/auth/callback/{provider.id}",
                "client_id": provider.client_id, "code_verifier": attempt.code_verifier,
            }
            secret = settings.client_secret(provider)
            if secret:
                form["client_secret"] = secret
            response = await directory.http.post(metadata["token_endpoint"], data=form,
                                                  headers={"Accept": "application/json"})
            if response.status_code >= 500:
                raise ProviderUnavailable(f"token endpoint answered {response.status_code}")
            if response.status_code != 200:
                raise TokenError(f"token endpoint answered {response.status_code}: "
                                 f"{response.text[:200]}")
            id_token = str(response.json().get("id_token", ""))
            claims = await directory.validate(provider.id, id_token, provider.client_id,
                                              nonce=attempt.nonce)
            mapped = map_claims(settings, provider, claims)
        except (httpx.HTTPError, ProviderUnavailable) as exc:
            # the provider went away between the login form and the token exchange (or its
            # keys cannot be fetched): the person can retry later, nothing was refused
            log.error("login via %s: the provider cannot be reached: %s", provider.id, exc)
            await anonymous.record(actor_of(request), AuditAction.LOGIN_FAILED,
                                   AuditOutcome.FAILURE,
                                   {"reason": f"provider unreachable: {type(exc).__name__}",
                                    "provider": provider.id})
            return failure_page(request, "failed.unreachable_later", 502)
        except (TokenError, LoginRefused, ValueError, KeyError) as exc:
            log.warning("login via %s failed: %s", provider.id, clip(str(exc)))
            await anonymous.record(actor_of(request), AuditAction.LOGIN_FAILED,
                                   AuditOutcome.FAILURE,
                                   {"reason": str(exc), "provider": provider.id})
            lang = page_language(request, settings.ui_default_language)
            message = (str(exc) if isinstance(exc, LoginRefused)
                       else page_text(lang, "failed.invalid_tokens"))
            return failure_page(request, "failed.refused", reason=message)
        actor = actor_of(request, f"{provider.id}:{mapped.subject}", mapped.display_name,
                         mapped.institution_id)

        def sign_in() -> str:  # the user, the session and the record, off the event loop
            user = upsert_user(engine, provider.id, mapped)
            cookie, _ = create_session(engine, user, provider.id, id_token,
                                       actor.source, settings.identity_session_hours)
            audit.record(actor, AuditAction.LOGIN, detail={
                "provider": provider.id, "roles": sorted(r.value for r in mapped.roles)})
            return cookie

        cookie = await run_in_threadpool(sign_in)
        redirect = RedirectResponse(attempt.return_to, 303)
        redirect.set_cookie(
            SESSION_COOKIE, cookie, max_age=int(settings.identity_session_hours * 3600),
            httponly=True, samesite="lax", secure=settings.cookies_secure, path="/")
        return redirect

    async def logout(request: Request) -> Response:
        principal = current_principal(request)
        web_session = request.scope.get(SESSION_SCOPE_KEY)
        target = "/"
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            ended = await run_in_threadpool(end_session, engine, token)
            if ended is not None:
                await run_in_threadpool(
                    audit.record, actor_of(request, principal.subject, principal.display_name,
                                           principal.institution_id or ""), AuditAction.LOGOUT)
                provider = settings.provider(ended.provider_id)
                if provider is not None and web_session is not None:
                    try:
                        metadata = await directory.metadata(provider.id)
                    except Exception:
                        metadata = {}
                    if metadata.get("end_session_endpoint"):
                        target = metadata["end_session_endpoint"] + "?" + urlencode({
                            "id_token_hint": ended.id_token, "client_id": provider.client_id,
                            "post_logout_redirect_uri": f"{base}/"})
        response: Response
        if "application/json" in request.headers.get("accept", ""):
            response = JSONResponse({"next": target})
        else:
            response = RedirectResponse(target, 303)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax",
                               secure=settings.cookies_secure)
        return response

    async def me(request: Request) -> JSONResponse:
        principal = signed_in_principal(request)
        web_session = request.scope.get(SESSION_SCOPE_KEY)
        institution = settings.institution(principal.institution_id or "")
        return JSONResponse(MePublic(
            subject=principal.subject, name=principal.display_name,
            institution=principal.institution_id,
            institution_name=institution.name if institution else "",
            roles=sorted(principal.roles), specialty=principal.specialty,
            csrf_token=web_session.csrf_token if web_session is not None else None,
        ).model_dump(mode="json"))

    async def consult_directory(request: Request) -> JSONResponse:
        principal = signed_in_principal(request)
        targets = await run_in_threadpool(consult_targets, settings, engine, principal)
        return JSONResponse(Directory(institutions=targets).model_dump(mode="json"))

    async def colleague_directory(request: Request) -> JSONResponse:
        principal = signed_in_principal(request)
        found = await run_in_threadpool(colleagues, engine, principal)
        return JSONResponse(Colleagues(colleagues=found).model_dump(mode="json"))

    return [
        Route("/api/directory", consult_directory),
        Route("/api/directory/colleagues", colleague_directory),
        Route("/auth/login", login_page),
        Route("/auth/login/{provider}", login_start),
        Route("/auth/callback/{provider}", callback),
        Route("/auth/logout", logout, methods=["POST"]),
        Route("/api/me", me),
    ]
