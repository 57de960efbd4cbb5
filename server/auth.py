"""Bearer-key authentication: which tenant and user a request acts for."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from agent.namespaces import InvalidIdError, Owner

#: The owner every request acts for when no API keys are configured.
DEV_OWNER = Owner(tenant="default", user="local")


class ApiKeyConfigError(ValueError):
    """`MEMORY_AGENT_API_KEYS` has an entry that is not `key=tenant/user`."""


class UnauthorizedError(Exception):
    """The request carries no API key, or one the server does not know."""


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
