"""Fixtures of the server tests: the backend URL, apps with their lifespan run, API users.

Every server test gets its backend from `app_url` (parametrised over the backends in
`SERVER_BACKENDS`) and isolates itself with users and thread ids of its own, so the same
database can serve a whole module.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ConfigDict, Field

from agent import OfflineChatModel
from memory.settings import Settings
from server.app import create_app

#: Backends every server test runs on; `postgres` and `redis` use the service fixtures.
SERVER_BACKENDS = ("memory", "sqlite", "postgres", "redis")


@pytest.fixture(scope="module", params=SERVER_BACKENDS)
def app_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The database URL of the backend under test (one database per module and backend)."""
    kind = request.param
    if kind == "memory":
        return "memory://"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('server') / 'agent.sqlite'}"
    return request.getfixturevalue(f"{kind}_url")


def fresh_id(prefix: str) -> str:
    """An id no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class Api:
    """A running app, an HTTP client on it, and users with their API keys."""

    app: FastAPI
    client: httpx.AsyncClient
    keys: dict[str, str] = dc_field(default_factory=dict)
    owners: dict[str, tuple[str, str]] = dc_field(default_factory=dict)

    def auth(self, user: str) -> dict[str, str]:
        """The Authorization header of `user`."""
        return {"Authorization": f"Bearer {self.keys[user]}"}

    async def request(self, user: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send a request as `user`."""
        headers = {**self.auth(user), **kwargs.pop("headers", {})}
        return await self.client.request(method, url, headers=headers, **kwargs)

    async def run(self, user: str, thread_id: str, text: str) -> httpx.Response:
        """Send one message on a thread as `user`."""
        return await self.request(
            user, "POST", f"/threads/{thread_id}/runs", json={"message": text}
        )


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan and yield a client speaking ASGI to it."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


ApiFactory = Callable[..., Any]


@pytest.fixture
def make_api(app_url: str) -> ApiFactory:
    """Start an app on `app_url` with fresh users `alice`, `bob`, `carol` and overrides.

    Use as `async with make_api(runs_per_minute=2) as api: ...`.
    """

    @asynccontextmanager
    async def make(
        users: tuple[str, ...] = ("alice", "bob", "carol"),
        chat_model: Any = None,
        **overrides: Any,
    ) -> AsyncIterator[Api]:
        keys = {name: fresh_id(f"key-{name}") for name in users}
        owners = {name: ("acme", fresh_id(name)) for name in users}
        spec = ",".join(f"{keys[n]}={owners[n][0]}/{owners[n][1]}" for n in users)
        settings = Settings(
            database_url=app_url, api_keys=spec, **{"sweep_interval_seconds": 3600, **overrides}
        )
        app = create_app(settings, chat_model=chat_model)
        async with running(app) as client:
            yield Api(app=app, client=client, keys=keys, owners=owners)

    return make


@pytest.fixture
async def api(make_api: ApiFactory) -> AsyncIterator[Api]:
    """An app with default limits and three fresh users."""
    async with make_api() as running_api:
        yield running_api


def sse_events(text: str) -> list[tuple[str, Any]]:
    """Parse a server-sent-events body into `(event, data)` pairs."""
    events = []
    for block in text.split("\n\n"):
        name, data = "message", None
        for line in block.splitlines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = json.loads(line.removeprefix("data: "))
        if data is not None:
            events.append((name, data))
    return events


class GatedModel(OfflineChatModel):
    """The offline model, held at each call until the test opens its gate.

    `entered` is set when a call is waiting, so a test knows a run is in progress without
    sleeping; `gate.set()` lets every call through.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)
    gate: asyncio.Event = Field(default_factory=asyncio.Event)
    entered: asyncio.Event = Field(default_factory=asyncio.Event)

    async def _agenerate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kw: Any):
        self.entered.set()
        await self.gate.wait()
        return await super()._agenerate(messages, stop, run_manager, **kw)

    async def _astream(self, messages: Any, stop: Any = None, run_manager: Any = None, **kw: Any):
        self.entered.set()
        await self.gate.wait()
        async for chunk in super()._astream(messages, stop, run_manager, **kw):
            yield chunk
