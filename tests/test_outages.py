"""A database that stops answering: requests get 503 within the deadline, never a hang or a
500, and service comes back by itself when the database does."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from memory.settings import Settings
from server.app import create_app
from tests.devservers import ServerHandle, start_postgres, start_redis
from tests.plugins.server import running

pytestmark = pytest.mark.slow

_DEADLINE = 1.0


def _signal_all(pid: int, sig: signal.Signals) -> None:
    """Signal a server and every process it started (Postgres backends leave its group)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    todo = [pid]
    while todo:
        current = todo.pop()
        todo.extend(children.get(current, []))
        with contextlib.suppress(ProcessLookupError):
            os.kill(current, sig)


@pytest.fixture(params=["postgres", "redis"])
def own_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerHandle]:
    """A database server of this test's own, so stopping it disturbs no other test."""
    handle = (start_postgres if request.param == "postgres" else start_redis)(tmp_path)
    try:
        yield handle
    finally:
        _signal_all(handle.pid, signal.SIGCONT)
        handle.stop()


async def _timed(
    client: httpx.AsyncClient, method: str, url: str, **kw: object
) -> tuple[int, float]:
    start = time.monotonic()
    response = await client.request(method, url, **kw)  # type: ignore[arg-type]
    return response.status_code, time.monotonic() - start


async def test_a_hung_database_answers_503_in_time_and_recovers(own_server: ServerHandle) -> None:
    settings = Settings(
        database_url=own_server.url,
        embeddings="none",
        api_keys="",
        backend_timeout_seconds=_DEADLINE,
        pool_size=2,
    )
    app = create_app(settings)
    async with running(app) as client:
        run = {"json": {"message": "my name is Sam"}}
        assert (await client.post("/threads/before/runs", **run)).status_code == 200

        _signal_all(own_server.pid, signal.SIGSTOP)  # hung: a network partition, say
        try:
            for method, url, kw in (
                ("POST", "/threads/during/runs", run),
                ("POST", "/threads/before/runs", run),
                ("GET", "/threads/before/messages", {}),
                ("GET", "/threads", {}),
                ("POST", "/threads", {"json": {}}),
            ):
                status, took = await _timed(client, method, url, **kw)
                assert status == 503, (method, url, status)
                assert took < _DEADLINE + 1.0, (method, url, took)
            response = await client.post("/threads/x/runs", json={"message": "hi"})
            assert response.headers["retry-after"] == "1"
            assert "unreachable" in response.json()["detail"]
            status, took = await _timed(client, "GET", "/readyz")
            assert status == 503 and took < 1.5
        finally:
            _signal_all(own_server.pid, signal.SIGCONT)

        deadline = time.monotonic() + 10
        while True:
            response = await client.post(
                "/threads/before/runs", json={"message": "what is my name?"}
            )
            if response.status_code == 200 or time.monotonic() > deadline:
                break
            await asyncio_sleep(0.2)
        assert response.status_code == 200, response.text
        assert response.json()["reply"] == "Your name is Sam."
        page = (await client.get("/threads/before/messages")).json()
        users = [m["content"] for m in page["items"] if m["role"] == "user"]
        assert users == ["my name is Sam", "what is my name?"]  # no turn lost or doubled
        assert page["total"] == len(page["items"])


async def asyncio_sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)
