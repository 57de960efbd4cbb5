"""A database that stops answering: requests get 503 within the deadline, never a hang or a
500, and service comes back by itself when the database does."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import redis

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


async def asyncio_sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


# -- a database stopped and started again ------------------------------------------------


@dataclass
class _Load:
    """Runs sent one after another on a few threads while the database comes and goes."""

    client: httpx.AsyncClient
    acknowledged: dict[str, list[str]] = field(default_factory=dict)
    #: (status, sent at, seconds, Retry-After) of every response.
    answers: list[tuple[int, float, float, str | None]] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def count(self) -> int:
        """Turns acknowledged so far."""
        return sum(len(texts) for texts in self.acknowledged.values())

    async def served(self, turns: int) -> None:
        """Wait (10 s at most) until `turns` turns in all have been acknowledged."""
        deadline = time.monotonic() + 10
        while self.count() < turns:
            assert time.monotonic() < deadline, f"{self.count()} of {turns} turns served"
            await asyncio.sleep(0.02)

    async def worker(self, thread: str) -> None:
        turn = 0
        while not self.stop.is_set():
            text = f"turn {turn} on {thread}"  # never sent twice: a failed run may be kept
            turn += 1
            start = time.monotonic()
            response = await self.client.post(f"/threads/{thread}/runs", json={"message": text})
            took = time.monotonic() - start
            retry = response.headers.get("retry-after")
            self.answers.append((response.status_code, start, took, retry))
            if response.status_code == 200:
                self.acknowledged.setdefault(thread, []).append(text)
            else:
                await asyncio.sleep(0.05)


async def _first_success(client: httpx.AsyncClient, thread: str, text: str) -> httpx.Response:
    """Send a run until one succeeds (10 s at most)."""
    deadline = time.monotonic() + 10
    while True:
        response = await client.post(f"/threads/{thread}/runs", json={"message": text})
        if response.status_code == 200 or time.monotonic() > deadline:
            return response
        await asyncio.sleep(0.05)


#: Long beside the test: a thread the outage cut must come free well before it runs out.
_LEASE_SECONDS = 20.0


@pytest.mark.parametrize("outage", ["stopped", "hung"])
async def test_a_database_outage_answers_503_in_time_and_recovers(
    own_server: ServerHandle, outage: str
) -> None:
    """Stopped cleanly (restarted on the same data and port), or hung (SIGSTOP: a network
    partition, say), under load."""
    settings = Settings(
        database_url=own_server.url,
        embeddings="none",
        api_keys="",
        backend_timeout_seconds=_DEADLINE,
        pool_size=2,
        lease_seconds=_LEASE_SECONDS,
    )
    app = create_app(settings)
    async with running(app) as client:
        run = {"json": {"message": "my name is Sam"}}
        sam = await client.post("/threads/before/runs", json={"message": "my name is Sam"})
        assert sam.status_code == 200
        load = _Load(client)
        workers = [asyncio.create_task(load.worker(f"load-{i}")) for i in range(3)]
        await load.served(3)  # every thread has had a turn: the load is under way
        stopping = time.monotonic()
        if outage == "stopped":
            await asyncio.to_thread(own_server.halt)
        else:
            _signal_all(own_server.pid, signal.SIGSTOP)
        stopped = time.monotonic()
        try:
            await asyncio.sleep(0.3)
            for method, url, kw in (
                ("POST", "/threads/during/runs", run),
                ("POST", "/threads/before/runs", run),
                ("GET", "/threads/before/messages", {}),
                ("GET", "/threads", {}),
                ("POST", "/threads", {"json": {}}),
            ):
                start = time.monotonic()
                response = await client.request(method, url, **kw)  # type: ignore[arg-type]
                took = time.monotonic() - start
                assert response.status_code == 503, (method, url, response.status_code)
                assert response.headers["retry-after"] == "1", (method, url)
                assert took < _DEADLINE + 1.0, (method, url, took)
                assert "unreachable" in response.json()["detail"]
            status, took = await _timed(client, "GET", "/readyz")
            assert status == 503 and took < 1.5
        finally:
            if outage == "stopped":
                await asyncio.to_thread(own_server.resume)  # same data, same port
            else:
                _signal_all(own_server.pid, signal.SIGCONT)
        back = time.monotonic()
        response = await _first_success(client, "before", "what is my name?")
        assert response.status_code == 200, response.text
        assert time.monotonic() - back < 2.0, f"service back {time.monotonic() - back:.1f}s late"
        assert response.json()["reply"] == "Your name is Sam."
        await load.served(load.count() + 3)  # the load is served again too
        load.stop.set()
        await asyncio.gather(*workers)

        statuses = {status for status, _, _, _ in load.answers}
        # 409: a run the outage cut holds its thread until its lease is given back, as soon
        # as the database answers again (whether it was granted before the outage or after
        # its request's deadline), never for the rest of the lease.
        assert statuses <= {200, 503, 409}, statuses
        held = [at - back for s, at, _, _ in load.answers if s == 409 and at > back + 1.5]
        assert not held, f"threads held after the database came back: {held}"
        assert 503 in statuses and 200 in statuses, statuses
        # Runs sent once the database was down answer within the deadline; runs it cut
        # answer within the deadline of the outage (their later calls fail at once).
        late = [(s, t) for s, at, t, _ in load.answers if at >= stopped and t >= _DEADLINE + 1]
        assert not late, late
        cut = [at + t - stopping for _, at, t, _ in load.answers if at < stopping < at + t]
        assert cut, "no run was in flight when the outage began"
        assert all(wait < _DEADLINE + 1.0 for wait in cut), cut
        assert all(after == "1" for s, _, _, after in load.answers if s == 503)
        for thread, texts in load.acknowledged.items():
            page = (await client.get(f"/threads/{thread}/messages?limit=500")).json()
            users = [m["content"] for m in page["items"] if m["role"] == "user"]
            assert [u for u in users if u in texts] == texts, (thread, users)  # none lost
            assert len(users) == len(set(users)), users  # none doubled
            assert page["total"] == len(page["items"])


async def test_redis_restarted_without_its_data_serves_without_a_restart(
    tmp_path: Path,
) -> None:
    handle = start_redis(tmp_path)
    try:
        settings = Settings(
            database_url=handle.url,
            embeddings="none",
            api_keys="",
            backend_timeout_seconds=_DEADLINE,
        )
        async with running(create_app(settings)) as client:
            assert (await client.post("/threads/a/runs", json={"message": "hi"})).status_code == 200
            await asyncio.to_thread(handle.halt, keep_data=False)
            await asyncio.to_thread(handle.resume)
            assert not redis.Redis.from_url(handle.url).dbsize()  # nothing came back
            # The search indexes of the store and the checkpointer are created on demand.
            response = await _first_success(client, "b", "my name is Bo")
            assert response.status_code == 200, response.text
            answer = await client.post("/threads/b/runs", json={"message": "what is my name?"})
            assert answer.json()["reply"] == "Your name is Bo."
            assert (await client.get("/threads/b/history")).status_code == 200
            assert (await client.get("/memories", params={"query": "name"})).json()["total"] == 1
            # The lost thread starts again empty.
            assert (await client.post("/threads/a/runs", json={"message": "hi"})).status_code == 200
            assert (await client.get("/threads/a/messages")).json()["total"] == 2
    finally:
        handle.stop()
