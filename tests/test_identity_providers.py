"""Configured identity providers: a provider that goes away during a login, and configurations
that could never log anybody in, which must stop the start instead of failing the first login."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from joserfc import jwt

from consilium.identity.models import Role
from consilium.settings import ROLE_NAMES, load_settings
from tests.conftest import CONFIG, CONSILIUM, free_port
from tests.oidc_provider import StandaloneProvider
from tests.webserver import WebServer


def _provider(issuer: str, **extra: object) -> dict[str, object]:
    return {"id": "ext", "name": "External login", "issuer": issuer, "client_id": "consilium",
            **extra}


def test_provider_unreachable_at_the_token_exchange(tmp_path: Path) -> None:
    web = WebServer(tmp_path / "var")
    provider = StandaloneProvider(web.url, tmp_path / "ext-keys")
    web.extra_env["CONSILIUM_IDENTITY_PROVIDERS"] = json.dumps([_provider(provider.issuer)])
    provider.start()
    web.start()
    try:
        # a whole login through it works while it is up
        assert web.login("petrov", provider="ext").get("/api/me").json()["institution"] == \
            "city-hospital"
        client = web.client()
        start = client.get("/auth/login/ext")
        assert start.headers["location"].startswith(f"{provider.issuer}/authorize?")
        answer = client.post(start.headers["location"],
                             data={"username": "kuznetsova", "password": "demo"})
        assert answer.status_code == 302
        provider.stop()  # gone between the login form and the token exchange
        callback = client.get(answer.headers["location"], headers={"Accept-Language": "en"})
        assert callback.status_code == 502, callback.text
        assert "cannot be reached" in callback.text  # in the language asked for
        assert "consilium_session" not in callback.headers.get("set-cookie", "")
        rows = web.login("city-admin").get("/api/audit", params={
            "action": "login-failed"}).json()
        reasons = [json.loads(r["detail"]) for r in rows]
        assert {"reason": "provider unreachable: ConnectError", "provider": "ext"} in reasons
    finally:
        web.stop()
        provider.stop()


def _refused_start(tmp_path: Path, providers: list[dict[str, object]]) -> str:
    """``consilium serve`` with these providers: it must exit at once, saying why."""
    env = dict(os.environ, CONSILIUM_IDENTITY_PROVIDERS=json.dumps(providers))
    env.pop("CONSILIUM_CONFIG", None)
    env.pop("CONSILIUM_TEST_SECRET", None)
    port = free_port()
    proc = subprocess.run(
        [str(CONSILIUM), "serve", "--config", str(CONFIG), "--data-dir", str(tmp_path / "var"),
         "--http-port", str(port), "--dicom-port", str(free_port()), "--no-demo"],
        env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "invalid configuration" in proc.stderr
    assert not (tmp_path / "var").exists()  # stopped before it touched anything
    return proc.stderr


@pytest.mark.parametrize(("extra", "says"), [
    ({"client_secret_env": "CONSILIUM_TEST_SECRET"}, "CONSILIUM_TEST_SECRET"),
    ({"client_secret_file": "/nonexistent/ext.secret"}, "/nonexistent/ext.secret"),
    ({"institution": "nowhere"}, "'nowhere', which is not configured"),
    ({"role_map": {"chief": "boss", "physician": "referring"}}, "'chief': 'boss'"),
])
def test_a_configuration_that_cannot_log_anybody_in_stops_the_start(
        tmp_path: Path, extra: dict[str, object], says: str) -> None:
    started = time.monotonic()
    stderr = _refused_start(tmp_path, [_provider("https://sso.example/realms/x", **extra)])
    assert says in stderr
    assert time.monotonic() - started < 30


def test_secrets_are_read_from_where_the_configuration_says(tmp_path: Path) -> None:
    secret = tmp_path / "ext.secret"
    secret.write_text("s3cret\n")
    empty = tmp_path / "empty.secret"
    empty.write_text("\n")
    settings = load_settings(CONFIG, {"identity_providers": [
        _provider("https://a.example", client_secret_file=str(secret)),
        {**_provider("https://b.example", client_secret_env="B_SECRET"), "id": "b"},
    ]}, environ={})
    settings.check_client_secrets({"B_SECRET": "x"})
    assert settings.client_secret(settings.identity_providers[0]) == "s3cret"
    with pytest.raises(ValueError, match="B_SECRET"):
        settings.check_client_secrets({})
    with pytest.raises(ValueError, match="is empty"):
        load_settings(CONFIG, {"identity_providers": [
            _provider("https://a.example", client_secret_file=str(empty))]},
            environ={}).check_client_secrets({})
    with pytest.raises(ValueError, match="not both"):
        load_settings(CONFIG, {"identity_providers": [_provider(
            "https://a.example", client_secret_file=str(secret), client_secret_env="X")]},
            environ={})
    with pytest.raises(ValueError, match="unique"):
        load_settings(CONFIG, {"identity_providers": [_provider("https://a.example"),
                                                      _provider("https://b.example")]},
                      environ={})


def test_role_names_of_the_settings_are_the_roles() -> None:
    assert {r.value for r in Role} == ROLE_NAMES


def test_configured_audiences_and_token_types_for_bearer_tokens(tmp_path: Path) -> None:
    """A provider configured as for Glewlwyd (its access tokens carry the granted scopes as
    their audience) that accepts only RFC 9068 access tokens."""
    web = WebServer(tmp_path / "var")
    web.extra_env["CONSILIUM_IDENTITY_PROVIDERS"] = json.dumps([{
        "id": "dev", "name": "Demo", "issuer": f"{web.url}/dev-idp", "client_id": "consilium",
        "api_audiences": ["consilium-api"], "api_token_types": ["application/at+jwt"]}])
    web.start()
    try:
        assert web.login("petrov").get("/api/me").status_code == 200  # ID tokens: client_id
        key = web.signing_key()

        def status(aud: object, typ: str | None = "at+jwt", **extra: object) -> int:
            now = int(time.time())
            claims = {"iss": f"{web.url}/dev-idp", "aud": aud, "sub": "pacs-bridge",
                      "iat": now, "exp": now + 300, "institution": "city-hospital",
                      "roles": ["consultant"], **extra}
            header = {"alg": "RS256", "kid": key.kid, **({"typ": typ} if typ else {})}
            token = jwt.encode(header, claims, key, ["RS256"])
            return web.client().get("/api/studies", headers={
                "Authorization": f"Bearer {token}"}).status_code

        assert status("openid consilium-api") == 200  # Glewlwyd: the scope list as aud
        assert status(["other", "consilium-api"]) == 200
        assert status("consilium-api", typ="AT+JWT") == 200
        assert status("openid profile email") == 401
        assert status("consilium") == 401  # the client id is not a configured audience here
        assert status("consilium-api", typ=None) == 401  # a plain JWT is not accepted here
        assert status("consilium-api", typ="JWT") == 401
        assert status("consilium-api", nonce="n") == 401  # an ID token's claim
    finally:
        web.stop()
