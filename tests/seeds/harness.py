"""What every seed script shares: an app on the seed's backend, its users, a clock to move.

Each seed's client is replayed through the HTTP API of an app running in process (its
lifespan run, real backends). Users are the seed's own ids under a tenant no other test uses,
so scripts on the shared Postgres and Redis servers never see each other's sessions.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from memory.settings import Settings
from server.app import create_app
from tests.plugins.server import Api, running


def fresh_tenant(name: str) -> str:
    """A tenant id no other test uses."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


@asynccontextmanager
async def seed_api(
    database_url: str, users: dict[str, tuple[str, str]], **overrides: Any
) -> AsyncIterator[Api]:
    """An app on `database_url` whose API keys act for `users` (name -> (tenant, user)).

    `overrides` are settings; the sweeper waits an hour unless a script sets its interval.
    """
    keys = {name: f"key-{name}-{uuid.uuid4().hex[:10]}" for name in users}
    spec = ",".join(f"{keys[n]}={tenant}/{user}" for n, (tenant, user) in users.items())
    settings = Settings(
        database_url=database_url,
        api_keys=spec,
        **{"sweep_interval_seconds": 3600, **overrides},
    )
    app = create_app(settings)
    async with running(app) as client:
        yield Api(app=app, client=client, keys=keys, owners=dict(users))


def move_clock(api: Api, by: timedelta) -> None:
    """Make the server's session clock read `by` later than the real one (idle expiry)."""
    api.app.state.sessions.clock = lambda: datetime.now(UTC) + by


def ok(response: httpx.Response, status: int = 200) -> Any:
    """The JSON body of a response that must have `status` (the body is shown otherwise)."""
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    return response.json() if response.content else None
