"""HTTP benchmark: `memory-agent serve` beside `langgraph dev` and the in-process graph.

Usage: `python -m bench.http_bench [--quick] [--backends sqlite,postgres,redis]
[--workers-list 1,2] [--duration 15] [--clients 8] [--skip-slow] [--skip-dev]`.

For each backend and worker count, one `memory-agent serve` process (and one `langgraph
dev` serving the same graph from `langgraph.json`, with its own in-memory persistence) is
driven over HTTP by a lean client: asyncio streams, one keep-alive connection per client,
hand-written HTTP/1.1 requests, responses read by status line and `content-length` (or
chunked encoding). It runs in this process, beside the server, and reports its own CPU
share so a reader can see what it took from the server's cores. Measured:

- saturation: `--clients` clients, each on its own thread, sending turns back to back
  for `--duration` seconds (after a warm-up); turns/s, latency percentiles and the server
  processes' CPU time per turn;
- constant rate (open loop): requests due at `start + i / rate` round-robin over 1,000
  threads, latency counted from the due time, at a few rates (by default 25 %, 50 % and
  80 % of that server's saturation throughput);
- the in-process reference: the same graph's turn through `graph.ainvoke` (and through
  `SessionManager.arun`, the server's path) on the same backend, with the same clients,
  so the HTTP layer's cost per turn can be read off;
- the paced model: servers started with `MEMORY_AGENT_MODEL=offline:slow-<pace>`, 100
  and 500 sessions in a closed loop, with turns/s, p99 and the server's resident memory
  per in-flight run (`VmRSS` of the server's processes sampled under load, minus idle).

Prints Markdown tables and writes `bench/results/http_bench.md`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.databases import Databases
from bench.workload import user_text

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
#: What `langgraph.json`'s relative paths need in the dev server's working directory.
_DEV_ENTRIES = ("agent", "memory")
#: Variables from the caller's shell that must not reach a server: they would change the
#: model, the embedder or what the LangGraph CLI configures, or enable tracing.
_DROPPED_PREFIXES = ("MEMORY_AGENT_", "LANGSMITH_", "LANGCHAIN_", "LANGGRAPH_")
_QUIET_ENV = {
    "LANGGRAPH_CLI_NO_ANALYTICS": "1",
    "LANGGRAPH_NO_VERSION_CHECK": "true",
    "LANGSMITH_TRACING": "false",
    "LANGCHAIN_TRACING_V2": "false",
    "PYTHONUNBUFFERED": "1",
}
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_STARTUP_TIMEOUT = 120.0


# --- the lean HTTP/1.1 client ---------------------------------------------------------------


class HttpError(Exception):
    """The connection failed or the response could not be read."""


class Connection:
    """One keep-alive HTTP/1.1 connection; requests are sent one after another."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        """Send one request; returns the status code and the whole body."""
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        request = (head + "\r\n").encode() + (body or b"")
        # A kept-alive connection the server closed while idle fails before any byte of the
        # response arrives; the request is then sent once more on a fresh connection.
        for attempt in (1, 2):
            reused = self._writer is not None
            try:
                if self._writer is None:
                    self._reader, self._writer = await asyncio.open_connection(
                        self.host, self.port, limit=1 << 20
                    )
                assert self._reader is not None
                self._writer.write(request)
                status, data, keep = await _read_response(self._reader)
                break
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
                self.close()
                stale = isinstance(exc, ConnectionResetError | BrokenPipeError) or (
                    isinstance(exc, asyncio.IncompleteReadError) and not exc.partial
                )
                if not (reused and stale and attempt == 1):
                    raise HttpError(type(exc).__name__) from exc
        if not keep:
            self.close()
        return status, data

    def close(self) -> None:
        """Close the socket; the next request opens a new one."""
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip().lower()
    keep = headers.get("connection") != "close"
    if "content-length" in headers:
        return status, await reader.readexactly(int(headers["content-length"])), keep
    if headers.get("transfer-encoding") == "chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":
                    pass
                return status, b"".join(parts), keep
            parts.append((await reader.readexactly(size + 2))[:-2])
    return status, await reader.read(), False


class Pool:
    """Idle keep-alive connections for the open-loop load, opened as concurrency needs."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._idle: list[Connection] = []

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        """A request on an idle connection, or a new one."""
        conn = self._idle.pop() if self._idle else Connection(self.host, self.port)
        try:
            return await conn.request(method, path, body)
        finally:
            self._idle.append(conn)

    def close(self) -> None:
        """Close every idle connection."""
        for conn in self._idle:
            conn.close()
        self._idle.clear()


# --- the two servers ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DROPPED_PREFIXES)}
    return {**env, **_QUIET_ENV, **extra}


