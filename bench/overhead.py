"""Persistence overhead per turn by durability mode and API, memory-agent beside stock LangGraph.

Usage: `python -m bench.overhead [--turns 200] [--backends memory,sqlite,postgres,redis]`.

`bench.turns` drives the sync API with the default durability over long threads; this
script answers the narrower question of what one turn's persistence costs, for every
`durability` mode and for both `invoke` and `ainvoke` (the HTTP server's path). Each cell
is the median turn time minus the median time of the same graph with no checkpointer, run
on the state the checkpoint held (and, for the agent, on the same store), after `--warm`
turns. Stock runs the stock graph on LangGraph's own saver classes over the same
connections; its thread grows to `--warm + --turns` turns, so its figures include some of
the growth `bench.turns` shows. Writes `bench/results/overhead.md`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from langchain_core.messages import HumanMessage

from agent import build_graph
from agent.namespaces import Owner
from bench.databases import Databases
from bench.stock import astock_saver, build_stock_graph, stock_saver
from bench.workload import build_unpersisted_agent, user_text
from memory.sessions import SessionManager
from memory.settings import Settings
from memory.stores.factory import aopen_backends, open_backends

BACKENDS = ["memory", "sqlite", "postgres", "redis"]
DURABILITIES = ["sync", "async", "exit"]
_SETTINGS = Settings(embeddings="none")


class _Timings:
    def __init__(self) -> None:
        self.turn: list[float] = []
        self.bare: list[float] = []

    def overhead(self) -> float:
        return statistics.median(self.turn) - statistics.median(self.bare)


def _timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> float:
    begin = time.perf_counter()
    fn(*args, **kwargs)
    return (time.perf_counter() - begin) * 1000


async def _atimed(call: Awaitable[Any]) -> float:
    begin = time.perf_counter()
    await call
    return (time.perf_counter() - begin) * 1000


def _agent_sync(url: str, durability: str, warm: int, turns: int, size: int) -> float:
    timings = _Timings()
    with open_backends(url, settings=_SETTINGS) as backends:
        graph = build_graph(backends.checkpointer, backends.store)
        bare = build_unpersisted_agent(backends.store)
        manager = SessionManager(graph)
        owner = Owner(tenant="bench", user=f"u{uuid.uuid4().hex[:8]}")
        manager.create(owner, "t1")
        config, context = manager.run_config(owner, "t1"), manager.run_context(owner)
        base = {"configurable": {"thread_id": f"bare-{uuid.uuid4().hex[:8]}"}}
        for turn in range(warm + turns):
            text = user_text(turn, size)
            if turn >= warm:
                values = graph.get_state(config).values
                state = {**values, "messages": [*values["messages"], HumanMessage(text)]}
                timings.bare.append(_timed(bare.invoke, state, base, context=context))
            message = {"messages": [HumanMessage(text)]}
            elapsed = _timed(graph.invoke, message, config, context=context, durability=durability)
            if turn >= warm:
                timings.turn.append(elapsed)
    return timings.overhead()


async def _agent_async(url: str, durability: str, warm: int, turns: int, size: int) -> float:
    timings = _Timings()
    async with aopen_backends(url, settings=_SETTINGS) as backends:
        graph = build_graph(backends.checkpointer, backends.store)
        bare = build_unpersisted_agent(backends.store)
        manager = SessionManager(graph)
        owner = Owner(tenant="bench", user=f"u{uuid.uuid4().hex[:8]}")
        await manager.acreate(owner, "t1")
        config, context = manager.run_config(owner, "t1"), manager.run_context(owner)
        base = {"configurable": {"thread_id": f"bare-{uuid.uuid4().hex[:8]}"}}
        for turn in range(warm + turns):
            text = user_text(turn, size)
            if turn >= warm:
                values = (await graph.aget_state(config)).values
                state = {**values, "messages": [*values["messages"], HumanMessage(text)]}
                timings.bare.append(await _atimed(bare.ainvoke(state, base, context=context)))
            message = {"messages": [HumanMessage(text)]}
            elapsed = await _atimed(
                graph.ainvoke(message, config, context=context, durability=durability)
            )
            if turn >= warm:
                timings.turn.append(elapsed)
    return timings.overhead()


def _stock_sync(url: str, durability: str, warm: int, turns: int, size: int) -> float:
    timings = _Timings()
    with open_backends(url, settings=_SETTINGS) as backends:
        graph = build_stock_graph(stock_saver(backends.checkpointer))
        bare = build_stock_graph(None)
        config = {"configurable": {"thread_id": f"stock-{uuid.uuid4().hex[:8]}"}}
        for turn in range(warm + turns):
            text = user_text(turn, size)
            if turn >= warm:
                messages = graph.get_state(config).values["messages"]
                timings.bare.append(
                    _timed(bare.invoke, {"messages": [*messages, HumanMessage(text)]})
                )
            message = {"messages": [HumanMessage(text)]}
            elapsed = _timed(graph.invoke, message, config, durability=durability)
            if turn >= warm:
                timings.turn.append(elapsed)
    return timings.overhead()


async def _stock_async(url: str, durability: str, warm: int, turns: int, size: int) -> float:
    timings = _Timings()
    async with aopen_backends(url, settings=_SETTINGS) as backends:
        graph = build_stock_graph(await astock_saver(backends.checkpointer))
        bare = build_stock_graph(None)
        config = {"configurable": {"thread_id": f"stock-{uuid.uuid4().hex[:8]}"}}
        for turn in range(warm + turns):
            text = user_text(turn, size)
            if turn >= warm:
                messages = (await graph.aget_state(config)).values["messages"]
                payload = {"messages": [*messages, HumanMessage(text)]}
                timings.bare.append(await _atimed(bare.ainvoke(payload)))
            message = {"messages": [HumanMessage(text)]}
            elapsed = await _atimed(graph.ainvoke(message, config, durability=durability))
            if turn >= warm:
                timings.turn.append(elapsed)
    return timings.overhead()


def main(argv: list[str] | None = None) -> int:
    """Measure every cell and write `bench/results/<name>.md`."""
    parser = argparse.ArgumentParser(prog="python -m bench.overhead", description=__doc__)
    parser.add_argument("--turns", type=int, default=200, help="measured turns per cell")
    parser.add_argument("--warm", type=int, default=20, help="turns before measuring")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--payload", type=int, default=560, help="bytes per user message")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--name", default="overhead")
    args = parser.parse_args(argv)
    backends = args.backends.split(",")
    for name in backends:
        if name not in BACKENDS:
            parser.error(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")

    header = [
        "backend",
        "side",
        *[f"{d} / {api}" for d in DURABILITIES for api in ("invoke", "ainvoke")],
    ]
    rows: list[list[str]] = []
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, Databases(Path(tmp)) as dbs:
        for kind in backends:
            url = dbs.url(kind, "overhead")
            for side, run_sync, run_async in (
                ("memory-agent", _agent_sync, _agent_async),
                ("stock", _stock_sync, _stock_async),
            ):
                cells = []
                for durability in DURABILITIES:
                    shape = (url, durability, args.warm, args.turns, args.payload)
                    cells.append(run_sync(*shape))
                    cells.append(asyncio.run(run_async(*shape)))
                rows.append([kind, side, *[f"{c:+.2f}" for c in cells]])
                print(f"{kind} {side}: {' '.join(rows[-1][2:])}", file=sys.stderr, flush=True)
    lines = [
        "# Persistence overhead per turn (ms over the same graph with no checkpointer)",
        "",
        f"`python -m bench.overhead --turns {args.turns} --warm {args.warm}`: median of "
        f"{args.turns} turns after {args.warm}, {round(time.monotonic() - began)} s in all. "
        "Columns: `durability` mode / the API the turn went through.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *["| " + " | ".join(row) + " |" for row in rows],
        "",
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
