"""How fast service comes back after a database outage, and whether threads stay held.

Usage: `python -m bench.outage_recovery [--backends postgres,redis] [--clients 4]
[--deadline 5] [--down 10] [--lease 30] [--repeat 1]`.

For each backend a throwaway server of its own (`tests.devservers`) and the app in this
process (ASGI, default settings but for the deadline and the lease given), with
`--clients` clients sending runs back to back, each on its own thread:

- `stopped`: the database is shut down cleanly mid-load, kept down `--down` seconds, and
  started again on the same data and port;
- `paused`: every process of the database is stopped with SIGSTOP (a hung host) for the
  deadline and a second more, then let go on with SIGCONT; meanwhile one more run is sent
  on a thread of its own, which answers 503 at its deadline, and 3 s after the database is
  back the next run on that thread is sent.

Every figure counts from the moment the database accepts connections again (`back`):
`/readyz` green, the first run that succeeds, every client's thread served again, the 409s
answered to runs sent after `back` and the last of them; for `paused` the status of the
next run on the thread whose run timed out.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from memory.settings import Settings
from server.app import create_app
from tests.devservers import ServerHandle, start_postgres, start_redis


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app's lifespan, and a client speaking ASGI to it (a 500 is a response)."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench", timeout=60
        ) as client:
            yield client


@dataclass
class Load:
    """Runs sent back to back, one thread per client, while the database comes and goes."""

    client: httpx.AsyncClient
    #: (thread, status, sent at, answered at) of every run.
    answers: list[tuple[str, int, float, float]] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def worker(self, thread: str) -> None:
        """Send runs on `thread` until told to stop; 50 ms apart after a failure."""
        turn = 0
        while not self.stop.is_set():
            turn += 1
            sent = time.monotonic()
            response = await self.client.post(
                f"/threads/{thread}/runs", json={"message": f"turn {turn} on {thread}"}
            )
            self.answers.append((thread, response.status_code, sent, time.monotonic()))
            if response.status_code != 200:
                await asyncio.sleep(0.05)

    def served(self, since: float) -> set[str]:
        """The threads with a successful run sent after `since`."""
        return {t for t, status, sent, _ in self.answers if status == 200 and sent >= since}


async def _until(check: Any, since: float, limit: float) -> float | None:
    """Seconds from `since` until the async `check()` is true (None: not within `limit`)."""
    while time.monotonic() - since < limit:
        if await check():
            return time.monotonic() - since
        await asyncio.sleep(0.02)
    return None


async def scenario(handle: ServerHandle, outage: str, args: argparse.Namespace) -> dict[str, Any]:
    """One outage under load; the figures of the module docstring."""
    settings = Settings(
        database_url=handle.url,
        embeddings="none",
        api_keys="",
        backend_timeout_seconds=args.deadline,
        lease_seconds=args.lease,
        runs_per_minute=1_000_000,
        max_open_sessions=1_000_000,
    )
    label = f"{outage}-{time.monotonic_ns()}"
    async with serving(settings) as client:
        load = Load(client)
        threads = [f"{label}-client-{i}" for i in range(args.clients)]
        workers = [asyncio.create_task(load.worker(t)) for t in threads]
        while len(load.served(0)) < len(threads):
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)
        probe = f"{label}-probe"
        probe_status, probe_took = None, None
        if outage == "stopped":
            await asyncio.to_thread(handle.halt)
            await asyncio.sleep(args.down)
            await asyncio.to_thread(handle.resume)
        else:
            handle.freeze()
            await asyncio.sleep(0.2)
            probe_sent = time.monotonic()
            probing = asyncio.create_task(
                client.post(f"/threads/{probe}/runs", json={"message": "sent while hung"})
            )
            await asyncio.sleep(args.deadline + 1.0)
            handle.thaw()
            probe_status = (await probing).status_code
            probe_took = time.monotonic() - probe_sent
        back = time.monotonic()

        async def ready() -> bool:
            return (await client.get("/readyz")).status_code == 200

        async def first() -> bool:
            return bool(load.served(back))

        async def every() -> bool:
            return load.served(back) >= set(threads)

        ready_s, first_s, every_s = await asyncio.gather(
            _until(ready, back, 60), _until(first, back, 60), _until(every, back, 60)
        )
        next_status = None
        if outage == "paused":
            await asyncio.sleep(max(0.0, back + 3.0 - time.monotonic()))
            next_status = (
                await client.post(f"/threads/{probe}/runs", json={"message": "3 s later"})
            ).status_code
        await asyncio.sleep(max(0.0, back + args.watch - time.monotonic()))
        load.stop.set()
        await asyncio.gather(*workers)
    conflicts = [
        sent - back for _, status, sent, _ in load.answers if status == 409 and sent >= back
    ]
    errors = sorted(status for _, status, _, _ in load.answers if status >= 500 and status != 503)
    return {
        "ready": ready_s,
        "first": first_s,
        "every": every_s,
        "conflicts": len(conflicts),
        "last_conflict": max(conflicts) if conflicts else None,
        "server_errors": errors,
        "probe": probe_status,
        "probe_took": probe_took,
        "next": next_status,
    }


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f} s"


async def main(args: argparse.Namespace) -> None:
    starters = {"postgres": start_postgres, "redis": start_redis}
    rows = []
    for backend in args.backends.split(","):
        for outage in ("stopped", "paused"):
            figures: list[dict[str, Any]] = []
            for _ in range(args.repeat):
                with tempfile.TemporaryDirectory(prefix="outage-") as scratch:
                    handle = starters[backend](Path(scratch))
                    try:
                        figures.append(await scenario(handle, outage, args))
                    finally:
                        handle.thaw()
                        handle.stop()
            rows.append((backend, outage, figures))
            for f in figures:
                print(backend, outage, f, flush=True)
    print()
    print(
        f"{args.clients} clients, deadline {args.deadline:g} s, lease {args.lease:g} s; "
        f"seconds from the database accepting connections again (median of {args.repeat})"
    )
    print()
    print(
        "| backend | outage | /readyz green | first run served | every thread served "
        f"| 409s in {args.watch:g} s after | last 409 | other 5xx | timed-out run, next run 3 s after |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for backend, outage, figures in rows:

        def median(name: str, figures: list[dict[str, Any]] = figures) -> float | None:
            values = [f[name] for f in figures if f[name] is not None]
            return statistics.median(values) if len(values) == len(figures) else None

        conflicts = "/".join(str(f["conflicts"]) for f in figures)
        last = [f["last_conflict"] for f in figures if f["last_conflict"] is not None]
        probe = ", ".join(
            f"{f['probe']} ({f['probe_took']:.1f} s), then {f['next']}"
            for f in figures
            if f["probe"]
        )
        print(
            f"| {backend} | {outage} | {_seconds(median('ready'))} | {_seconds(median('first'))} "
            f"| {_seconds(median('every'))} | {conflicts} | "
            f"{_seconds(max(last)) if last else '-'} | "
            f"{sum(len(f['server_errors']) for f in figures)} | {probe or '-'} |"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="postgres,redis")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--deadline", type=float, default=5.0, help="backend timeout, s")
    parser.add_argument("--down", type=float, default=10.0, help="seconds a stopped db is down")
    parser.add_argument("--lease", type=float, default=30.0, help="lease_seconds")
    parser.add_argument("--watch", type=float, default=12.0, help="seconds of load after back")
    parser.add_argument("--repeat", type=int, default=1)
    asyncio.run(main(parser.parse_args()))
