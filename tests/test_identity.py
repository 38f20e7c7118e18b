"""Identity and access end to end: OIDC login against the demo provider (through discovery and
JWKS over HTTP), sessions, CSRF, bearer tokens, grants, Socket.IO, and the audit records."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import socketio
from joserfc import jwt
from joserfc.jwk import RSAKey

from tests.conftest import CONFIG, CONSILIUM, pydicom_data_dir
from tests.webserver import WebServer, csrf_of

DATA = pydicom_data_dir()
CITY_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"  # CT_small.dcm
REGIONAL_FILE = DATA / "test_files" / "MR_small.dcm"


def _import(data_dir: Path, institution: str, *files: Path) -> None:
    subprocess.run(
        [str(CONSILIUM), "import", "--config", str(CONFIG), "--data-dir", str(data_dir),
         "--institution", institution, "--quiet", *map(str, files)],
        check=True, capture_output=True,
    )


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    root = tmp_path_factory.mktemp("identity")
    data_dir = root / "var"
    _import(data_dir, "city-hospital", DATA / "test_files" / "CT_small.dcm")
    _import(data_dir, "regional-center", REGIONAL_FILE)
    # many logins from one address in this module: the limit has its own test below
    server = WebServer(data_dir, extra_env={
        "CONSILIUM_IDENTITY_LOGIN_ATTEMPTS_PER_MINUTE": "1000"}).start()
    yield server
    server.stop()


def _audit(web: WebServer, head: str = "sidorov", **params: str) -> list[dict[str, Any]]:
    client = web.login(head)
    rows = client.get("/api/audit", params=params).json()
    assert isinstance(rows, list)
    return rows


# -- browser-style login ---------------------------------------------------------------------


def test_login_sees_own_studies_only_and_logs_out(web: WebServer) -> None:
    client = web.login("petrov")
    me = client.get("/api/me").json()
    assert me["institution"] == "city-hospital"
    assert me["roles"] == ["consultant"]
    assert me["name"] == "Pavel Petrov"
    studies = client.get("/api/studies").json()
    assert [s["study_uid"] for s in studies] == [CITY_STUDY]
    other = web.login("kuznetsova").get("/api/studies").json()
    assert [s["institution_id"] for s in other] == ["regional-center"]
    session_cookie = client.cookies.get("consilium_session")
    assert session_cookie
    answer = client.post("/auth/logout", headers={"X-CSRF-Token": csrf_of(client),
                                                   "Accept": "application/json"})
    assert answer.status_code == 200
    assert answer.json()["next"].startswith(f"{web.url}/dev-idp/logout?id_token_hint=")
    # the old cookie is dead on the server, not only deleted in the browser
    stale = web.client()
    stale.cookies.set("consilium_session", session_cookie)
    assert stale.get("/api/me").status_code == 401


def test_session_cookie_flags(web: WebServer) -> None:
    client = web.client()
    authorize = client.get("/auth/login/dev").headers["location"]
    answer = client.post(authorize, data={"username": "orlov", "password": "demo"})
    callback = client.get(answer.headers["location"])
    cookie = callback.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/" in cookie
    assert "secure" not in cookie  # plain http on loopback; https turns it on


def test_wrong_password_and_replayed_or_forged_callbacks_fail(web: WebServer) -> None:
    client = web.client()
    authorize = client.get("/auth/login/dev").headers["location"]
    assert client.post(authorize, data={"username": "petrov", "password": "x"}).status_code == 401
    answer = client.post(authorize, data={"username": "petrov", "password": "demo"})
    callback_url = answer.headers["location"]
    assert client.get(callback_url).status_code == 303
    replay = web.client().get(callback_url)  # the same code and state again
    assert replay.status_code == 401
    forged = web.client().get("/auth/callback/dev", params={"code": "x", "state": "nope"})
    assert forged.status_code == 401
    failures = [r for r in _audit(web, "city-admin", action="login-failed")
                if r["channel"] == "web"]
    assert len(failures) >= 2
    assert _audit(web, "sidorov", action="login-failed") == []  # heads: their people only


def test_return_to_cannot_leave_the_site(web: WebServer) -> None:
    client = web.client()
    start = client.get("/auth/login/dev", params={"return_to": "//evil.example/x"})
    authorize = start.headers["location"]
    answer = client.post(authorize, data={"username": "petrov", "password": "demo"})
    assert client.get(answer.headers["location"]).headers["location"] == "/"


def test_cookie_authenticated_writes_need_the_csrf_token(web: WebServer) -> None:
    client = web.login("petrov")
    assert client.post("/auth/logout").status_code == 403
    wrong_origin = client.post("/auth/logout", headers={
        "X-CSRF-Token": csrf_of(client), "Origin": "http://evil.example"})
    assert wrong_origin.status_code == 403
    assert client.get("/api/me").status_code == 200  # still logged in


def test_login_is_rate_limited(tmp_path: Path) -> None:
    server = WebServer(tmp_path / "var", extra_env={
        "CONSILIUM_IDENTITY_LOGIN_ATTEMPTS_PER_MINUTE": "3"}).start()
    try:
        client = server.client()
        codes = [client.get("/auth/login/dev").status_code for _ in range(4)]
        assert codes == [303, 303, 303, 429]
    finally:
        server.stop()


def test_demo_provider_is_off_unless_configured(tmp_path: Path) -> None:
    config = tmp_path / "no-dev.toml"
    config.write_text(CONFIG.read_text().replace("dev_idp = true", "dev_idp = false"))
    server = WebServer(tmp_path / "var", config=config).start()
    try:
        client = server.client()
        assert client.get("/dev-idp/.well-known/openid-configuration").status_code == 404
        assert client.get("/auth/login/dev").status_code == 404
        assert client.get("/api/studies").status_code == 401
    finally:
        server.stop()


# -- bearer tokens ---------------------------------------------------------------------------


def _claims(web: WebServer, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"iss": f"{web.url}/dev-idp", "aud": "consilium", "sub": "api-client-1",
              "iat": now, "exp": now + 300, "institution": "regional-center",
              "roles": ["consultant"], "name": "PACS bridge"}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _signed(web: WebServer, claims: dict[str, Any], key: Any = None, kid: str | None = None,
            typ: str | None = None) -> str:
    key = key or web.signing_key()
    header = {"alg": "RS256", "kid": kid or key.kid, **({"typ": typ} if typ else {})}
    return jwt.encode(header, claims, key, ["RS256"])


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_valid_bearer_token_gets_the_same_identity_and_policy(web: WebServer) -> None:
    token = _signed(web, _claims(web))
    client = web.client()
    me = client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert me.json()["subject"] == "dev:api-client-1"
    assert me.json()["csrf_token"] is None
    studies = client.get("/api/studies", headers={"Authorization": f"Bearer {token}"}).json()
    assert [s["institution_id"] for s in studies] == ["regional-center"]


def _refused(web: WebServer, token: str) -> None:
    answer = web.client().get("/api/studies", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 401, token
    assert answer.headers["www-authenticate"] == 'Bearer error="invalid_token"'


def test_forged_and_invalid_tokens_are_refused(web: WebServer) -> None:
    real_key = web.signing_key()
    other_key = RSAKey.generate_key(2048, auto_kid=True)
    # a forged signature: the provider's kid, another key
    _refused(web, _signed(web, _claims(web), key=other_key, kid=real_key.kid))
    # unknown key id
    _refused(web, _signed(web, _claims(web), key=other_key))
    _refused(web, _signed(web, _claims(web, exp=int(time.time()) - 3600)))  # expired
    _refused(web, _signed(web, _claims(web, iss="http://evil.example/dev-idp")))  # issuer
    _refused(web, _signed(web, _claims(web, aud="someone-else")))  # audience
    _refused(web, _signed(web, _claims(web, exp=None)))  # no expiry at all
    # alg=none
    _refused(web, f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims(web))}.")
    # HMAC signed with the provider's public key as the secret
    public_pem = real_key.as_pem(private=False)
    signing_input = f"{_b64({'alg': 'HS256', 'kid': real_key.kid})}.{_b64(_claims(web))}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    _refused(web, f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}")
    _refused(web, "not-a-jwt")
    # a valid token for an institution Consilium does not know
    _refused(web, _signed(web, _claims(web, institution="elsewhere")))



def _tokens_from_the_provider(web: WebServer, username: str) -> dict[str, Any]:
    """An authorization-code flow with PKCE straight against the demo provider, as an API
    client (a script) runs it: the provider's own access token and ID token."""
    verifier = base64.urlsafe_b64encode(b"v" * 48).rstrip(b"=").decode()
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(
        b"=").decode()
    redirect = f"{web.url}/auth/callback/dev"
    client = web.client()
    authorize = client.get("/dev-idp/authorize", params={
        "response_type": "code", "client_id": "consilium", "redirect_uri": redirect,
        "scope": "openid profile", "state": "s", "nonce": "n", "code_challenge": challenge,
        "code_challenge_method": "S256"})
    assert authorize.status_code == 200
    answer = client.post(str(authorize.url), data={"username": username, "password": "demo"})
    code = httpx.URL(answer.headers["location"]).params["code"]
    tokens = client.post("/dev-idp/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": redirect,
        "client_id": "consilium", "code_verifier": verifier})
    assert tokens.status_code == 200, tokens.text
    result: dict[str, Any] = tokens.json()
    return result