class Server:
    """A server process started in its own session, with its API as the bench drives it."""

    kind = ""

    def __init__(self, label: str, port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.label, self.port, self.proc, self.log = label, port, proc, log

    def run_request(self, thread: str, text: str) -> tuple[str, bytes]:
        """The path and body of one turn on `thread`."""
        raise NotImplementedError

    async def create_thread(self, conn: Connection, name: str) -> str:
        """Create a thread for `name`; returns the id runs use."""
        raise NotImplementedError

    async def wait_ready(self, path: str) -> None:
        """Poll `path` until it answers 200."""
        deadline = time.monotonic() + _STARTUP_TIMEOUT
        conn = Connection("127.0.0.1", self.port)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label} exited:\n{self.log_tail()}")
            try:
                if (await conn.request("GET", path))[0] == 200:
                    conn.close()
                    return
            except (OSError, HttpError):
                conn.close()
            await asyncio.sleep(0.25)
        raise RuntimeError(f"{self.label} not ready after {_STARTUP_TIMEOUT:.0f}s")

    def log_tail(self, lines: int = 30) -> str:
        """The end of the server's log."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """Stop the server and every process it started."""
        if self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=20)

    def usage(self) -> tuple[int, float]:
        """Resident bytes and CPU seconds of the server's process tree."""
        return _tree_usage(self.proc.pid)


