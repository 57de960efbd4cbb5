"""HTTP load: 1,000 threads getting turns through `memory-agent serve` at a constant rate.

Usage: `python -m bench.http_load [--backends sqlite,postgres] [--rate 40] [--duration 30]`.

The load is open-loop: request i is due at `start + i / rate` whatever happened to the
earlier ones, and its latency counts from that due time, so a slow server cannot hide its
queueing by slowing the client down. Requests go round-robin over the threads, so each
thread gets a turn every `threads / rate` seconds and never two at once. Prints a table and
writes `bench/results/http.md`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.databases import Databases
from bench.workload import user_text


@dataclass
class LoadResult:
    """What one backend sustained at one request rate."""

    backend: str
    rate: float
    duration: float
    threads: int
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    elapsed: float = 0.0

    def percentile(self, q: float) -> float | None:
        """The `q` quantile (0-100) of successful request latencies."""
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_server(database_url: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "MEMORY_AGENT_DATABASE_URL": database_url,
        "MEMORY_AGENT_EMBEDDINGS": "none",
        "MEMORY_AGENT_API_KEYS": "",
        "MEMORY_AGENT_MAX_OPEN_SESSIONS": "1000000",
        "MEMORY_AGENT_RUNS_PER_MINUTE": "1000000",
        "MEMORY_AGENT_POOL_SIZE": "20",
    }
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "server", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def _wait_ready(base: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    async with httpx.AsyncClient(base_url=base) as client:
        for _ in range(300):
            if proc.poll() is not None:
                raise RuntimeError(f"server exited:\n{log.read_text()[-2000:]}")
            try:
                if (await client.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"server not ready after 60s:\n{log.read_text()[-2000:]}")


async def _load(base: str, result: LoadResult, size: int) -> None:
    limits = httpx.Limits(max_connections=2000, max_keepalive_connections=500)
    timeout = httpx.Timeout(60.0)
    prefix = f"load-{os.getpid()}-{int(time.time())}"
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=timeout) as client:

        async def one(i: int, due: float) -> None:
            thread = f"{prefix}-{i % result.threads}"
            body = {"message": user_text(i, size)}
            try:
                response = await client.post(f"/threads/{thread}/runs", json=body)
                status = str(response.status_code)
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            result.statuses[status] += 1
            if status == "200":
                result.latencies_ms.append((time.perf_counter() - due) * 1000)

        total = int(result.rate * result.duration)
        start = time.perf_counter()
        tasks = []
        for i in range(total):
            due = start + i / result.rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, due)))
        await asyncio.gather(*tasks)
        result.elapsed = time.perf_counter() - start


def run(
    kind: str, dbs: Databases, rate: float, duration: float, threads: int, size: int
) -> LoadResult:
    """Start a server on a fresh `kind` database and drive it at `rate` requests per second."""
    url = dbs.url(kind, f"http_{int(rate)}")
    port = _free_port()
    log = dbs.work_dir / f"server-{kind}-{port}.log"
    proc = _start_server(url, port, log)
    try:
        base = f"http://127.0.0.1:{port}"
        asyncio.run(_wait_ready(base, proc, log))
        result = LoadResult(kind, rate, duration, threads)
        asyncio.run(_load(base, result, size))
        return result
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}"


def table(results: list[LoadResult]) -> str:
    """The results as a Markdown table."""
    lines = [
        "| backend | threads | target req/s | turns/s done | ok | errors | p50 ms | p95 ms "
        "| p99 ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ok = r.statuses.get("200", 0)
        errors = ", ".join(f"{k}×{v}" for k, v in sorted(r.statuses.items()) if k != "200")
        lines.append(
            f"| {r.backend} | {r.threads} | {r.rate:.0f} | {ok / r.elapsed:.1f} | {ok} "
            f"| {errors or '0'} | {_fmt(r.percentile(50))} | {_fmt(r.percentile(95))} "
            f"| {_fmt(r.percentile(99))} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the load test per backend and rate; write `bench/results/http.md`."""
    parser = argparse.ArgumentParser(prog="python -m bench.http_load", description=__doc__)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--rates", default="20,40", help="requests per second, comma-separated")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per rate")
    parser.add_argument("--threads", type=int, default=1000)
    parser.add_argument("--payload", type=int, default=560)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp, Databases(Path(tmp)) as dbs:
        for kind in args.backends.split(","):
            for rate in [float(r) for r in args.rates.split(",")]:
                print(f"{kind} at {rate:.0f} req/s ...", file=sys.stderr, flush=True)
                results.append(run(kind, dbs, rate, args.duration, args.threads, args.payload))
    text = table(results)
    args.out.mkdir(parents=True, exist_ok=True)
    header = (
        f"# HTTP load: {args.threads} threads, constant rate, {args.duration:.0f}s per rate\n\n"
        "Latency counts from each request's due time (open loop), successful runs only. "
        f"Median of all requests; machine: {os.cpu_count()} cores, client and server on it.\n\n"
    )
    (args.out / "http.md").write_text(header + text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
