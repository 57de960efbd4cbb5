"""A server started while its database is down: it starts, answers 503 with a reason, and
becomes ready by itself when the database returns; other start failures still stop it."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from memory.settings import Settings
from server.app import create_app
from tests.devservers import ServerHandle, start_postgres, start_redis
from tests.plugins.server import running
from tests.test_cli import command

pytestmark = pytest.mark.slow

#: Long beside the 1 s an answer without the database may take, so the two cannot be confused.
_DEADLINE = 3.0


def _closed_port() -> int:
    """A local port nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _settings(url: str) -> Settings:
    return Settings(
        database_url=url, embeddings="none", api_keys="", backend_timeout_seconds=_DEADLINE
    )


@pytest.fixture(params=["postgres", "redis"])
def hung_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerHandle]:
    """A database server of this test's own, stopped (SIGSTOP) before the app starts."""
    handle = (start_postgres if request.param == "postgres" else start_redis)(tmp_path)
    handle.freeze()
    try:
        yield handle
    finally:
        handle.thaw()
        handle.stop()


async def _answers_503(client: httpx.AsyncClient) -> None:
    for method, url, kw in (
        ("POST", "/threads/t1/runs", {"json": {"message": "hi"}}),
        ("GET", "/threads", {}),
        ("POST", "/threads", {"json": {}}),
        ("GET", "/memories", {}),
        ("POST", "/langgraph/threads", {"json": {}}),
    ):
        start = time.monotonic()
        response = await client.request(method, url, **kw)  # type: ignore[arg-type]
        assert response.status_code == 503, (method, url, response.text)
        assert response.headers["retry-after"] == "1"
        assert "retry shortly" in response.json()["detail"]
        assert time.monotonic() - start < 1.0  # answered at once, not after the deadline
    start = time.monotonic()
    ready = await client.get("/readyz")
    assert ready.status_code == 503 and time.monotonic() - start < 1.0
    body = ready.json()
    assert body["status"] == "unavailable"
    assert all(not b["ok"] and b["error"] for b in body["backends"].values())
    assert (await client.get("/healthz")).status_code == 200  # the process itself is up


@pytest.mark.parametrize(
    "scheme", ["postgresql://postgres@127.0.0.1:{}/postgres", "redis://127.0.0.1:{}"]
)
async def test_a_refused_database_at_start_gives_503_with_the_reason(scheme: str) -> None:
    app = create_app(_settings(scheme.format(_closed_port())))
    start = time.monotonic()
    async with running(app) as client:
        assert time.monotonic() - start < _DEADLINE + 3.0
        await _answers_503(client)
        reason = (await client.get("/readyz")).json()["backends"]["checkpointer"]["error"]
        assert "unreachable" in reason


async def test_a_database_that_returns_makes_the_server_ready(hung_server: ServerHandle) -> None:
    app = create_app(_settings(hung_server.url))
    async with running(app) as client:
        await _answers_503(client)
        hung_server.thaw()  # the database is back
        back = time.monotonic()
        while (await client.get("/readyz")).status_code != 200:
            # Attempts are at most 1 s apart: ready within 2 s, with slack for a busy machine.
            assert time.monotonic() - back < 5, "not ready 5 s after the database returned"
            await asyncio.sleep(0.05)
        print(f"ready {time.monotonic() - back:.2f} s after the database returned")
        response = await client.post("/threads/t1/runs", json={"message": "my name is Sam"})
        assert response.status_code == 200, response.text
        response = await client.post("/threads/t1/runs", json={"message": "what is my name?"})
        assert response.json()["reply"] == "Your name is Sam."


def test_a_start_failure_that_is_not_an_outage_still_stops_the_start(tmp_path: Path) -> None:
    (tmp_path / "a-directory.sqlite").mkdir()  # not a database file: no waiting will fix it
    app = create_app(_settings(f"sqlite:///{tmp_path / 'a-directory.sqlite'}"))

    async def start() -> None:
        async with running(app):
            pass

    with pytest.raises(Exception) as raised:
        asyncio.run(start())
    assert "unable to open database" in str(raised.value)


def test_serve_starts_while_the_database_is_down(tmp_path: Path) -> None:
    """The command itself: `memory-agent serve` listens and says why it is not ready."""
    env = {
        **os.environ,
        "MEMORY_AGENT_DATABASE_URL": f"redis://127.0.0.1:{_closed_port()}",
        "MEMORY_AGENT_EMBEDDINGS": "none",
        "MEMORY_AGENT_API_KEYS": "",
        "MEMORY_AGENT_BACKEND_TIMEOUT_SECONDS": "1",
    }
    port = _closed_port()
    proc = subprocess.Popen(
        [*command(), "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "serve never listened"
                time.sleep(0.2)
        assert ready.status_code == 503
        assert "unreachable" in ready.json()["backends"]["store"]["error"]
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=30)
    assert "serving 503 until it is reachable" in output