class MemoryAgentServer(Server):
    """`python -m server serve` (the `memory-agent serve` command)."""

    kind = "memory-agent"

    @classmethod
    def start(
        cls, database_url: str, workers: int, env: dict[str, str], work_dir: Path
    ) -> MemoryAgentServer:
        """Start a server on `database_url`; `--workers` is passed only when above 1."""
        port = _free_port()
        log = work_dir / f"memory-agent-{port}.log"
        command = [sys.executable, "-m", "server", "serve", "--host", "127.0.0.1"]
        command += ["--port", str(port)]
        if workers > 1:
            command += ["--workers", str(workers)]
        full_env = _clean_env(
            {
                "MEMORY_AGENT_DATABASE_URL": database_url,
                "MEMORY_AGENT_API_KEYS": "",
                "MEMORY_AGENT_MAX_OPEN_SESSIONS": "1000000",
                "MEMORY_AGENT_RUNS_PER_MINUTE": "1000000",
                "MEMORY_AGENT_POOL_SIZE": "20",
                "PYTHONPATH": str(REPO_ROOT),
                **env,
            }
        )
        with log.open("wb") as out:
            proc = subprocess.Popen(
                command,
                cwd=REPO_ROOT,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return cls("memory-agent", port, proc, log)

    def run_request(self, thread: str, text: str) -> tuple[str, bytes]:
        """`POST /threads/{id}/runs` with one message."""
        return f"/threads/{thread}/runs", json.dumps({"message": text}).encode()

    async def create_thread(self, conn: Connection, name: str) -> str:
        """`POST /threads` with the client's id (a connection reset is retried; a 409 on the
        retry means the first attempt created it)."""
        for attempt in range(3):
            try:
                status, body = await conn.request(
                    "POST", "/threads", json.dumps({"thread_id": name}).encode()
                )
                break
            except HttpError:
                if attempt == 2:
                    raise
                await asyncio.sleep(0.2)
        if status == 409 and attempt > 0:
            return name
        if status != 201:
            raise RuntimeError(f"creating thread {name}: {status} {body[:200]!r}")
        return name


class StreamingMemoryAgentServer(MemoryAgentServer):
    """The same server driven through `POST /threads/{id}/runs/stream` (server-sent events)."""

    def run_request(self, thread: str, text: str) -> tuple[str, bytes]:
        """`POST /threads/{id}/runs/stream`; the client reads the events to the end."""
        return f"/threads/{thread}/runs/stream", json.dumps({"message": text}).encode()


class DevServer(Server):
    """`langgraph dev` serving `langgraph.json`'s graph from a scratch working directory."""

    kind = "langgraph dev"

    @classmethod
    def start(
        cls, env: dict[str, str], embeddings: str, jobs: int | None, work_dir: Path
    ) -> DevServer:
        """Start `langgraph dev`; with embeddings `none` its store gets no vector index."""
        root = Path(tempfile.mkdtemp(prefix="dev-", dir=work_dir))
        config = json.loads((REPO_ROOT / "langgraph.json").read_text())
        if embeddings == "none":
            config.pop("store", None)
        (root / "langgraph.json").write_text(json.dumps(config, indent=2))
        for entry in _DEV_ENTRIES:
            (root / entry).symlink_to(REPO_ROOT / entry, target_is_directory=True)
        cli = Path(sys.executable).parent / "langgraph"
        if not cli.exists():
            raise RuntimeError(
                f"{cli} is missing: install the dev extras (pip install -e '.[dev]')"
            )
        port = _free_port()
        command = [str(cli), "dev", "--no-browser", "--no-reload", "--host", "127.0.0.1"]
        command += ["--port", str(port)]
        if jobs is not None:
            command += ["--n-jobs-per-worker", str(jobs)]
        log = root / "server.log"
        full_env = _clean_env({"MEMORY_AGENT_EMBEDDINGS": embeddings, **env})
        with log.open("wb") as out:
            proc = subprocess.Popen(
                command,
                cwd=root,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return cls("langgraph dev", port, proc, log)

    def run_request(self, thread: str, text: str) -> tuple[str, bytes]:
        """`POST /threads/{id}/runs/wait` on the `agent` assistant."""
        body = {"assistant_id": "agent", "input": {"messages": [{"role": "user", "content": text}]}}
        return f"/threads/{thread}/runs/wait", json.dumps(body).encode()

    async def create_thread(self, conn: Connection, name: str) -> str:
        """`POST /threads`; the server chooses the id."""
        status, body = await conn.request("POST", "/threads", b"{}")
        if status != 200:
            raise RuntimeError(f"creating a thread: {status} {body[:200]!r}")
        return str(json.loads(body)["thread_id"])


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def _tree_usage(root: int) -> tuple[int, float]:
    """`VmRSS` bytes and user+system CPU seconds of `root` and its descendants."""
    tree = _children()
    rss, cpu, todo = 0, 0.0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(tree.get(pid, []))
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                rss += int(line.split()[1]) * 1024
        cpu += (int(fields[11]) + int(fields[12])) / _CLK_TCK
    return rss, cpu


# --- loads ----------------------------------------------------------------------------------


@dataclass
class Load:
    """What one load against one server measured."""

    server: str
    backend: str
    workers: int
    mode: str
    clients: int = 0
    rate: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    elapsed: float = 0.0
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    idle_rss: int = 0
    rss_samples: list[int] = field(default_factory=list)
    inflight_samples: list[int] = field(default_factory=list)
    other_cores: float = 0.0
    cut_off: int = 0

    @property
    def ok(self) -> int:
        """Successful turns counted in the window."""
        return len(self.latencies_ms)

    @property
    def turns_per_s(self) -> float:
        """Successful turns per second of the window."""
        return self.ok / self.elapsed if self.elapsed else 0.0

    def percentile(self, q: float) -> float | None:
        """The `q` quantile (0-100) of successful turn latencies, in ms."""
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))]

    @property
    def errors(self) -> str:
        """Non-200 outcomes, e.g. `500×2, HttpError×1`, or `0`."""
        bad = sorted((k, v) for k, v in self.statuses.items() if k != "200")
        return ", ".join(f"{k}×{v}" for k, v in bad) or "0"

    @property
    def cpu_ms_per_turn(self) -> float | None:
        """The server processes' CPU time per successful turn."""
        return self.server_cpu * 1000 / self.ok if self.ok else None

    @property
    def rss_per_run(self) -> float | None:
        """Resident bytes above idle per in-flight run, over the load's samples."""
        if not self.rss_samples or not self.inflight_samples:
            return None
        inflight = statistics.mean(self.inflight_samples)
        if inflight <= 0:
            return None
        return (statistics.mean(self.rss_samples) - self.idle_rss) / inflight


