"""The demo OpenID Connect provider of the embedded default, built on authlib's server side.

Served at ``/dev-idp`` only when ``identity.dev_idp`` is on. It is a real provider: discovery,
JWKS, authorization code with PKCE (S256, required) and nonce, RS256 ID tokens and JWT access
tokens, userinfo, RP-initiated logout. Consilium logs in against it through the same discovery
and JWKS code as against Keycloak or ADFS. Its signing key is generated at first start into
``<data_dir>/dev-idp/`` (never in the repository); codes live in memory (one process).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from authlib.oauth2 import AuthorizationServer, OAuth2Request
from authlib.oauth2.rfc6749 import ClientMixin, grants
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from consilium.identity.dev_clinicians import (
    DEMO_CLINICIANS,
    DEMO_PASSWORD,
    DemoClinician,
    find_clinician,
)
from consilium.identity.keyfiles import read_private_file, write_private_file
from consilium.identity.page_text import PAGE_STYLE, page_language, page_text
from consilium.settings import DEV_IDP_PROVIDER_ID

CLIENT_ID = "consilium"
TOKEN_LIFETIME = 3600
CODE_LIFETIME = 120


def load_signing_key(folder: Path) -> RSAKey:
    """The provider's RSA key, created (mode 0600, in a 0700 folder) on first use."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / "signing-key.json"
    if path.exists():
        return RSAKey.import_key(json.loads(read_private_file(path)))
    key = RSAKey.generate_key(2048, parameters={"use": "sig", "alg": "RS256"}, auto_kid=True)
    write_private_file(path, json.dumps(key.as_dict(private=True)).encode())
    return key


