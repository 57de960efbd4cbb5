"""Identity from a `langgraph_sdk.Auth` object's `@auth.authenticate` handler."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from agent.namespaces import Owner
from server.auth import AuthConfigError, UnauthorizedError, owner_of

#: The handler parameters served: what LangGraph's server passes that a header set gives.
PARAMETERS = ("authorization", "headers")


@dataclass(frozen=True)
class SdkAuthenticator:
    """The owner a `langgraph_sdk.Auth` authenticate handler returns for a request's headers.

    The handler's user (a string, a dict with `identity`, or an object with `.identity`) is
    the user; its `tenant` key or attribute, when it has one, is the tenant, else `default`.
    `Auth.exceptions.HTTPException` from the handler is a 401 with its `detail`.
    """

    handler: Callable[..., Any]
    wants: tuple[str, ...]

    @classmethod
    def load(cls, path: str) -> SdkAuthenticator:
        """The handler of the `Auth` object `package.module:attribute` names.

        Raises:
            AuthConfigError: it cannot be imported, is no `Auth` object, has no authenticate
                handler, or the handler asks for a parameter not served.
        """
        from langgraph_sdk import Auth

        module_name, _, attribute = path.partition(":")
        try:
            auth = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as exc:
            raise AuthConfigError(f"MEMORY_AGENT_AUTH={path}: cannot be imported: {exc}") from exc
        if not isinstance(auth, Auth):
            raise AuthConfigError(f"MEMORY_AGENT_AUTH={path} is not a langgraph_sdk.Auth")
        handler = auth._authenticate_handler
        if handler is None:
            raise AuthConfigError(f"MEMORY_AGENT_AUTH={path} has no @auth.authenticate handler")
        wants = tuple(inspect.signature(handler).parameters)
        unserved = [name for name in wants if name not in PARAMETERS]
        if unserved:
            raise AuthConfigError(
                f"MEMORY_AGENT_AUTH={path}: the authenticate handler asks for {unserved}; "
                f"only {', '.join(PARAMETERS)} are passed"
            )
        return cls(handler, wants)

    @property
    def dev_mode(self) -> bool:
        """Never: the handler decides every request."""
        return False

    async def authenticate(self, headers: Mapping[str, str]) -> Owner:
        """The owner the handler returns for these headers."""
        from langgraph_sdk import Auth

        raw = {
            name.lower().encode("latin-1"): value.encode("latin-1")
            for name, value in headers.items()
        }
        given: dict[str, Any] = {"headers": raw, "authorization": headers.get("authorization")}
        try:
            user = self.handler(**{name: given[name] for name in self.wants})
            if inspect.isawaitable(user):
                user = await user
        except Auth.exceptions.HTTPException as exc:
            raise UnauthorizedError(str(exc.detail or "not authenticated")) from exc
        return owner_of(_field(user, "tenant") or "default", _identity(user), "auth handler")


def _field(user: Any, name: str) -> Any:
    if isinstance(user, Mapping):
        return user.get(name)
    return getattr(user, name, None)


def _identity(user: Any) -> Any:
    if isinstance(user, str):
        return user
    identity = _field(user, "identity")
    if identity is None:
        raise UnauthorizedError("auth handler: the user it returned has no identity")
    return identity
