"""Identity from a `langgraph_sdk.Auth` object's `@auth.authenticate` handler, and its
`@auth.on` handlers applied to what the caller does (`Policy`)."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import HTTPException

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
    #: The `Auth` object, for its `on` handlers (`Policy`).
    auth: Any = None

    @classmethod
    def load(cls, path: str) -> SdkAuthenticator:
        """The handler of the `Auth` object `package.module:attribute` names.

        Raises:
            AuthConfigError: it cannot be imported, is no `Auth` object, has no authenticate
                handler, or the handler asks for a parameter not served.
        """
        from langgraph_sdk import Auth

        module_name, _, attribute = path.rpartition(":")
        try:
            auth = getattr(_module(module_name), attribute)
        except (ImportError, AttributeError, OSError) as exc:
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
        return cls(handler, wants, auth)

    @property
    def dev_mode(self) -> bool:
        """Never: the handler decides every request."""
        return False

    async def authenticate(self, headers: Mapping[str, str]) -> Owner:
        """The owner the handler returns for these headers."""
        return (await self.identify(headers))[0]

    async def identify(self, headers: Mapping[str, str]) -> tuple[Owner, Policy]:
        """The owner the handler returns for these headers, and the policy its `on`
        handlers make for that user."""
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
        owner = owner_of(_field(user, "tenant") or "default", _identity(user), "auth handler")
        permissions, user = _permissions(user)
        return owner, Policy(self.auth, _User(user), tuple(permissions))


def _module(name: str) -> Any:
    """A module by its import name, or by its file (`path/to/auth.py`, as `langgraph.json`'s
    `auth.path` names one)."""
    if not (name.endswith(".py") or "/" in name):
        return importlib.import_module(name)
    spec = importlib.util.spec_from_file_location(f"memory_agent_auth_{abs(hash(name))}", name)
    if spec is None or spec.loader is None:
        raise ImportError(f"no Python file at {name}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def _permissions(response: Any) -> tuple[list[str], Any]:
    """The permissions and the user of what an authenticate handler returned, read as
    LangGraph's server reads them: a `(permissions, user)` pair, a `permissions` attribute
    or key, or none."""
    if isinstance(response, tuple) and len(response) == 2:
        permissions, user = response
    elif isinstance(response, Mapping):
        permissions, user = response.get("permissions") or [], response
    else:
        permissions, user = getattr(response, "permissions", None) or [], response
    return [str(p) for p in permissions], user


class _User:
    """The user an `on` handler sees as `ctx.user`: `identity`, `is_authenticated`,
    `display_name`, and every field of what the authenticate handler returned, by key or
    attribute."""

    def __init__(self, user: Any) -> None:
        self._user = user

    @property
    def identity(self) -> str:
        return str(_identity(self._user))

    @property
    def is_authenticated(self) -> bool:
        return bool(_field(self._user, "is_authenticated") is not False)

    @property
    def display_name(self) -> str:
        return str(_field(self._user, "display_name") or self.identity)

    def __getitem__(self, key: str) -> Any:
        if isinstance(self._user, Mapping):
            return self._user[key]
        try:
            return getattr(self._user, key)
        except AttributeError:
            raise KeyError(key) from None

    def __contains__(self, key: str) -> bool:
        return _field(self._user, key) is not None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def get(self, key: str, default: Any = None) -> Any:
        found = _field(self._user, key)
        return default if found is None else found


Filter = dict[str, Any]


@dataclass(frozen=True)
class Policy:
    """What a `langgraph_sdk.Auth` object's `on` handlers allow one caller.

    `check(resource, action, value)` runs the most specific handler, as LangGraph's server
    does: `(resource, action)`, `(resource, "*")`, `("*", action)`, `("*", "*")`, then the
    global one. It may change `value` in place (the metadata of what is created, a store
    namespace): the caller goes on with what it left. `None` or `True` allows, `False` or an
    `AssertionError` is a 403, `Auth.exceptions.HTTPException` its own status; a dict is a
    filter on metadata (`{key: value}`, `{key: {"$eq": value}}`, `{key: {"$contains":
    value}}`) that what the caller reads must match.
    """

    auth: Any = None
    user: Any = None
    permissions: tuple[str, ...] = field(default=())

    @property
    def active(self) -> bool:
        """Whether any `on` handler is set."""
        return self.auth is not None and bool(self.auth._handlers or self.auth._global_handlers)

    def _handler(self, resource: str, action: str) -> Callable[..., Any] | None:
        handlers = self.auth._handlers
        for key in ((resource, action), (resource, "*"), ("*", action), ("*", "*")):
            if key in handlers:
                return handlers[key][-1]  # type: ignore[no-any-return]
        return self.auth._global_handlers[-1] if self.auth._global_handlers else None

    async def check(self, resource: str, action: str, value: dict[str, Any]) -> Filter | None:
        """Ask the handler for `resource`/`action` about `value`; the filter it returns."""
        if not self.active:
            return None
        handler = self._handler(resource, action)
        if handler is None:
            return None
        from langgraph_sdk import Auth

        ctx = Auth.types.AuthContext(
            user=self.user,
            permissions=list(self.permissions),
            resource=resource,  # type: ignore[arg-type]
            action=action,  # type: ignore[arg-type]
        )
        try:
            result = await handler(ctx=ctx, value=value)
        except Auth.exceptions.HTTPException as exc:
            headers = dict(exc.headers) if exc.headers else None
            raise HTTPException(exc.status_code, exc.detail or "forbidden", headers) from exc
        except AssertionError as exc:
            raise HTTPException(403, str(exc) or f"{resource} {action}: forbidden") from exc
        if result is None or result is True:
            return None
        if result is False:
            raise HTTPException(403, f"{resource} {action}: forbidden by the auth policy")
        if not isinstance(result, dict):
            raise TypeError(
                f"the auth handler for {resource} {action} returned {type(result).__name__}; "
                "expected a filter dict, None or a bool"
            )
        return result


#: The policy of a server with no `on` handlers: everything the caller owns is allowed.
OPEN = Policy()


def matches(metadata: Mapping[str, Any] | None, wanted: Filter | None) -> bool:
    """Whether `metadata` passes a handler's filter."""
    metadata = metadata or {}
    for key, condition in (wanted or {}).items():
        have = metadata.get(key)
        if isinstance(condition, Mapping) and condition and set(condition) <= {"$eq", "$contains"}:
            if "$eq" in condition and have != condition["$eq"]:
                return False
            if "$contains" in condition:
                needle = condition["$contains"]
                needles = needle if isinstance(needle, list) else [needle]
                if not isinstance(have, list) or any(n not in have for n in needles):
                    return False
        elif have != condition:
            return False
    return True
