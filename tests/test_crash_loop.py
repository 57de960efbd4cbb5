"""kill -9 during runs, cycle after cycle: what a crash may cost and what it never may.

Each cycle starts a `memory-agent serve` process on the same database, sends runs on a
few threads (plain turns and turns that make memory tool calls, as JSON and as streams),
kills the process with SIGKILL at a moment drawn from a seeded generator while runs are
in flight, and checks from the next process:

- every acknowledged turn (a 200, or a stream that reached `done`) is in the transcript,
  its user message followed by its reply, in the order the turns were acknowledged;
- no message is in the transcript twice;
- the session's counts (`message_count`, the analytics' counts by role) equal the
  transcript's, and a page never holds more items than its `total`;
- a run the kill cut is taken over by the next process once its lease lapses and
  finishes there (its tool calls answered); the thread is checked once it has, and its
  state then holds no unanswered tool call.

Unacknowledged turns may be in the transcript or not: a crash may cost them.

The processes are forked from a fork server (`tests/forkserve.py`) that imported the
server once: forty plain starts would spend about 100 s of CPU in imports alone.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.forkserve import ForkServer
from tests.plugins.server import fresh_id, sse_events
from tests.test_scale_out import free_port, server_env

pytestmark = pytest.mark.slow

_SEED = 13
_CYCLES = 20
#: A killed run's thread is free again this long after the kill.
_LEASE_SECONDS = 1.5
#: Threads in use; the cycles alternate between two groups, so the threads a kill left
#: leased rest for a cycle while the other group runs.
_THREADS = 6
#: Each model call takes this long (spread over its chunks): a kill lands inside runs.
_MODEL_SECONDS = 0.15
_START_DEADLINE_SECONDS = 30
_REQUEST_TIMEOUT_SECONDS = 30


@dataclass
class Turn:
    """An acknowledged turn: what was sent and the reply the client got."""

    text: str
    reply: str


@dataclass
class Figures:
    """What the loop did, for the report and for its own sanity checks."""

    cycles: int = 0
    acknowledged: int = 0
    sent: int = 0
    refused_busy: int = 0
    kills_mid_run: int = 0
    cut_tool_calls: int = 0
    cut_threads: int = 0
    #: Threads whose run the kill cut and the next process took over and finished.
    taken_over: int = 0
    repaired_threads: int = 0
    tool_turns_acknowledged: int = 0


@dataclass
class Server:
    """One forked server process."""

    pid: int
    base: str
    log: Path

    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        stat = Path(f"/proc/{self.pid}/stat")
        try:
            return stat.read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL the process and wait until it is gone."""
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while self.alive():
            assert time.monotonic() < deadline, f"process {self.pid} survived SIGKILL"
            time.sleep(0.01)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@dataclass
class Loop:
    """The state of one backend's loop: its servers, threads and acknowledged turns."""

    forks: ForkServer
    env: dict[str, str]
    log_dir: Path
    key: str
    rng: random.Random
    threads: list[str]
    turns: dict[str, list[Turn]] = field(default_factory=dict)
    #: Threads whose state holds an unanswered tool call, awaiting their next run.
    cut: set[str] = field(default_factory=set)
    figures: Figures = field(default_factory=Figures)
    server: Server | None = None
    #: The next process, started while the current one serves: a restart then costs
    #: no start-up time. It serves nothing before the kill.
    standby: Server | None = None
    counter: int = 0

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def spawn(self) -> Server:
        port = free_port()
        log = self.log_dir / f"server-{port}.log"
        pid = self.forks.spawn(self.env, port, log)
        return Server(pid, f"http://127.0.0.1:{port}", log)

    def stop_all(self) -> None:
        for server in (self.server, self.standby):
            if server is not None:
                server.kill()

    async def start(self) -> Server:
        """The standby process (or a new one) once it is ready; the next standby starts."""
        server = self.standby or self.spawn()
        self.server, self.standby = server, None
        deadline = time.monotonic() + _START_DEADLINE_SECONDS
        async with httpx.AsyncClient(timeout=2) as http:
            while True:
                assert server.alive(), f"server exited early:\n{server.output()}"
                try:
                    if (await http.get(f"{server.base}/readyz")).status_code == 200:
                        self.standby = self.spawn()
                        return server
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, f"server not ready:\n{server.output()}"
                await asyncio.sleep(0.05)

    def next_text(self, thread: str) -> tuple[str, bool]:
        """A message no other run sends, and whether it makes the model call a tool."""
        self.counter += 1
        tag = f"m{self.counter}x{thread[-4:]}"
        if self.rng.random() < 0.45:
            return f"remember that code {tag} is blue", True
        return f"say {tag} back", False


