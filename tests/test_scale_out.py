"""Three server processes on one database: races across processes, limits, a killed run."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import races
from tests.plugins.server import fresh_id

pytestmark = pytest.mark.slow

_ROOT = Path(__file__).resolve().parents[1]
_PROCESSES = 3
#: Short, so a killed run frees its thread within the test.
_LEASE_SECONDS = 2.0
#: Per-user limits of every process. The open-session cap is three times the rate limit,
#: so the burst of the rate-limit test never meets the cap whatever order the checks run in.
_RUNS_PER_MINUTE = 12
_MAX_OPEN_SESSIONS = 3 * _RUNS_PER_MINUTE
#: API keys configured on every process; each test takes fresh ones.
_USERS = 64
_START_DEADLINE_SECONDS = 60
#: Per-request ceiling: a hang fails the test instead of stalling the suite.
_REQUEST_TIMEOUT_SECONDS = 60
_SLOW_MODEL_SECONDS = 3.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    """One `python -m server serve` process and its log."""

    proc: subprocess.Popen[bytes]
    base: str
    log: Path

    def output(self) -> str:
        """The end of the process's log."""
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        """Terminate the process (kill it if it does not stop) and reap it."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(15)


def launch(env: dict[str, str], log_dir: Path) -> ServerProcess:
    """Start a server process on a free port; `wait_ready` waits until it serves."""
    port = free_port()
    log = log_dir / f"server-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "server", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return ServerProcess(proc, f"http://127.0.0.1:{port}", log)


def wait_ready(servers: list[ServerProcess]) -> None:
    """Wait until every server answers `GET /readyz` with 200."""
    waiting = list(servers)
    deadline = time.monotonic() + _START_DEADLINE_SECONDS
    while waiting:
        for server in list(waiting):
            if server.proc.poll() is not None:
                pytest.fail(f"server exited early:\n{server.output()}", pytrace=False)
            try:
                if httpx.get(f"{server.base}/readyz", timeout=2).status_code == 200:
                    waiting.remove(server)
            except httpx.TransportError:
                pass
        if waiting and time.monotonic() > deadline:
            pytest.fail(f"server not ready in time:\n{waiting[0].output()}", pytrace=False)
        time.sleep(0.1)


@dataclass
class Cluster:
    """Server processes sharing one database, the environment they run with, spare API keys."""

    kind: str
    env: dict[str, str]
    log_dir: Path
    servers: list[ServerProcess]
    spare_keys: list[str] = field(default_factory=list)

    def users(self, count: int) -> list[str]:
        """API keys of users no test has used yet (a user is named by its key here)."""
        assert len(self.spare_keys) >= count, "raise _USERS"
        taken = self.spare_keys[:count]
        del self.spare_keys[:count]
        return taken

    def start(self, **settings: str) -> ServerProcess:
        """Start one more process on the same database with some settings changed."""
        extra = {f"MEMORY_AGENT_{name.upper()}": value for name, value in settings.items()}
        server = launch({**self.env, **extra}, self.log_dir)
        try:
            wait_ready([server])
        except BaseException:
            server.stop()
            raise
        return server


def server_env(database_url: str, api_keys: str) -> dict[str, str]:
    """This process's environment without its `MEMORY_AGENT_*` settings, plus the cluster's."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("MEMORY_AGENT_") or name.startswith("MEMORY_AGENT_TEST_")
    }
    # The servers import the code under test, wherever pytest was started from.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), os.environ.get("PYTHONPATH")]))
    env.update(
        MEMORY_AGENT_DATABASE_URL=database_url,
        MEMORY_AGENT_EMBEDDINGS="none",
        MEMORY_AGENT_MODEL="offline",
        MEMORY_AGENT_API_KEYS=api_keys,
        MEMORY_AGENT_LEASE_SECONDS=str(_LEASE_SECONDS),
        MEMORY_AGENT_RUNS_PER_MINUTE=str(_RUNS_PER_MINUTE),
        MEMORY_AGENT_MAX_OPEN_SESSIONS=str(_MAX_OPEN_SESSIONS),
        MEMORY_AGENT_SWEEP_INTERVAL_SECONDS="3600",
        MEMORY_AGENT_POOL_SIZE="4",
    )
    return env


@pytest.fixture(scope="module", params=["postgres", "redis"])
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """Three server processes on one Postgres, or on one Redis, shared by the module."""
    kind = request.param
    url = request.getfixturevalue(f"{kind}_url")
    keys = [fresh_id("key") for _ in range(_USERS)]
    env = server_env(url, ",".join(f"{key}=scale/{fresh_id('user')}" for key in keys))
    log_dir = tmp_path_factory.mktemp(f"scale-{kind}")
    servers: list[ServerProcess] = []
    try:
        servers.extend(launch(env, log_dir) for _ in range(_PROCESSES))
        wait_ready(servers)
        yield Cluster(kind, env, log_dir, servers, keys)
    finally:
        for server in servers:
            server.stop()