class _Meter:
    """Samples the server's memory and the client's in-flight runs while a load runs."""

    def __init__(self, server: Server, load: Load) -> None:
        self.server, self.load = server, load
        self.inflight = 0
        self.measuring = False
        self._task: asyncio.Task[None] | None = None

    def __enter__(self) -> _Meter:
        self._task = asyncio.get_running_loop().create_task(self._sample())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _sample(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            if self.measuring:
                rss, _ = await asyncio.to_thread(self.server.usage)
                self.load.rss_samples.append(rss)
                self.load.inflight_samples.append(self.inflight)


async def _create_threads(server: Server, names: list[str], parallel: int = 16) -> list[str]:
    ids: list[str] = [""] * len(names)
    queue = list(enumerate(names))

    async def worker() -> None:
        conn = Connection("127.0.0.1", server.port)
        while queue:
            i, name = queue.pop()
            ids[i] = await server.create_thread(conn, name)
        conn.close()

    await asyncio.gather(*(worker() for _ in range(parallel)))
    return ids


def _thread_names(label: str, count: int) -> list[str]:
    tag = uuid.uuid4().hex[:8]
    return [f"{label}-{tag}-{i}" for i in range(count)]


async def closed_loop(
    server: Server,
    load: Load,
    duration: float,
    warmup: float,
    payload: int,
    grace: float = 5.0,
    settle: bool = False,
) -> Load:
    """`load.clients` clients, one thread each, turns back to back for `duration` seconds.

    Turns that finish during the warm-up are not counted; the window closes `duration`
    seconds after it, and turns still running then are not counted either. With `settle`,
    the warm-up also lasts until every client has finished a turn (at most a minute), so
    many sessions that all start at once are measured in their steady state.
    """
    threads = await _create_threads(server, _thread_names("closed", load.clients))
    load.idle_rss, _ = server.usage()
    loop = asyncio.get_running_loop()
    begin = loop.time()
    window = [begin + warmup + 3600.0, begin + warmup + 3600.0 + duration]
    started: set[int] = set()
    all_started = asyncio.Event()

    async def client(n: int) -> None:
        conn = Connection("127.0.0.1", server.port)
        turn = 0
        try:
            while loop.time() < window[1]:
                path, body = server.run_request(threads[n], user_text(turn, payload))
                turn += 1
                meter.inflight += 1
                start = loop.time()
                try:
                    status = str((await conn.request("POST", path, body))[0])
                except HttpError as exc:
                    status = str(exc)
                    await asyncio.sleep(0.05)
                finally:
                    meter.inflight -= 1
                end = loop.time()
                started.add(n)
                if len(started) == load.clients:
                    all_started.set()
                if window[0] <= end <= window[1]:
                    load.statuses[status] += 1
                    if status == "200":
                        load.latencies_ms.append((end - start) * 1000)
        finally:
            conn.close()

    with _Meter(server, load) as meter:
        clients = [asyncio.create_task(client(n)) for n in range(load.clients)]
        await asyncio.sleep(warmup)
        if settle:
            with suppress(TimeoutError):
                await asyncio.wait_for(all_started.wait(), timeout=60.0)
        window[:] = [loop.time(), loop.time() + duration]
        marks = _Marks.take(server)
        meter.measuring = True
        await asyncio.sleep(duration)
        meter.measuring = False
        marks.settle(load, server)
        # Turns still running now are not counted; a queue that lags far behind the window
        # (a server with fewer run slots than clients) is cut off rather than waited out.
        _, late = await asyncio.wait(clients, timeout=grace)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        load.cut_off = len(late)
    load.elapsed = duration
    return load


@dataclass
class _Marks:
    """CPU counters at the start of a measurement window."""

    server: float
    client: float
    machine: float
    wall: float

    @classmethod
    def take(cls, server: Server) -> _Marks:
        return cls(server.usage()[1], time.process_time(), _machine_busy(), time.monotonic())

    def settle(self, load: Load, server: Server) -> None:
        """Record the window's CPU use: the server's, this process's and everything else's."""
        load.server_cpu = server.usage()[1] - self.server
        load.client_cpu = time.process_time() - self.client
        others = _machine_busy() - self.machine - load.server_cpu - load.client_cpu
        load.other_cores = max(0.0, others) / (time.monotonic() - self.wall)


def _machine_busy() -> float:
    """CPU seconds the whole machine has spent busy (not idle or waiting on I/O)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / _CLK_TCK


async def open_loop(
    server: Server, load: Load, duration: float, threads: list[str], payload: int
) -> Load:
    """Requests due at `start + i / rate`, round-robin over `threads`; latency from due time."""
    pool = Pool("127.0.0.1", server.port)
    loop = asyncio.get_running_loop()
    marks = _Marks.take(server)

    async def one(i: int, due: float) -> None:
        path, body = server.run_request(threads[i % len(threads)], user_text(i, payload))
        try:
            status = str((await pool.request("POST", path, body))[0])
        except HttpError as exc:
            status = str(exc)
        load.statuses[status] += 1
        if status == "200":
            load.latencies_ms.append((loop.time() - due) * 1000)

    total = int(load.rate * duration)
    start = loop.time()
    tasks = []
    for i in range(total):
        due = start + i / load.rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    load.elapsed = loop.time() - start
    marks.settle(load, server)
    pool.close()
    return load


# --- the in-process reference ---------------------------------------------------------------


@dataclass
class InProcess:
    """The same graph's turn without HTTP, in this process."""

    backend: str
    api: str
    p50_ms: float
    turns_per_s: float
    cpu_ms_per_turn: float
    other_cores: float


async def in_process(
    url: str,
    backend: str,
    embeddings: str,
    clients: int,
    duration: float,
    warmup: float,
    payload: int,
) -> list[InProcess]:
    """One client alone (latency) and `clients` at once (throughput and CPU per turn).

    `ainvoke` is the graph's turn as `bench/overhead.py` runs it; `arun` adds what the
    server does around it (the session record read and updated in the store).
    """
    from agent import build_graph
    from agent.namespaces import Owner
    from memory.sessions import SessionManager
    from memory.settings import Settings
    from memory.stores import aopen_backends

    results = []
    async with aopen_backends(url, settings=Settings(embeddings=embeddings)) as backends:
        graph = build_graph(backends.checkpointer, backends.store)
        manager = SessionManager(graph)
        owner = Owner(tenant="default", user="local")

        def turn_fn(api: str, thread: str) -> Callable[[int], Awaitable[Any]]:
            config, context = manager.run_config(owner, thread), manager.run_context(owner)
            if api == "ainvoke":
                return lambda n: graph.ainvoke(
                    {"messages": [{"role": "user", "content": user_text(n, payload)}]},
                    config,
                    context=context,
                    durability=manager.durability,
                )
            return lambda n: manager.arun(
                owner, thread, [{"role": "user", "content": user_text(n, payload)}]
            )

        for api in ("ainvoke", "arun"):
            threads = _thread_names(f"inproc-{api}", clients + 1)
            for thread in threads:
                await manager.acreate(owner, thread)
            single = await _inprocess_load([turn_fn(api, threads[0])], duration / 3, warmup)
            many = await _inprocess_load([turn_fn(api, t) for t in threads[1:]], duration, warmup)
            results.append(
                InProcess(
                    backend,
                    api,
                    statistics.median(single[0]),
                    len(many[0]) / duration,
                    many[1] * 1000 / max(1, len(many[0])),
                    many[2],
                )
            )
    return results


async def _inprocess_load(
    turns: list[Callable[[int], Awaitable[Any]]], duration: float, warmup: float
) -> tuple[list[float], float, float]:
    loop = asyncio.get_running_loop()
    begin = loop.time()
    window = (begin + warmup, begin + warmup + duration)
    latencies: list[float] = []
    marks: list[float] = []

    async def client(turn: Callable[[int], Awaitable[Any]]) -> None:
        n = 0
        while loop.time() < window[1]:
            start = loop.time()
            await turn(n)
            n += 1
            end = loop.time()
            if window[0] <= end <= window[1]:
                latencies.append((end - start) * 1000)

    async def clock() -> None:
        await asyncio.sleep(warmup)
        marks.extend((time.process_time(), _machine_busy()))
        await asyncio.sleep(duration)
        marks.extend((time.process_time(), _machine_busy()))

    await asyncio.gather(clock(), *(client(t) for t in turns))
    cpu = marks[2] - marks[0]
    return latencies, cpu, max(0.0, marks[3] - marks[1] - cpu) / duration


# --- the run --------------------------------------------------------------------------------


@dataclass
class Plan:
    """Every option of a run."""

    backends: list[str]
    workers: list[int]
    duration: float
    rate_duration: float
    slow_duration: float
    warmup: float
    clients: int
    rates: list[float] | None
    rate_fractions: list[float]
    threads: int
    payload: int
    slow_payload: int
    slow_pace: float
    slow_sessions: list[int]
    slow_stream: bool
    embeddings: str
    skip_slow: bool
    skip_dev: bool
    dev_jobs: int | None


@dataclass
class Report:
    """Everything measured, for the tables."""

    saturation: list[Load] = field(default_factory=list)
    rates: list[Load] = field(default_factory=list)
    single: list[Load] = field(default_factory=list)
    inprocess: list[InProcess] = field(default_factory=list)
    slow: list[Load] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@contextmanager
def _running(server: Server) -> Iterator[Server]:
    try:
        yield server
    finally:
        server.stop()


async def _fast_suite(
    server: Server, backend: str, workers: int, plan: Plan, report: Report
) -> None:
    ready = "/readyz" if isinstance(server, MemoryAgentServer) else "/ok"
    await server.wait_ready(ready)
    name = server.kind
    _say(f"  {name} {backend} ×{workers}: one client")
    one = Load(name, backend, workers, "closed", clients=1)
    report.single.append(
        await closed_loop(server, one, plan.duration / 3, plan.warmup, plan.payload)
    )
    _say(f"  {name} {backend} ×{workers}: {plan.clients} clients, {plan.duration:.0f}s")
    sat = Load(name, backend, workers, "closed", clients=plan.clients)
    await closed_loop(server, sat, plan.duration, plan.warmup, plan.payload)
    report.saturation.append(sat)
    rates = plan.rates or [max(1.0, round(sat.turns_per_s * f)) for f in plan.rate_fractions]
    threads = await _create_threads(server, _thread_names("open", plan.threads))
    for rate in rates:
        _say(f"  {name} {backend} ×{workers}: {rate:.0f} req/s over {plan.threads} threads")
        load = Load(name, backend, workers, "open", rate=rate)
        report.rates.append(
            await open_loop(server, load, plan.rate_duration, threads, plan.payload)
        )


async def _slow_suite(
    server: Server, backend: str, workers: int, plan: Plan, report: Report
) -> None:
    ready = "/readyz" if isinstance(server, MemoryAgentServer) else "/ok"
    await server.wait_ready(ready)
    # A few turns first, so what the first runs load lazily is part of the idle figure.
    warm = Load(server.kind, backend, workers, "closed", clients=2)
    await closed_loop(server, warm, 1.0, 0.0, plan.slow_payload)
    for sessions in plan.slow_sessions:
        _say(f"  {server.kind} {backend} ×{workers}: {sessions} sessions, paced model")
        load = Load(server.kind, backend, workers, "slow", clients=sessions)
        warmup = max(plan.warmup, 2.5 * plan.slow_pace)
        report.slow.append(
            await closed_loop(
                server, load, plan.slow_duration, warmup, plan.slow_payload, settle=True
            )
        )


def _run_async(coro: Awaitable[Any]) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)  # type: ignore[arg-type]
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def run(plan: Plan, work_dir: Path) -> Report:
    """Every measurement of `plan`, one server at a time."""
    report = Report()
    fast_env = {"MEMORY_AGENT_EMBEDDINGS": plan.embeddings, "MEMORY_AGENT_MODEL": "offline"}
    slow_model = f"offline:slow-{plan.slow_pace:g}"
    slow_env = {**fast_env, "MEMORY_AGENT_MODEL": slow_model}
    server_cls = StreamingMemoryAgentServer if plan.slow_stream else MemoryAgentServer
    with Databases(work_dir) as dbs:
        for backend in plan.backends:
            _say(f"{backend}: in-process reference")
            url = dbs.url(backend, f"inproc_{backend}")
            report.inprocess += _run_async(
                in_process(
                    url,
                    backend,
                    plan.embeddings,
                    plan.clients,
                    plan.duration,
                    plan.warmup,
                    plan.payload,
                )
            )
            for workers in plan.workers:
                _say(f"{backend}: memory-agent serve, {workers} worker(s)")
                url = dbs.url(backend, f"http_{backend}_{workers}")
                with _running(MemoryAgentServer.start(url, workers, fast_env, work_dir)) as srv:
                    _run_async(_fast_suite(srv, backend, workers, plan, report))
                if plan.skip_slow:
                    continue
                url = dbs.url(backend, f"slow_{backend}_{workers}")
                with _running(server_cls.start(url, workers, slow_env, work_dir)) as srv:
                    _run_async(_slow_suite(srv, backend, workers, plan, report))
        if plan.skip_dev:
            report.skipped.append("langgraph dev (--skip-dev)")
            return report
        _say("langgraph dev")
        jobs = plan.dev_jobs
        fast_jobs = None if jobs == 0 else jobs or max(10, plan.clients)
        with _running(DevServer.start(fast_env, plan.embeddings, fast_jobs, work_dir)) as srv:
            _run_async(_fast_suite(srv, "in-memory", 1, plan, report))
        if not plan.skip_slow:
            slow_jobs = None if jobs == 0 else jobs or max(plan.slow_sessions)
            with _running(DevServer.start(slow_env, plan.embeddings, slow_jobs, work_dir)) as srv:
                _run_async(_slow_suite(srv, "in-memory", 1, plan, report))
    return report