async def _run(
    http: httpx.AsyncClient, loop: Loop, thread: str, text: str, stream: bool
) -> str | None:
    """Send one run; its reply when acknowledged, None when refused as busy (409)."""
    url = f"/threads/{thread}/runs" + ("/stream" if stream else "")
    response = await http.post(url, json={"message": text}, headers=loop.headers)
    if response.status_code == 409:
        return None
    assert response.status_code == 200, (response.status_code, response.text)
    if not stream:
        return str(response.json()["reply"])
    events = sse_events(response.text)
    done = [data for name, data in events if name == "done"]
    assert done, f"a stream that ended without done or error: {events}"
    return str(done[0]["reply"])


async def _worker(http: httpx.AsyncClient, loop: Loop, thread: str, acks: list[int]) -> None:
    """Send runs on `thread` one after another until the server dies."""
    text, tool = loop.next_text(thread)
    stream = loop.rng.random() < 0.3
    busy_since: float | None = None
    while True:
        loop.figures.sent += 1
        try:
            reply = await _run(http, loop, thread, text, stream)
        except httpx.TransportError:
            return  # killed mid-run: this turn is not acknowledged
        if reply is None:  # a lease left by the previous kill: wait it out
            loop.figures.refused_busy += 1
            busy_since = busy_since or time.monotonic()
            assert time.monotonic() - busy_since < _LEASE_SECONDS + 5, f"{thread} stays busy"
            await asyncio.sleep(0.1)
            continue
        busy_since = None
        loop.turns.setdefault(thread, []).append(Turn(text, reply))
        loop.figures.acknowledged += 1
        loop.figures.tool_turns_acknowledged += tool
        acks[0] += 1
        if thread in loop.cut:
            try:
                await _check_no_dangling_call(http, loop, thread)
            except httpx.TransportError:
                return  # killed while checking: the next process checks again
            loop.cut.discard(thread)
            loop.figures.repaired_threads += 1
        text, tool = loop.next_text(thread)
        stream = loop.rng.random() < 0.3


async def _messages(http: httpx.AsyncClient, loop: Loop, thread: str) -> list[dict[str, Any]]:
    """The whole transcript, read in pages of a size drawn from the generator."""
    size = loop.rng.choice([7, 50, 500])
    items: list[dict[str, Any]] = []
    while True:
        response = await http.get(
            f"/threads/{thread}/messages",
            params={"limit": size, "offset": len(items)},
            headers=loop.headers,
        )
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= min(size, page["total"]), (size, page)
        items += page["items"]
        if len(items) >= page["total"] or not page["items"]:
            assert len(items) == page["total"], f"holes in the transcript: {page['total']}"
            newest = await http.get(
                f"/threads/{thread}/messages",
                params={"limit": 3, "order": "desc"},
                headers=loop.headers,
            )
            tail = newest.json()
            assert len(tail["items"]) <= min(3, tail["total"]), tail
            return items


def _dangling(messages: list[dict[str, Any]]) -> list[str]:
    """Tool calls in a window with no tool message answering them."""
    answered = {m.get("tool_call_id") for m in messages if m["role"] == "tool"}
    return [
        call["id"]
        for m in messages
        if m["role"] == "assistant"
        for call in m.get("tool_calls") or []
        if call["id"] not in answered
    ]


async def _state(http: httpx.AsyncClient, loop: Loop, thread: str) -> list[dict[str, Any]]:
    response = await http.get(f"/threads/{thread}/state", headers=loop.headers)
    assert response.status_code == 200, response.text
    return list(response.json()["messages"])


