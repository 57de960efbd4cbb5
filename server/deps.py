"""FastAPI dependencies: the objects the lifespan opened, and the caller's identity."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Path, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from agent.namespaces import ID_PATTERN, Owner
from memory.errors import UnavailableError
from memory.sessions import SessionManager
from memory.settings import Settings
from memory.stores.factory import Backends
from server import logs
from server.auth import Authenticator
from server.sdk_auth import OPEN, Policy

if TYPE_CHECKING:
    from server.runner import Runner

_bearer = HTTPBearer(
    auto_error=False,
    description="`Authorization: Bearer <key>`: a key of MEMORY_AGENT_API_KEYS, or a JWT "
    "when MEMORY_AGENT_AUTH=jwt.",
)

_api_key = APIKeyHeader(
    name="x-api-key",
    auto_error=False,
    description="`x-api-key: <key>` (what the LangGraph SDKs send); the same keys as Bearer.",
)


async def get_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    return request.app.state.settings


def _opened(request: Request, name: str) -> Any:
    """What the lifespan opened, or a 503 while the database has not been reached."""
    value = getattr(request.app.state, name, None)
    if value is None:
        raise UnavailableError(request.app.state.connector.reason)
    return value


async def get_backends(request: Request) -> Backends:
    """The checkpointer and store opened by the lifespan."""
    return _opened(request, "backends")


async def get_sessions(request: Request) -> SessionManager:
    """The session service: every transition and read the routes need."""
    return _opened(request, "sessions")


async def get_runner(request: Request) -> Runner:
    """The run core of this process: runs as records of the shared database."""
    runner: Runner = request.app.state.runner
    return runner


async def get_owner(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> Owner:
    """The tenant and user the configured authenticator reads from the request's headers
    (`default/local` in development mode); `credentials` and `api_key` document the headers
    in the OpenAPI schema."""
    authenticator: Authenticator = request.app.state.auth
    identify = getattr(authenticator, "identify", None)
    if identify is not None:  # an `Auth` object's handlers: the policy they make for the user
        owner, request.state.policy = await identify(request.headers)
    else:
        owner = await authenticator.authenticate(request.headers)
    logs.identify(owner)
    return owner


async def get_policy(request: Request, owner: Annotated[Owner, Depends(get_owner)]) -> Policy:
    """What the application's `Auth` handlers allow the caller (everything it owns when
    there are none)."""
    return getattr(request.state, "policy", OPEN)


SettingsDep = Annotated[Settings, Depends(get_settings)]
BackendsDep = Annotated[Backends, Depends(get_backends)]
SessionsDep = Annotated[SessionManager, Depends(get_sessions)]
RunnerDep = Annotated["Runner", Depends(get_runner)]
OwnerDep = Annotated[Owner, Depends(get_owner)]
PolicyDep = Annotated[Policy, Depends(get_policy)]
ThreadId = Annotated[
    str, Path(pattern=ID_PATTERN, description="The thread's id: 1-128 of A-Z a-z 0-9 _-:@.")
]
MemoryKey = Annotated[
    str, Path(pattern=ID_PATTERN, description="The memory's key: 1-128 of A-Z a-z 0-9 _-:@.")
]
