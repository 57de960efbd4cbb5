"""Bearer JWTs: verified against a shared secret (HS256) or an identity provider's JWKS."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import jwt

from agent.namespaces import Owner
from memory.errors import UnavailableError
from server.auth import UnauthorizedError, bearer, owner_of

if TYPE_CHECKING:
    from memory.settings import Settings

#: The algorithms each mode accepts; a token naming another (`none`, HS256 against a public
#: key) is refused before any key is looked at.
SECRET_ALGORITHMS = ("HS256",)
JWKS_ALGORITHMS = ("RS256", "ES256")

_REASONS: tuple[tuple[type[jwt.InvalidTokenError], str], ...] = (
    (jwt.ExpiredSignatureError, "token expired"),
    (jwt.ImmatureSignatureError, "token not yet valid (nbf or iat in the future)"),
    (jwt.InvalidIssuerError, "token has the wrong issuer"),
    (jwt.InvalidAudienceError, "token has the wrong audience"),
    (jwt.InvalidSignatureError, "token has a wrong signature"),
    (jwt.MissingRequiredClaimError, "token lacks a required claim"),
    (jwt.DecodeError, "malformed token"),
)


def _reason(exc: jwt.PyJWTError) -> str:
    for kind, reason in _REASONS:
        if isinstance(exc, kind):
            return f"{reason}: {exc}"
    return f"invalid token: {exc}"


@dataclass
class JwksCache:
    """The signing keys of a JWKS URL, fetched again on an unknown `kid` at most every
    `refresh_seconds`, each fetch bounded by `timeout_seconds`."""

    url: str
    refresh_seconds: float = 60.0
    timeout_seconds: float = 5.0
    keys: dict[str, jwt.PyJWK] = field(default_factory=dict)
    fetched_at: float | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def key(self, kid: str | None) -> jwt.PyJWK:
        """The key with this `kid` (the only key when the token names none).

        Raises:
            UnauthorizedError: no key has that `kid`, even after a fetch.
            UnavailableError: the JWKS could not be fetched and no key is known.
        """
        found = self._find(kid)
        if found is None:
            async with self._lock:
                found = self._find(kid)
                if found is None and self._may_fetch():
                    await self._fetch()
                    found = self._find(kid)
        if found is None:
            named = f"kid {kid!r}" if kid is not None else "a token without kid"
            raise UnauthorizedError(f"unknown signing key: the JWKS has no key for {named}")
        return found

    def _find(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is None:
            return next(iter(self.keys.values())) if len(self.keys) == 1 else None
        return self.keys.get(kid)

    def _may_fetch(self) -> bool:
        return self.fetched_at is None or (
            time.monotonic() - self.fetched_at >= self.refresh_seconds
        )

    async def _fetch(self) -> None:
        try:
            async with httpx.AsyncClient(timeout=self.timeout_seconds) as client:
                response = await client.get(self.url)
                response.raise_for_status()
                data = response.json()
            keys = {
                str(key.key_id): key
                for key in jwt.PyJWKSet.from_dict(data).keys
                if key.algorithm_name in JWKS_ALGORITHMS
            }
        except (httpx.HTTPError, json.JSONDecodeError, jwt.PyJWTError) as exc:
            if self.fetched_at is None or not self.keys:
                raise UnavailableError(f"the JWKS at {self.url} could not be read: {exc}") from exc
            keys = self.keys  # keep serving the keys we have until the provider answers
        self.keys = keys
        self.fetched_at = time.monotonic()


@dataclass
class JwtAuthenticator:
    """The owner named by the claims of a verified bearer JWT."""

    secret: str | None = None
    jwks: JwksCache | None = None
    issuer: str | None = None
    audience: str | None = None
    tenant_claim: str = "tenant"
    user_claim: str = "sub"
    default_tenant: str | None = None
    leeway_seconds: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> JwtAuthenticator:
        """The authenticator of `MEMORY_AGENT_AUTH=jwt` and its `MEMORY_AGENT_JWT_*` settings."""
        jwks = None
        if settings.jwt_jwks_url:
            jwks = JwksCache(
                settings.jwt_jwks_url,
                refresh_seconds=settings.jwt_jwks_refresh_seconds,
                timeout_seconds=settings.jwt_jwks_timeout_seconds,
            )
        secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else None
        return cls(
            secret=secret,
            jwks=jwks,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            tenant_claim=settings.jwt_tenant_claim,
            user_claim=settings.jwt_user_claim,
            default_tenant=settings.jwt_default_tenant,
            leeway_seconds=settings.jwt_leeway_seconds,
        )

    @property
    def dev_mode(self) -> bool:
        """Never: every request needs a token."""
        return False

    @property
    def algorithms(self) -> tuple[str, ...]:
        """The algorithms this mode accepts."""
        return JWKS_ALGORITHMS if self.jwks is not None else SECRET_ALGORITHMS

    async def authenticate(self, headers: Mapping[str, str]) -> Owner:
        """The owner of the request's `Authorization: Bearer <jwt>`."""
        token = bearer(headers)
        if token is None:
            raise UnauthorizedError("missing token: send Authorization: Bearer <jwt>")
        claims = await self.claims(token)
        user = claims.get(self.user_claim)
        if user is None or user == "":
            raise UnauthorizedError(f"token lacks the user claim {self.user_claim!r}")
        tenant = claims.get(self.tenant_claim)
        if tenant is None or tenant == "":
            if self.default_tenant is None:
                raise UnauthorizedError(f"token lacks the tenant claim {self.tenant_claim!r}")
            tenant = self.default_tenant
        return owner_of(_id(tenant), _id(user), "token claims")

    async def claims(self, token: str) -> dict[str, Any]:
        """The claims of a token whose signature, algorithm, times, issuer and audience hold.

        Raises:
            UnauthorizedError: any of them does not, saying which.
        """
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise UnauthorizedError(_reason(exc)) from exc
        algorithm = header.get("alg")
        if algorithm not in self.algorithms:
            raise UnauthorizedError(
                f"token algorithm {algorithm!r} is not accepted: use {', '.join(self.algorithms)}"
            )
        key: Any = self.secret
        if self.jwks is not None:
            kid = header.get("kid")
            jwk = await self.jwks.key(kid if isinstance(kid, str) else None)
            if jwk.algorithm_name != algorithm:
                raise UnauthorizedError(
                    f"token algorithm {algorithm!r} does not match its key's {jwk.algorithm_name!r}"
                )
            key = jwk.key
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                issuer=self.issuer,
                audience=self.audience,
                leeway=self.leeway_seconds,
                options={"require": ["exp"], "verify_aud": self.audience is not None},
            )
        except jwt.InvalidTokenError as exc:
            raise UnauthorizedError(_reason(exc)) from exc


def _id(value: Any) -> Any:
    """Numeric claims (`"sub": 42`) name the same user as their decimal string."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value