async def _check_no_dangling_call(http: httpx.AsyncClient, loop: Loop, thread: str) -> None:
    window = await _state(http, loop, thread)
    assert not _dangling(window), f"{thread}: unanswered tool calls after a run: {window}"


async def _verify(http: httpx.AsyncClient, loop: Loop, thread: str) -> None:
    """The transcript holds every acknowledged turn once, in order, and the session's
    counts agree with it."""
    items = await _messages(http, loop, thread)
    ids = [m["id"] for m in items]
    assert len(ids) == len(set(ids)), f"{thread}: a message twice: {ids}"
    users = [m["content"] for m in items if m["role"] == "user"]
    assert len(users) == len(set(users)), f"{thread}: a user message twice: {users}"
    where = {m["content"]: i for i, m in enumerate(items) if m["role"] == "user"}
    last = -1
    for turn in loop.turns.get(thread, []):
        assert turn.text in where, f"{thread}: acknowledged turn lost: {turn.text!r}"
        at = where[turn.text]
        assert at > last, f"{thread}: acknowledged turns out of order at {turn.text!r}"
        following = []
        for m in items[at + 1 :]:
            if m["role"] == "user":
                break
            following.append(m)
        replies = [m["content"] for m in following if m["role"] == "assistant"]
        assert turn.reply in replies, f"{thread}: reply of {turn.text!r} lost: {following}"
        last = at
    detail = await http.get(f"/threads/{thread}", headers=loop.headers)
    assert detail.status_code == 200, detail.text
    record = detail.json()
    roles = Counter(m["role"] for m in items)
    assert record["message_count"] == len(items), (thread, record["message_count"], len(items))
    assert record["analytics"]["message_counts"] == dict(roles), (thread, record, roles)


async def _after_kill(http: httpx.AsyncClient, loop: Loop, thread: str) -> None:
    """Check a thread the last kill may have cut into, and note a cut tool call."""
    deadline = time.monotonic() + _LEASE_SECONDS + 10
    waited = False
    while True:
        detail = await http.get(f"/threads/{thread}", headers=loop.headers)
        if detail.status_code == 404:
            assert thread not in loop.turns, f"{thread}: the session is gone"
            return  # killed before its first run created it
        # A run the kill cut is taken over once its lease lapses and finishes here: the
        # thread is checked once it has.
        runs = await http.get(f"/langgraph/threads/{thread}/runs", headers=loop.headers)
        assert runs.status_code == 200, runs.text
        active = [r for r in runs.json() if r["status"] in ("pending", "running")]
        if not active and not detail.json()["running"]:
            break
        if not waited:
            waited = True
            loop.figures.taken_over += 1
        assert time.monotonic() < deadline, f"{thread}: a run the kill cut never finished"
        await asyncio.sleep(0.1)
    await _verify(http, loop, thread)
    dangling = _dangling(await _state(http, loop, thread))
    if dangling and thread not in loop.cut:
        loop.cut.add(thread)
        loop.figures.cut_threads += 1
        loop.figures.cut_tool_calls += len(dangling)


def _group(loop: Loop, number: int) -> list[str]:
    """The threads cycle `number` runs on: the two halves take turns."""
    half = len(loop.threads) // 2
    return loop.threads[:half] if number % 2 == 0 else loop.threads[half:]


async def _cycle(loop: Loop, number: int) -> None:
    server = await loop.start()
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(
        base_url=server.base, timeout=_REQUEST_TIMEOUT_SECONDS, limits=limits
    ) as http:
        # What the previous kill left behind, seen from the new process.
        if number > 0:
            previous = _group(loop, number - 1)
            await asyncio.gather(*(_after_kill(http, loop, t) for t in previous))
        acks = [0]
        workers = [asyncio.create_task(_worker(http, loop, t, acks)) for t in _group(loop, number)]
        wanted = loop.rng.randint(1, 3)
        extra = loop.rng.uniform(0.0, 0.5)
        deadline = time.monotonic() + 20
        while acks[0] < wanted:
            assert time.monotonic() < deadline, f"no progress:\n{server.output()}"
            for task in workers:
                if task.done():
                    task.result()  # a failed assertion in a worker surfaces here
            await asyncio.sleep(0.01)
        await asyncio.sleep(extra)
        in_flight = sum(not t.done() for t in workers)
        server.kill()
        loop.figures.kills_mid_run += in_flight > 0
        await asyncio.gather(*workers)
    loop.figures.cycles += 1