# --- tables ---------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def _pct(load: Load) -> str:
    return f"{100 * load.client_cpu / load.elapsed:.0f} %" if load.elapsed else "—"


def _ratio(num: float | None, den: float | None) -> str:
    return "—" if not num or not den else f"{num / den:.2f}×"


def tables(report: Report, plan: Plan) -> str:
    """Every result as Markdown."""
    out = []
    out.append(
        f"## Saturation: {plan.clients} clients, one thread each, back to back, "
        f"{plan.duration:g}s\n"
    )
    out.append(
        "| server | backend | workers | turns/s | p50 ms | p95 ms | p99 ms | errors "
        "| server CPU ms/turn | client CPU | other CPU | 1 client p50 ms |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for load in report.saturation:
        single = _find(report.single, load.server, load.backend, load.workers)
        out.append(
            f"| {load.server} | {load.backend} | {load.workers} | {load.turns_per_s:.1f} "
            f"| {_ms(load.percentile(50))} | {_ms(load.percentile(95))} "
            f"| {_ms(load.percentile(99))} | {load.errors} | {_ms(load.cpu_ms_per_turn)} "
            f"| {_pct(load)} | {load.other_cores:.2f} cores "
            f"| {_ms(single.percentile(50) if single else None)} |"
        )
    out.append(
        f"\n## Constant rate: {plan.threads} threads, round-robin, {plan.rate_duration:g}s "
        "per rate, latency from the due time\n"
    )
    out.append(
        "| server | backend | workers | target req/s | turns/s done | ok | errors | p50 ms "
        "| p95 ms | p99 ms | other CPU |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for load in report.rates:
        out.append(
            f"| {load.server} | {load.backend} | {load.workers} | {load.rate:.0f} "
            f"| {load.turns_per_s:.1f} | {load.ok} | {load.errors} | {_ms(load.percentile(50))} "
            f"| {_ms(load.percentile(95))} | {_ms(load.percentile(99))} "
            f"| {load.other_cores:.2f} cores |"
        )
    out.append("\n## HTTP against the in-process turn (memory-agent, 1 worker)\n")
    out.append(
        "Turn cost is CPU time per turn at saturation: the server's processes over HTTP, this "
        f"process in-process ({plan.clients} concurrent turns either way). Latency is one "
        "client alone. Target: HTTP ÷ `ainvoke` ≤ 1.2×.\n"
    )
    out.append(
        "| backend | ainvoke CPU ms/turn | arun CPU ms/turn | HTTP CPU ms/turn "
        "| HTTP ÷ ainvoke | HTTP ÷ arun | ainvoke p50 ms | HTTP p50 ms | latency HTTP ÷ ainvoke "
        "| in-process turns/s | HTTP turns/s | other CPU in-process / HTTP |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for backend in plan.backends:
        ref = next(
            (r for r in report.inprocess if r.backend == backend and r.api == "ainvoke"), None
        )
        arun = next((r for r in report.inprocess if r.backend == backend and r.api == "arun"), None)
        sat = _find(report.saturation, "memory-agent", backend, 1)
        single = _find(report.single, "memory-agent", backend, 1)
        if ref is None or arun is None or sat is None or single is None:
            continue
        http_p50 = single.percentile(50)
        out.append(
            f"| {backend} | {_ms(ref.cpu_ms_per_turn)} | {_ms(arun.cpu_ms_per_turn)} "
            f"| {_ms(sat.cpu_ms_per_turn)} | {_ratio(sat.cpu_ms_per_turn, ref.cpu_ms_per_turn)} "
            f"| {_ratio(sat.cpu_ms_per_turn, arun.cpu_ms_per_turn)} | {_ms(ref.p50_ms)} "
            f"| {_ms(http_p50)} | {_ratio(http_p50, ref.p50_ms)} | {ref.turns_per_s:.1f} "
            f"| {sat.turns_per_s:.1f} | {ref.other_cores:.2f} / {sat.other_cores:.2f} cores |"
        )
    dev = _find(report.saturation, "langgraph dev", "in-memory", 1)
    if dev is not None:
        out.append("\n## memory-agent against langgraph dev (saturation turns/s)\n")
        out.append(
            "Targets on SQLite: ≥ 2× with 1 worker, ≥ 3× with 2 workers. langgraph dev keeps "
            "its threads in memory (its own persistence), so the comparison favours it. "
            f"{_dev_jobs_note(plan)}\n"
        )
        out.append("| backend | workers | memory-agent turns/s | langgraph dev turns/s | ratio |")
        out.append("|---|---|---|---|---|")
        for load in report.saturation:
            if load.server == "memory-agent":
                out.append(
                    f"| {load.backend} | {load.workers} | {load.turns_per_s:.1f} "
                    f"| {dev.turns_per_s:.1f} | {_ratio(load.turns_per_s, dev.turns_per_s)} |"
                )
    if report.slow:
        route = "runs/stream (SSE)" if plan.slow_stream else "runs"
        out.append(
            f"\n## Paced model (`offline:slow-{plan.slow_pace:g}`): sessions in a closed loop, "
            f"{plan.slow_duration:g}s, `{route}`\n"
        )
        out.append(
            "Memory per run: mean `VmRSS` of the server's processes during the load minus "
            "idle, over the mean runs in flight. Target at 100 sessions: ≥ 90 turns/s, "
            "p99 < 1.5 s.\n"
        )
        out.append(
            "| server | backend | workers | sessions | turns/s | p50 ms | p99 ms | errors "
            "| idle RSS MB | load RSS MB | KB per in-flight run | server CPU ms/turn "
            "| cut off | other CPU |"
        )
        out.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for load in report.slow:
            rss = statistics.mean(load.rss_samples) / 2**20 if load.rss_samples else None
            per_run = load.rss_per_run
            out.append(
                f"| {load.server} | {load.backend} | {load.workers} | {load.clients} "
                f"| {load.turns_per_s:.1f} | {_ms(load.percentile(50))} "
                f"| {_ms(load.percentile(99))} | {load.errors} | {load.idle_rss / 2**20:.0f} "
                f"| {_ms(rss)} | {_ms(per_run / 1024 if per_run is not None else None)} "
                f"| {_ms(load.cpu_ms_per_turn)} | {load.cut_off} | {load.other_cores:.2f} cores |"
            )
    if report.skipped:
        out.append("\nSkipped: " + "; ".join(report.skipped))
    return "\n".join(out)


def _dev_jobs_note(plan: Plan) -> str:
    if plan.dev_jobs == 0:
        return "It ran with its default job slots (`--n-jobs-per-worker` not passed)."
    fast = plan.dev_jobs or max(10, plan.clients)
    slow = plan.dev_jobs or max(plan.slow_sessions)
    return f"It ran with `--n-jobs-per-worker` {fast} (paced runs: {slow})."


def _find(loads: list[Load], server: str, backend: str, workers: int) -> Load | None:
    return next(
        (x for x in loads if x.server == server and x.backend == backend and x.workers == workers),
        None,
    )


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the tables and write `bench/results/http_bench.md`."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.http_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="a few seconds per measurement")
    parser.add_argument("--backends", default="sqlite,postgres,redis")
    parser.add_argument(
        "--workers-list", default="1,2", help="memory-agent worker counts (2 passes --workers 2)"
    )
    parser.add_argument("--duration", type=float, help="seconds of saturation (default 15)")
    parser.add_argument("--rate-duration", type=float, help="seconds per rate (default 10)")
    parser.add_argument("--slow-duration", type=float, help="seconds per paced load (default 10)")
    parser.add_argument("--clients", type=int, default=8, help="saturation clients")
    parser.add_argument(
        "--rates", help="requests/s, comma-separated (default: 25,50,80 %% of saturation)"
    )
    parser.add_argument("--threads", type=int, default=1000, help="threads of the constant rate")
    parser.add_argument("--payload", type=int, default=560, help="bytes per user message")
    parser.add_argument(
        "--slow-payload",
        type=int,
        default=60,
        help="bytes per message of the paced runs (short: a turn stays one model call)",
    )
    parser.add_argument("--slow-pace", type=float, default=1.0, help="seconds per model call")
    parser.add_argument("--slow-sessions", default="100,500")
    parser.add_argument(
        "--slow-stream", action="store_true", help="paced runs through runs/stream (SSE)"
    )
    parser.add_argument("--embeddings", default="none", choices=["none", "local"])
    parser.add_argument("--skip-slow", action="store_true")
    parser.add_argument("--skip-dev", action="store_true")
    parser.add_argument(
        "--dev-jobs",
        type=int,
        help="langgraph dev --n-jobs-per-worker; default: max(10, clients) for the fast runs "
        "and the most paced sessions for the paced ones; 0 passes nothing (the server then "
        "runs one job at a time)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "http_bench.md")
    args = parser.parse_args(argv)
    quick = args.quick
    plan = Plan(
        backends=[b for b in args.backends.split(",") if b],
        workers=[int(w) for w in args.workers_list.split(",") if w],
        duration=args.duration or (4.0 if quick else 15.0),
        rate_duration=args.rate_duration or (3.0 if quick else 10.0),
        slow_duration=args.slow_duration or (4.0 if quick else 10.0),
        warmup=1.0 if quick else 2.0,
        clients=args.clients,
        rates=_floats(args.rates) if args.rates else None,
        rate_fractions=[0.25, 0.5, 0.8],
        threads=args.threads,
        payload=args.payload,
        slow_payload=args.slow_payload,
        slow_pace=args.slow_pace,
        slow_sessions=[int(s) for s in args.slow_sessions.split(",") if s],
        slow_stream=args.slow_stream,
        embeddings=args.embeddings,
        skip_slow=args.skip_slow,
        skip_dev=args.skip_dev,
        dev_jobs=args.dev_jobs,
    )
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="http-bench-") as tmp:
        report = run(plan, Path(tmp))
    text = tables(report, plan)
    header = (
        "# HTTP benchmark: memory-agent serve, langgraph dev, in-process\n\n"
        f"`python -m bench.http_bench {' '.join(argv if argv is not None else sys.argv[1:])}`"
        f" — {os.cpu_count()} cores, client and servers on the same machine; "
        f"embeddings `{plan.embeddings}`, offline model, {plan.payload}-byte messages; "
        "the load client is this process (asyncio streams, keep-alive HTTP/1.1; its CPU "
        f"share is the `client CPU` column). Run took {time.monotonic() - started:.0f}s.\n\n"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(header + text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
