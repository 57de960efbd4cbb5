"""Who the caller is: the authenticators that turn request headers into an `Owner`."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from agent.namespaces import InvalidIdError, Owner

if TYPE_CHECKING:
    from memory.settings import Settings

#: The owner every request acts for when no API keys are configured.
DEV_OWNER = Owner(tenant="default", user="local")


class AuthConfigError(ValueError):
    """The identity settings cannot be served (a malformed key list, say)."""


class ApiKeyConfigError(AuthConfigError):
    """`MEMORY_AGENT_API_KEYS` has an entry that is not `key=tenant/user`."""


class UnauthorizedError(Exception):
    """The request's credential is missing or not accepted; the message says which."""


class Authenticator(Protocol):
    """Turns the headers of a request into the owner it acts for."""

    @property
    def dev_mode(self) -> bool:
        """True when every request acts as `DEV_OWNER` without a credential."""
        ...

    async def authenticate(self, headers: Mapping[str, str]) -> Owner:
        """The owner of a request with these headers (names compared case-insensitively).

        Raises:
            UnauthorizedError: the credential is missing or not accepted.
        """
        ...


def bearer(headers: Mapping[str, str]) -> str | None:
    """The credential of `Authorization: Bearer <it>`, else of `x-api-key: <it>`."""
    scheme, _, value = (headers.get("authorization") or "").strip().partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    api_key = (headers.get("x-api-key") or "").strip()
    return api_key or None


def owner_of(tenant: object, user: object, source: str) -> Owner:
    """The owner named by an identity source, or a 401 saying which id is unusable."""
    try:
        return Owner(tenant=tenant, user=user)  # type: ignore[arg-type]
    except (InvalidIdError, TypeError) as exc:
        raise UnauthorizedError(f"{source}: {exc}") from exc


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True)
class KeyRing:
    """The configured API keys and the owner each one acts for."""

    owners: dict[bytes, Owner] = field(default_factory=dict)

    @property
    def dev_mode(self) -> bool:
        """True when no keys are configured: every request acts as `DEV_OWNER`."""
        return not self.owners

    @classmethod
    def parse(cls, spec: str) -> KeyRing:
        """Read `key=tenant/user,key2=tenant/user2`.

        Raises:
            ApiKeyConfigError: an entry is malformed, an id is invalid or a key repeats.
        """
        owners: dict[bytes, Owner] = {}
        for number, entry in enumerate(spec.split(","), start=1):
            entry = entry.strip()
            if not entry:
                continue
            key, sep, who = entry.partition("=")
            tenant, slash, user = who.strip().partition("/")
            if not sep or not slash or not key.strip():
                raise ApiKeyConfigError(
                    f"MEMORY_AGENT_API_KEYS entry {number} is not key=tenant/user"
                )
            try:
                owner = Owner(tenant=tenant.strip(), user=user.strip())
            except InvalidIdError as exc:
                raise ApiKeyConfigError(f"MEMORY_AGENT_API_KEYS entry {number}: {exc}") from exc
            digest = _digest(key.strip())
            if digest in owners:
                raise ApiKeyConfigError(f"MEMORY_AGENT_API_KEYS entry {number} repeats a key")
            owners[digest] = owner
        return cls(owners)

    def owner_for(self, authorization: str | None) -> Owner:
        """The owner of an `Authorization: Bearer <key>` header value.

        Raises:
            UnauthorizedError: keys are configured and the header is missing or unknown.
        """
        if self.dev_mode:
            return DEV_OWNER
        scheme, _, key = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise UnauthorizedError(
                "missing API key: send Authorization: Bearer <key> or x-api-key: <key>"
            )
        digest = _digest(key.strip())
        # Compare against every digest so the time taken does not depend on which one matched.
        found: Owner | None = None
        for known, owner in self.owners.items():
            if hmac.compare_digest(known, digest):
                found = owner
        if found is None:
            raise UnauthorizedError("unknown API key")
        return found

    async def authenticate(self, headers: Mapping[str, str]) -> Owner:
        """The owner of the request's `Authorization: Bearer` or `x-api-key` key."""
        key = bearer(headers)
        return self.owner_for(f"Bearer {key}" if key else None)


@dataclass(frozen=True)
class GatewayAuthenticator:
    """Tenant and user from headers a trusted proxy sets, with the secret it shares."""

    secret: str
    tenant_header: str = "X-Tenant-Id"
    user_header: str = "X-User-Id"
    secret_header: str = "X-Gateway-Secret"

    @property
    def dev_mode(self) -> bool:
        """Never: every request needs the gateway's secret."""
        return False

    async def authenticate(self, headers: Mapping[str, str]) -> Owner:
        """The owner named by the gateway's headers, once its secret matches."""
        sent = headers.get(self.secret_header)
        if not sent:
            raise UnauthorizedError(f"missing gateway secret: send {self.secret_header}")
        if not hmac.compare_digest(_digest(sent), _digest(self.secret)):
            raise UnauthorizedError(f"wrong gateway secret in {self.secret_header}")
        tenant, user = headers.get(self.tenant_header), headers.get(self.user_header)
        for name, value in ((self.tenant_header, tenant), (self.user_header, user)):
            if not value:
                raise UnauthorizedError(f"missing gateway header {name}")
        return owner_of(tenant, user, "gateway headers")


def build_authenticator(settings: Settings) -> Authenticator:
    """The authenticator `settings.auth` chooses.

    Raises:
        AuthConfigError: the settings of that mode cannot be served.
    """
    mode = settings.auth_mode
    if mode == "gateway":
        assert settings.gateway_secret is not None  # Settings refuses gateway mode without
        return GatewayAuthenticator(
            secret=settings.gateway_secret.get_secret_value(),
            tenant_header=settings.gateway_tenant_header,
            user_header=settings.gateway_user_header,
        )
    if mode == "sdk":
        from server.sdk_auth import SdkAuthenticator

        return SdkAuthenticator.load(settings.auth.strip())
    if mode == "jwt":
        from server.tokens import JwtAuthenticator

        return JwtAuthenticator.from_settings(settings)
    return KeyRing.parse(settings.api_keys)