async def _final(loop: Loop) -> None:
    """A last process: everything checked, one more run on every thread, checked again."""
    server = await loop.start()
    async with httpx.AsyncClient(base_url=server.base, timeout=_REQUEST_TIMEOUT_SECONDS) as http:
        await asyncio.gather(*(_after_kill(http, loop, t) for t in loop.threads))
        await asyncio.gather(*(_last_turn(http, loop, t) for t in loop.threads))
    loop.stop_all()


async def _last_turn(http: httpx.AsyncClient, loop: Loop, thread: str) -> None:
    text = f"last turn on {thread}"
    deadline = time.monotonic() + _LEASE_SECONDS + 5
    while (reply := await _run(http, loop, thread, text, False)) is None:
        assert time.monotonic() < deadline, f"{thread} stays busy"
        await asyncio.sleep(0.1)
    loop.turns.setdefault(thread, []).append(Turn(text, reply))
    await _check_no_dangling_call(http, loop, thread)
    if thread in loop.cut:
        loop.cut.discard(thread)
        loop.figures.repaired_threads += 1
    await _verify(http, loop, thread)


@pytest.fixture(scope="module")
def forks() -> Iterator[ForkServer]:
    server = ForkServer()
    try:
        yield server
    finally:
        server.close()


async def _loop(kind: str, url: str, forks: ForkServer, log_dir: Path) -> Figures:
    """Every cycle on one backend, then the last process; what the loop did."""
    key = fresh_id("key")
    env = server_env(url, f"{key}=crash/{fresh_id('user')}")
    env.update(
        MEMORY_AGENT_LEASE_SECONDS=str(_LEASE_SECONDS),
        MEMORY_AGENT_MODEL=f"offline:slow-{_MODEL_SECONDS}",
        MEMORY_AGENT_GRAPH="tests.crashgraph:make_graph",
        MEMORY_AGENT_RUNS_PER_MINUTE="100000",
    )
    rng = random.Random(f"{_SEED}-{kind}")
    threads = [fresh_id(f"{kind}{i}") for i in range(_THREADS)]
    loop = Loop(forks, env, log_dir, key, rng, threads)
    try:
        for number in range(_CYCLES):
            await _cycle(loop, number)
        await _final(loop)
    finally:
        loop.stop_all()
    return loop.figures


async def test_kill_9_during_runs_loses_no_acknowledged_turn(
    forks: ForkServer, postgres_url: str, tmp_path: Path
) -> None:
    # The two backends' loops run side by side: each waits on its processes most of the time.
    (tmp_path / "sqlite").mkdir()
    (tmp_path / "postgres").mkdir()
    sqlite = _loop("sqlite", f"sqlite:///{tmp_path / 'agent.sqlite'}", forks, tmp_path / "sqlite")
    postgres = _loop("postgres", postgres_url, forks, tmp_path / "postgres")
    results = await asyncio.gather(sqlite, postgres)
    for kind, figures in zip(("sqlite", "postgres"), results, strict=True):
        print(f"\n{kind}: {json.dumps(figures.__dict__)}")
        assert figures.cycles == _CYCLES
        assert figures.kills_mid_run >= _CYCLES * 3 // 4, figures
        assert figures.tool_turns_acknowledged > 0, figures
        # Runs the kills cut are taken over once their lease lapses and finish in the
        # next process, tool calls and all: no thread is left with an unanswered call.
        assert figures.taken_over > 0, figures
        assert figures.cut_threads == 0, figures
        assert figures.repaired_threads == figures.cut_threads, figures
