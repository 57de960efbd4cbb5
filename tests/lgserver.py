"""A real `memory-agent serve` process for the LangGraph server API tests, and its users."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.plugins.server import fresh_id
from tests.test_scale_out import launch, server_env, wait_ready

#: Users every server knows, each with a key of its own.
USERS = ("alice", "bob", "carol", "dave")


@dataclass
class LangGraphServer:
    """A server process, its `/langgraph` URL and its users' API keys."""

    base: str
    keys: dict[str, str]

    @property
    def url(self) -> str:
        """What a LangGraph client is pointed at."""
        return f"{self.base}/langgraph"

    def headers(self, user: str) -> dict[str, str]:
        """The `x-api-key` header of `user`."""
        return {"x-api-key": self.keys[user]}


@contextmanager
def langgraph_server(
    database_url: str, log_dir: Path, **settings: str
) -> Iterator[LangGraphServer]:
    """Start `python -m server serve` on `database_url` with fresh users and `settings`."""
    keys = {user: fresh_id(f"key-{user}") for user in USERS}
    spec = ",".join(f"{keys[u]}=acme/{fresh_id(u)}" for u in USERS)
    env = server_env(database_url, spec)
    env.update({f"MEMORY_AGENT_{k.upper()}": v for k, v in settings.items()})
    server = launch(env, log_dir)
    try:
        wait_ready([server])
        yield LangGraphServer(server.base, keys)
    finally:
        server.stop()


def sse_events(text: str) -> list[tuple[str, Any]]:
    """`(event, data)` pairs of a server-sent-events body (comments skipped)."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        name, data = None, None
        for line in block.splitlines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = json.loads(line.removeprefix("data: "))
        if name is not None:
            events.append((name, data))
    return events


def post(server: LangGraphServer, user: str, path: str, body: Any = None) -> httpx.Response:
    """POST JSON to the `/langgraph` API as `user`."""
    return httpx.post(f"{server.url}{path}", json=body, headers=server.headers(user), timeout=60)