def test_an_id_token_is_not_a_bearer_access_token(web: WebServer) -> None:
    tokens = _tokens_from_the_provider(web, "kuznetsova")
    me = web.client().get("/api/me", headers={
        "Authorization": f"Bearer {tokens['access_token']}"})
    assert me.status_code == 200 and me.json()["subject"] == "dev:kuznetsova"
    _refused(web, tokens["id_token"])  # signed by the same provider, for the same client
    # typed tokens: RFC 9068 access tokens and plain JWTs pass, other types and ID-token
    # claims do not
    assert web.client().get("/api/me", headers={"Authorization": "Bearer " + _signed(
        web, _claims(web), typ="application/at+jwt")}).status_code == 200
    assert web.client().get("/api/me", headers={"Authorization": "Bearer " + _signed(
        web, _claims(web), typ="JWT")}).status_code == 200
    _refused(web, _signed(web, _claims(web), typ="id_token+jwt"))
    _refused(web, _signed(web, _claims(web, nonce="n")))
    _refused(web, _signed(web, _claims(web, at_hash="x")))
    _refused(web, _signed(web, _claims(web, typ="ID")))  # Keycloak's ID tokens


# -- grants and audit ------------------------------------------------------------------------


def test_grant_gives_access_and_revoking_takes_it_away(web: WebServer) -> None:
    from consilium.audit import Actor
    from consilium.identity.grants import grant_study, revoke_grant
    from consilium.service import open_runtime
    from consilium.settings import load_settings

    runtime = open_runtime(load_settings(CONFIG, {"data_dir": web.data_dir}, environ={}))
    consultant = web.login("kuznetsova")

    def visible() -> list[str]:
        return sorted(s["study_uid"] for s in consultant.get("/api/studies").json())

    assert CITY_STUDY not in visible()
    grant = grant_study(runtime.engine, runtime.audit, Actor("dev:petrov", "Pavel Petrov",
                                                             "city-hospital"),
                        CITY_STUDY, institution_id="regional-center", reference="case-1")
    assert CITY_STUDY in visible()
    assert grant.id is not None
    assert revoke_grant(runtime.engine, runtime.audit, Actor("dev:petrov"), grant.id)
    assert CITY_STUDY not in visible()
    events = _audit(web, study_uid=CITY_STUDY)
    assert [e["action"] for e in events if e["action"] in ("grant", "revoke")] == [
        "revoke", "grant"]