class Spread:
    """Sends each request to one of the processes, in a random order that visits them evenly.

    Every `len(bases)` consecutive requests cover each process once, so a burst of
    concurrent requests lands on all of them in about equal shares.
    """

    def __init__(self, http: httpx.AsyncClient, bases: list[str], rng: random.Random) -> None:
        self.http = http
        self.bases = bases
        self.rng = rng
        self._deck: list[str] = []

    def _next_base(self) -> str:
        if not self._deck:
            self._deck = self.rng.sample(self.bases, len(self.bases))
        return self._deck.pop()

    async def request(self, user: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send a request as `user` (its API key) to the next process."""
        headers = {"Authorization": f"Bearer {user}", **kwargs.pop("headers", {})}
        return await self.http.request(method, self._next_base() + url, headers=headers, **kwargs)

    async def run(self, user: str, thread_id: str, text: str) -> httpx.Response:
        """Send one message on a thread as `user`."""
        return await self.request(
            user, "POST", f"/threads/{thread_id}/runs", json={"message": text}
        )


@pytest.fixture
async def spread(cluster: Cluster) -> AsyncIterator[Spread]:
    """A client spreading requests over the cluster; the processes must survive the test."""
    limits = httpx.Limits(max_connections=500, max_keepalive_connections=100)
    async with httpx.AsyncClient(timeout=_REQUEST_TIMEOUT_SECONDS, limits=limits) as http:
        yield Spread(http, [s.base for s in cluster.servers], random.Random())
    for server in cluster.servers:
        assert server.proc.poll() is None, f"a server process died:\n{server.output()}"


# -- races across processes --------------------------------------------------------------------


async def test_racing_creates_of_one_id_make_one_session(cluster: Cluster, spread: Spread) -> None:
    (user,) = cluster.users(1)
    await races.racing_creates_of_one_id(spread, user, count=50)


async def test_concurrent_creates_never_exceed_the_open_session_cap(
    cluster: Cluster, spread: Spread
) -> None:
    (user,) = cluster.users(1)
    # A few of the creates are runs on new ids, well within the rate limit.
    await races.racing_creates_within_cap(spread, user, cap=_MAX_OPEN_SESSIONS, via_runs=6)


async def test_no_two_runs_on_one_thread_overlap(cluster: Cluster, spread: Spread) -> None:
    rounds = 3  # 2 + 3 + 4 runs: within one user's rate limit even if refused runs count
    users = cluster.users(5)
    rng = random.Random()
    await races.in_batches(
        lambda: races.rounds_of_racing_runs(spread, users.pop(), rounds, rng), count=5, at_once=5
    )


async def test_an_end_racing_a_run_is_final_and_loses_no_turn(
    cluster: Cluster, spread: Spread
) -> None:
    # Up to three runs per round: a user per round keeps clear of the rate limit.
    users = cluster.users(20)
    rng = random.Random()
    await races.in_batches(lambda: races.end_against_run(spread, users.pop(), rng), count=20)


async def test_rate_limit_is_exact_across_processes(cluster: Cluster, spread: Spread) -> None:
    (user,) = cluster.users(1)
    await races.rate_limit_under_concurrency(spread, user, limit=_RUNS_PER_MINUTE)


# -- a process killed mid-run ------------------------------------------------------------------


async def test_a_killed_run_frees_its_thread_within_the_lease(
    cluster: Cluster, spread: Spread
) -> None:
    (user,) = cluster.users(1)
    thread = fresh_id("killed")
    before = await races.completed_turn(spread, user, thread, f"before the crash on {thread}")
    slow = await asyncio.to_thread(cluster.start, model=f"offline:slow-{_SLOW_MODEL_SECONDS}")
    headers = {"Authorization": f"Bearer {user}"}
    try:
        async with httpx.AsyncClient(base_url=slow.base, timeout=_REQUEST_TIMEOUT_SECONDS) as http:
            sent_at = time.monotonic()
            doomed = asyncio.create_task(
                http.post(f"/threads/{thread}/runs", json={"message": "cut off"}, headers=headers)
            )
            # In flight once the slow process reports the run (it then holds the lease), or
            # after half a second at the latest.
            running = False
            while not running and not doomed.done() and time.monotonic() - sent_at < 0.5:
                await asyncio.sleep(0.05)
                detail = await http.get(f"/threads/{thread}", headers=headers)
                running = detail.status_code == 200 and detail.json().get("running") is True
            assert not doomed.done(), f"the slow run ended on its own: {doomed.result().text}"
            slow.proc.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            slow.proc.wait(15)
            with pytest.raises(httpx.TransportError):
                await doomed
    finally:
        slow.stop()

    # Another process may take the thread once the dead run's lease has run out, not before.
    answers: list[tuple[float, int]] = []
    while True:
        response = await spread.run(user, thread, f"after the crash on {thread}")
        answered = time.monotonic()
        answers.append((round(answered - killed_at, 2), response.status_code))
        if response.status_code == 200:
            break
        assert response.status_code == 409, response.text
        assert answered < killed_at + _LEASE_SECONDS + 3, f"thread still held: {answers}"
        await asyncio.sleep(0.6)  # at most a dozen runs in all: within the rate limit
    if running:
        # The lease was taken after the run was sent and lasts at least its length from then.
        held = [status for at, status in answers if killed_at + at < sent_at + _LEASE_SECONDS - 0.2]
        assert set(held) <= {409}, f"the thread was free while the lease held: {answers}"

    roles, contents = await races.transcript(spread, user, thread)
    assert contents[:2] == before, contents
    assert contents[-2:] == [f"after the crash on {thread}", response.json()["reply"]], contents
    assert contents.count("cut off") <= 1, contents
    assert roles[-2:] == ["user", "assistant"]


async def test_json_patch_adds_from_three_processes_all_land(
    cluster: Cluster, spread: Spread
) -> None:
    (user,) = cluster.users(1)
    await races.concurrent_patch_adds(spread, user, count=50)