@dataclass
class DemoClient(ClientMixin):  # type: ignore[misc]
    """Consilium itself, a public client (PKCE, no secret), with its registered redirect URIs.

    Redirect URIs are compared whole, as OAuth 2.0 Security BCP asks: a prefix match let
    ``http://localhost:8410@evil.example/`` pass for ``http://localhost:8410``."""

    redirect_uris: list[str]
    post_logout_redirect_uris: list[str] = field(default_factory=list)

    def get_client_id(self) -> str:
        return CLIENT_ID

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uris[0]

    def get_allowed_scope(self, scope: str) -> str:
        allowed = {"openid", "profile", "email"}
        return " ".join(s for s in scope.split() if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_post_logout_redirect_uri(self, uri: str) -> bool:
        return uri in self.post_logout_redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return False

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == "none"

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass
class IssuedCode:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: DemoClinician
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int
    expires: float

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> str | None:
        return None

    def get_amr(self) -> list[str] | None:
        return ["pwd"]

    def is_expired(self) -> bool:
        return time.time() > self.expires


@dataclass
class DemoProvider:
    issuer: str
    key: RSAKey
    client: DemoClient
    codes: dict[str, IssuedCode] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def claims_of(self, user: DemoClinician) -> dict[str, Any]:
        return {
            "sub": user.username,
            "name": user.name,
            "preferred_username": user.username,
            "email": user.email or f"{user.username}@{user.institution}.example",
            "institution": user.institution,
            "roles": list(user.roles),
            "specialty": user.specialty,
        }

    def sign_access_token(self, claims: dict[str, Any]) -> str:
        """An RFC 9068 access token: typed ``at+jwt``, so it cannot pass for an ID token."""
        return jwt.encode({"alg": "RS256", "kid": self.key.kid, "typ": "at+jwt"}, claims,
                          self.key, ["RS256"])


def _make_server(provider: DemoProvider) -> AuthorizationServer:
    class CodeGrant(grants.AuthorizationCodeGrant):  # type: ignore[misc]
        TOKEN_ENDPOINT_AUTH_METHODS = ["none"]  # noqa: RUF012 (authlib's class attribute)

        def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
            data = request.payload.data
            with provider.lock:
                provider.codes[code] = IssuedCode(
                    code=code,
                    client_id=CLIENT_ID,
                    redirect_uri=data.get("redirect_uri", ""),
                    scope=request.payload.scope or "",
                    user=request.user,
                    nonce=data.get("nonce"),
                    code_challenge=data.get("code_challenge"),
                    code_challenge_method=data.get("code_challenge_method"),
                    auth_time=int(time.time()),
                    expires=time.time() + CODE_LIFETIME,
                )

        def query_authorization_code(self, code: str, client: ClientMixin) -> IssuedCode | None:
            with provider.lock:
                issued = provider.codes.get(code)
            if issued is None or issued.is_expired():
                return None
            return issued

        def delete_authorization_code(self, authorization_code: IssuedCode) -> None:
            with provider.lock:
                provider.codes.pop(authorization_code.code, None)

        def authenticate_user(self, authorization_code: IssuedCode) -> DemoClinician:
            return authorization_code.user

    class OpenIDExtension(OpenIDCode):  # type: ignore[misc]
        def resolve_client_private_key(self, client: ClientMixin) -> RSAKey:
            return provider.key

        def get_client_algorithm(self, client: ClientMixin) -> str:
            return "RS256"

        def get_encode_header(self, client: ClientMixin) -> dict[str, str]:
            return {"alg": "RS256", "kid": str(provider.key.kid)}

        def get_client_claims(self, client: ClientMixin) -> dict[str, Any]:
            return {"iss": provider.issuer, "aud": [CLIENT_ID], "exp": int(time.time()) + 600}

        def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
            with provider.lock:
                return any(c.nonce == nonce for c in provider.codes.values())

        def generate_user_info(self, user: DemoClinician, scope: str) -> UserInfo:
            return UserInfo(provider.claims_of(user))

    class Server(AuthorizationServer):  # type: ignore[misc]
        def query_client(self, client_id: str) -> ClientMixin | None:
            return provider.client if client_id == CLIENT_ID else None

        def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
            return None  # tokens are self-contained JWTs

        def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
            return None

        def create_oauth2_request(self, request: OAuth2Request) -> OAuth2Request:
            return request  # the Starlette adapter below builds it

        def handle_response(self, status: int, body: Any, headers: Any) -> Response:
            if isinstance(body, dict):
                return JSONResponse(body, status_code=status, headers=dict(headers))
            return Response(body, status_code=status, headers=dict(headers))

    server = Server()

    def generate_token(
        grant_type: str, client: ClientMixin, user: DemoClinician | None = None,
        scope: str | None = None, expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        now = int(time.time())
        assert user is not None
        claims = {
            **provider.claims_of(user), "iss": provider.issuer, "aud": CLIENT_ID,
            "iat": now, "exp": now + TOKEN_LIFETIME, "scope": scope or "",
            "client_id": CLIENT_ID, "jti": secrets.token_hex(8),
        }
        return {"token_type": "Bearer", "access_token": provider.sign_access_token(claims),
                "expires_in": TOKEN_LIFETIME, "scope": scope or ""}

    server.register_token_generator("default", generate_token)
    server.register_grant(CodeGrant, [CodeChallenge(required=True), OpenIDExtension(True)])
    return server


class StarletteOAuth2Request(OAuth2Request):  # type: ignore[misc]
    """authlib's request object for a Starlette request whose form was read beforehand."""

    def __init__(self, request: Request, form: dict[str, list[str]]) -> None:
        super().__init__(request.method, str(request.url), headers=dict(request.headers))
        self._args = {k: v for k, v in request.query_params.items()}
        self._form = {k: v[0] for k, v in form.items()}
        merged: dict[str, list[str]] = {k: request.query_params.getlist(k)
                                        for k in request.query_params}
        for key, values in form.items():
            merged.setdefault(key, []).extend(values)
        self.payload = BasicOAuth2Payload({**self._args, **self._form})
        self.payload._datalist = merged

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


async def _oauth2_request(request: Request) -> OAuth2Request:
    form: dict[str, list[str]] = {}
    if request.method == "POST":
        data = await request.form()
        for key in data:
            form[key] = [str(v) for v in data.getlist(key)]
    return StarletteOAuth2Request(request, form)


def _login_page(request: Request, lang: str, error: str = "") -> HTMLResponse:
    def tr(key: str) -> str:
        return page_text(lang, key)

    options = "".join(
        f"<tr><td translate=no><code>{escape(c.username)}</code></td>"
        f"<td translate=no>{escape(c.name)}</td><td translate=no>{escape(c.institution)}</td>"
        f"<td>{escape(', '.join(tr('role.' + r) for r in c.roles))}</td></tr>"
        for c in DEMO_CLINICIANS
    )
    notice = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    return HTMLResponse(
        f"<!doctype html><html lang={lang}><meta charset=utf-8><title>{tr('devidp.title')}"
        f"</title>{PAGE_STYLE}<h1>{tr('devidp.heading')}</h1>"
        f"<p>{tr('devidp.note')}<code translate=no>{DEMO_PASSWORD}</code></p>{notice}"
        '<form method="post">'
        f'<label>{tr("devidp.user")} <input name="username" autocomplete="username" required>'
        f'</label> <label>{tr("devidp.password")} <input name="password" type="password" '
        'autocomplete="current-password" required></label> '
        f'<button type="submit">{tr("devidp.sign_in")}</button></form>'
        f"<table><tr><th>{tr('devidp.col_user')}</th><th>{tr('devidp.col_name')}</th>"
        f"<th>{tr('devidp.col_institution')}</th><th>{tr('devidp.col_roles')}</th></tr>"
        f"{options}</table>",
        status_code=401 if error else 200,
    )


def dev_idp_routes(issuer: str, consilium_base_url: str, key_folder: Path,
                   provider_id: str = DEV_IDP_PROVIDER_ID,
                   default_language: str = "ru") -> list[Route]:
    """The provider's routes, for Consilium at ``consilium_base_url`` that knows this provider
    as ``provider_id`` (its callback is the one redirect URI registered)."""
    provider = DemoProvider(
        issuer=issuer,
        key=load_signing_key(key_folder),
        client=DemoClient([f"{consilium_base_url}/auth/callback/{provider_id}"],
                          [f"{consilium_base_url}/"]),
    )
    server = _make_server(provider)

    async def discovery(_request: Request) -> JSONResponse:
        return JSONResponse({
            "issuer": issuer,
            "authorization_endpoint": f"{issuer}/authorize",
            "token_endpoint": f"{issuer}/token",
            "userinfo_endpoint": f"{issuer}/userinfo",
            "jwks_uri": f"{issuer}/jwks",
            "end_session_endpoint": f"{issuer}/logout",
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none"],
            "scopes_supported": ["openid", "profile", "email"],
            "claims_supported": ["sub", "name", "email", "institution", "roles", "specialty"],
        })

    async def jwks(_request: Request) -> JSONResponse:
        return JSONResponse({"keys": [provider.key.as_dict(private=False)]})

    async def authorize(request: Request) -> Response:
        oauth_request = await _oauth2_request(request)
        try:
            grant = server.get_consent_grant(oauth_request)
        except Exception as exc:  # authlib's OAuth2Error and friends: show, don't redirect
            lang = page_language(request, default_language)
            return HTMLResponse(f"<h1>{page_text(lang, 'devidp.invalid')}</h1>"
                                f"<p>{escape(str(exc))}</p>", 400)
        lang = page_language(request, default_language)
        if request.method == "GET":
            return _login_page(request, lang)
        form = await request.form()
        user = find_clinician(str(form.get("username", "")))
        if user is None or not secrets.compare_digest(str(form.get("password", "")),
                                                       DEMO_PASSWORD):
            return _login_page(request, lang, page_text(lang, "devidp.wrong"))
        response: Response = server.create_authorization_response(oauth_request, user, grant)
        return response

    async def token(request: Request) -> Response:
        response: Response = server.create_token_response(await _oauth2_request(request))
        response.headers["Cache-Control"] = "no-store"
        return response

    async def userinfo(request: Request) -> JSONResponse:
        auth = request.headers.get("authorization", "")
        if not auth.lower().startswith("bearer "):
            return JSONResponse({"error": "invalid_token"}, 401)
        try:
            decoded = jwt.decode(auth[7:], provider.key, ["RS256"])
            jwt.JWTClaimsRegistry(iss={"essential": True, "value": issuer}).validate(
                decoded.claims)
        except Exception:
            return JSONResponse({"error": "invalid_token"}, 401)
        keep = ("sub", "name", "email", "institution", "roles", "specialty")
        return JSONResponse({k: decoded.claims[k] for k in keep if k in decoded.claims})

    async def logout(request: Request) -> Response:
        target = request.query_params.get("post_logout_redirect_uri", "")
        if target and provider.client.check_post_logout_redirect_uri(target):
            return RedirectResponse(target, 303)
        lang = page_language(request, default_language)
        return HTMLResponse(f"<p>{page_text(lang, 'devidp.signed_out')}</p>")

    return [
        Route("/.well-known/openid-configuration", discovery),
        Route("/jwks", jwks),
        Route("/authorize", authorize, methods=["GET", "POST"]),
        Route("/token", token, methods=["POST"]),
        Route("/userinfo", userinfo),
        Route("/logout", logout),
    ]
