"""OpenID provider metadata, JWKS and JWT validation: the one code path for ID tokens of the
browser login and bearer access tokens of API clients, for every provider.

Refused: a signature that does not verify, an unknown key id (after one JWKS refresh), an
algorithm outside the provider's allow-list (so ``alg=none`` and HMAC signed with the public key
are refused before any key is used), a wrong issuer or audience, expired or not-yet-valid tokens,
and a wrong nonce in ID tokens. A bearer token must moreover be an access token: of a type the
provider's ``api_token_types`` lists, for one of its ``api_audiences``, and not an ID token (an ID
token says who logged in to Consilium, it grants no access to an API).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from consilium.settings import OidcProvider, token_type

METADATA_TTL = 3600.0
JWKS_MIN_REFRESH = 30.0  # an unknown kid refreshes the JWKS, at most this often
LEEWAY = 60  # seconds of clock skew tolerated for exp/nbf/iat
# claims that only ID tokens carry (OIDC Core 2, 3.3.2.11); Keycloak also types its tokens
ID_TOKEN_CLAIMS = ("nonce", "at_hash", "c_hash", "s_hash")
KEYCLOAK_ID_TYPES = ("id", "id_token")


class TokenError(Exception):
    """A token was refused; the message says why (safe to log, not to show to attackers)."""


@dataclass
class ProviderKeys:
    provider: OidcProvider
    metadata: dict[str, Any] = field(default_factory=dict)
    metadata_at: float = 0.0
    keys: KeySet | None = None
    keys_at: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class ProviderDirectory:
    """Discovery and JWKS of every configured provider, fetched over HTTP and cached."""

    def __init__(self, providers: list[OidcProvider], http: httpx.AsyncClient | None = None):
        self.providers = {p.id: ProviderKeys(p) for p in providers}
        self.http = http or httpx.AsyncClient(timeout=10.0, follow_redirects=False)

    async def metadata(self, provider_id: str) -> dict[str, Any]:
        entry = self.providers[provider_id]
        async with entry.lock:
            if not entry.metadata or time.monotonic() - entry.metadata_at > METADATA_TTL:
                url = entry.provider.issuer.rstrip("/") + "/.well-known/openid-configuration"
                response = await self.http.get(url)
                response.raise_for_status()
                metadata = response.json()
                if metadata.get("issuer") != entry.provider.issuer:
                    raise TokenError(
                        f"discovery of {provider_id} names issuer {metadata.get('issuer')!r}, "
                        f"configured {entry.provider.issuer!r}"
                    )
                entry.metadata, entry.metadata_at = metadata, time.monotonic()
            return entry.metadata

    async def keyset(self, provider_id: str, kid: str | None) -> KeySet:
        entry = self.providers[provider_id]
        metadata = await self.metadata(provider_id)
        async with entry.lock:
            stale = entry.keys is None or (
                kid is not None
                and not _has_kid(entry.keys, kid)
                and time.monotonic() - entry.keys_at > JWKS_MIN_REFRESH
            )
            if stale:
                response = await self.http.get(metadata["jwks_uri"])
                response.raise_for_status()
                entry.keys = KeySet.import_key_set(response.json())
                entry.keys_at = time.monotonic()
            assert entry.keys is not None
            return entry.keys

    def provider_for_issuer(self, issuer: str) -> OidcProvider | None:
        return next(
            (e.provider for e in self.providers.values() if e.provider.issuer == issuer), None
        )

    async def validate(
        self, provider_id: str, token: str, audience: str, nonce: str | None = None
    ) -> dict[str, Any]:
        """Verify the ID token ``token`` from ``provider_id`` for client ``audience``; return
        its claims or raise TokenError."""
        claims = await self._verified_claims(self.providers[provider_id].provider, token)
        if audience not in _audiences(claims):
            raise TokenError(f"audience {claims.get('aud')!r} does not include {audience!r}")
        if nonce is not None and claims.get("nonce") != nonce:
            raise TokenError("nonce does not match the login")
        return claims

    async def validate_bearer(self, token: str) -> tuple[OidcProvider, dict[str, Any]]:
        """A bearer access token from any configured provider (chosen by its ``iss``)."""
        issuer = unverified_claims(token).get("iss")
        provider = self.provider_for_issuer(issuer) if isinstance(issuer, str) else None
        if provider is None:
            raise TokenError(f"issuer {issuer!r} is not a configured provider")
        typ = unverified_header(token).get("typ")
        if not isinstance(typ, str | None) or token_type(typ) not in provider.api_token_types:
            raise TokenError(f"token type {typ!r} is not accepted from {provider.id}")
        claims = await self._verified_claims(provider, token)
        if is_id_token(claims):
            raise TokenError("an ID token is not an access token")
        offered = _audiences(claims, split_words=True)
        if not offered & provider.bearer_audiences:
            raise TokenError(f"audience {claims.get('aud')!r} is none of "
                             f"{sorted(provider.bearer_audiences)}")
        return provider, claims

    async def _verified_claims(self, provider: OidcProvider, token: str) -> dict[str, Any]:
        """Signature, issuer, expiry and subject of any token of ``provider``."""
        header = unverified_header(token)
        alg = header.get("alg")
        if alg not in provider.algorithms:
            raise TokenError(f"algorithm {alg!r} is not allowed for {provider.id}")
        kid = header.get("kid")
        keys = await self.keyset(provider.id, kid if isinstance(kid, str) else None)
        if isinstance(kid, str) and not _has_kid(keys, kid):
            raise TokenError(f"unknown key id {kid!r}")
        try:
            decoded = jwt.decode(token, keys, algorithms=provider.algorithms)
        except (JoseError, ValueError) as exc:
            raise TokenError(f"signature not valid: {type(exc).__name__}") from exc
        claims = dict(decoded.claims)
        registry = jwt.JWTClaimsRegistry(
            leeway=LEEWAY,
            iss={"essential": True, "value": provider.issuer},
            exp={"essential": True},
            sub={"essential": True},
        )
        try:
            registry.validate(claims)
        except JoseError as exc:
            raise TokenError(f"claims not valid: {exc.error}: {exc.description}") from exc
        return claims

    async def aclose(self) -> None:
        await self.http.aclose()


def is_id_token(claims: dict[str, Any]) -> bool:
    """True for claims that only an ID token has."""
    if any(name in claims for name in ID_TOKEN_CLAIMS):
        return True
    typ = claims.get("typ")
    return isinstance(typ, str) and typ.lower() in KEYCLOAK_ID_TYPES


def _audiences(claims: dict[str, Any], split_words: bool = False) -> set[str]:
    """The ``aud`` values; with ``split_words``, a string of space-separated words also counts
    as each word (Glewlwyd's access tokens carry the granted scopes as their audience)."""
    aud = claims.get("aud")
    values: list[str] = []
    if isinstance(aud, str):
        values = [aud]
    elif isinstance(aud, list):
        values = [a for a in aud if isinstance(a, str)]
    found = set(values)
    if split_words:
        for value in values:
            found.update(value.split())
    return found


def _has_kid(keys: KeySet, kid: str) -> bool:
    return any(k.kid == kid for k in keys.keys)


def _segment(token: str, index: int) -> dict[str, Any]:
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError("not a compact JWS")
    try:
        raw = base64.urlsafe_b64decode(parts[index] + "=" * (-len(parts[index]) % 4))
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise TokenError("malformed token") from exc
    if not isinstance(value, dict):
        raise TokenError("malformed token")
    return value


def unverified_header(token: str) -> dict[str, Any]:
    return _segment(token, 0)


def unverified_claims(token: str) -> dict[str, Any]:
    """Only to pick the provider; nothing is trusted before :meth:`validate`."""
    return _segment(token, 1)