def test_audit_answers_who_and_is_for_heads_and_admins(web: WebServer) -> None:
    web.login("petrov").get("/api/studies")
    rows = _audit(web, actor="dev:petrov")
    actions = {r["action"] for r in rows}
    assert {"login", "query"} <= actions
    assert all(r["source"] == "127.0.0.1" for r in rows if r["action"] in ("login", "query"))
    assert web.login("petrov").get("/api/audit").status_code == 403  # a consultant
    assert web.client().get("/api/audit").status_code == 401
    admin = web.login("city-admin")
    assert admin.get("/api/audit").status_code == 200
    assert admin.get("/api/studies").json() == []  # admins see no images by their role
    csv_text = admin.get("/api/audit", params={"format": "csv"}).text
    header = csv_text.removeprefix("\ufeff").splitlines()[0]  # after the BOM for Excel
    assert header.startswith("at (Asia/Yekaterinburg),actor_name,actor_institution,action")
    # the regional head does not see the city hospital's own logins
    regional = _audit(web, head="morozov", actor="dev:petrov")
    assert regional == []


# -- Socket.IO -------------------------------------------------------------------------------


def test_socketio_requires_authentication(web: WebServer) -> None:
    anonymous = socketio.Client(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        anonymous.connect(web.url, transports=["websocket"], wait_timeout=5)
    with_cookie = socketio.Client(reconnection=False)
    cookie = web.login("petrov").cookies["consilium_session"]
    with_cookie.connect(web.url, transports=["websocket"],
                        headers={"Cookie": f"consilium_session={cookie}"}, wait_timeout=5)
    try:
        assert with_cookie.call("whoami", timeout=5)["subject"] == "dev:petrov"
    finally:
        with_cookie.disconnect()
    with_token = socketio.Client(reconnection=False)
    with_token.connect(web.url, transports=["websocket"],
                       auth={"token": _signed(web, _claims(web))}, wait_timeout=5)
    try:
        assert with_token.call("whoami", timeout=5)["institution"] == "regional-center"
    finally:
        with_token.disconnect()
    forged = socketio.Client(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        forged.connect(web.url, transports=["websocket"],
                       auth={"token": _signed(web, _claims(web),
                                              RSAKey.generate_key(2048, auto_kid=True))},
                       wait_timeout=5)


def test_provider_discovery_is_plain_http(web: WebServer) -> None:
    metadata = httpx.get(f"{web.url}/dev-idp/.well-known/openid-configuration").json()
    assert metadata["issuer"] == f"{web.url}/dev-idp"
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    keys = httpx.get(metadata["jwks_uri"]).json()["keys"]
    assert keys and all("d" not in k for k in keys)  # never the private part


def test_demo_provider_redirects_only_to_registered_uris(web: WebServer) -> None:
    client = web.client()
    logout = f"{web.url}/dev-idp/logout"
    assert client.get(logout, params={"post_logout_redirect_uri": f"{web.url}/"}).headers[
        "location"] == f"{web.url}/"
    port = web.url.rsplit(":", 1)[1]
    for target in (f"{web.url}@evil.example/", f"http://localhost:{port}.evil.example/",
                   f"{web.url}/elsewhere", f"{web.url}"):
        answer = client.get(logout, params={"post_logout_redirect_uri": target})
        assert answer.status_code == 200 and "location" not in answer.headers, target
    start = client.get("/auth/login/dev").headers["location"]
    assert f"redirect_uri={web.url}/auth/callback/dev".replace(":", "%3A").replace(
        "/", "%2F") in start
    for redirect in (f"{web.url}/auth/callback/dev@evil.example/",
                     f"{web.url}/auth/callback/other", f"{web.url}/auth/callback/dev/x"):
        forged = start.replace(
            f"{web.url}/auth/callback/dev".replace(":", "%3A").replace("/", "%2F"),
            redirect.replace(":", "%3A").replace("/", "%2F").replace("@", "%40"))
        assert client.get(forged).status_code == 400, redirect
