"""Per-turn cost of memory-agent against stock LangGraph, on every backend, in one run.

Usage: `python -m bench.turns [--quick] [--turns N] [--backends memory,sqlite,...]`.
Prints a table, and writes it as Markdown plus a PNG plot under `bench/results/`.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.messages import HumanMessage

from agent import Context, build_graph, transcript
from agent.namespaces import Owner
from bench.databases import Databases, stored_bytes
from bench.report import write_report
from bench.stock import build_stock_graph, stock_saver
from bench.workload import ModelInputs, build_unpersisted_agent, user_text
from memory.sessions import SessionManager
from memory.settings import Settings
from memory.stores.factory import open_backends, open_checkpointer, sessions_db
from memory.stores.retention import DEFAULT_KEEP, RetentionSaver, with_retention

BACKENDS = ["memory", "sqlite", "postgres", "redis"]
#: memory-agent as shipped; without retention; with `durability="exit"`; stock LangGraph.
VARIANTS = ["agent", "agent-keepall", "agent-exit", "stock"]
_WINDOW = 10
#: Without retention storage grows by ~50 KB a turn; this many turns show the slope.
_KEEPALL_TURNS = 2000
_READ_REPEATS = 15


@dataclass
class Series:
    """What one variant did on one backend."""

    backend: str
    variant: str
    planned: int
    latency_ms: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    payload: list[int] = field(default_factory=list)
    storage: dict[int, int] = field(default_factory=dict)
    unpersisted_ms: dict[int, list[float]] = field(default_factory=dict)
    reads_ms: dict[int, dict[str, float]] = field(default_factory=dict)
    stopped: str = ""

    @property
    def done(self) -> int:
        """Turns completed."""
        return len(self.latency_ms)

    def at(self, turn: int) -> float | None:
        """Median latency of the `_WINDOW` turns ending at `turn`, or None if not reached."""
        if turn > self.done:
            return None
        return statistics.median(self.latency_ms[max(0, turn - _WINDOW) : turn])


def _points(turns: int) -> list[int]:
    """The turns the table reports: 10, the middle decade and the last."""
    middle = 1000 if turns >= 5000 else 100
    return sorted({p for p in (_WINDOW, middle, turns) if p <= turns})


def _storage_points(turns: int) -> list[int]:
    marks = [10, 30, 100, 300, 1000, 3000, 10000, 30000]
    return sorted({m for m in marks if m <= turns} | {turns})


def _median_ms(fn: Callable[[], Any], repeats: int = _READ_REPEATS) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _content_bytes(records: Iterable[dict[str, Any]]) -> int:
    return sum(len(transcript.content_text(r.get("content")).encode()) for r in records)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _warm_up(graph: Any, unpersisted: Any, context: Context, key: str, turns: int = 5) -> None:
    """Run a few turns on a scratch thread, then delete it, so turn 1 is not a cold start."""
    scratch = f"warm-{key}"
    config = {"configurable": {"thread_id": scratch}}
    for turn in range(turns):
        graph.invoke({"messages": [HumanMessage(user_text(turn, 200))]}, config, context=context)
        unpersisted.invoke({"messages": [HumanMessage("warm up")]}, config, context=context)
    graph.checkpointer.delete_thread(scratch)
    sessions_db(graph.store).truncate(scratch)


def _warm_up_stock(graph: Any, unpersisted: Any, turns: int = 5) -> None:
    config = {"configurable": {"thread_id": "warm-stock"}}
    for turn in range(turns):
        graph.invoke({"messages": [HumanMessage(user_text(turn, 200))]}, config)
        unpersisted.invoke({"messages": [HumanMessage("warm up")]})
    graph.checkpointer.delete_thread("warm-stock")


def run_agent(
    kind: str,
    dbs: Databases,
    turns: int,
    size: int,
    *,
    keep: int | None,
    durability: str,
    label: str,
    budget_s: float,
) -> Series:
    """Drive memory-agent for `turns` turns on a fresh database of `kind`."""
    series = Series(kind, label, turns)
    settings = Settings(embeddings="none")
    url = dbs.url(kind, label)
    points = set(_points(turns))
    windows = {t for p in points for t in range(p - _WINDOW + 1, p + 1)}
    with open_backends(url, settings=settings) as backends:
        saver = backends.checkpointer
        if isinstance(saver, RetentionSaver):
            saver = saver.inner
        saver = with_retention(saver, keep)
        graph = build_graph(saver, backends.store)
        manager = SessionManager(graph)
        owner = Owner(tenant="bench", user=f"u{uuid.uuid4().hex[:8]}")
        thread_id = "t1"
        manager.create(owner, thread_id)
        key = owner.thread_key(thread_id)
        recorder = ModelInputs()
        config: dict[str, Any] = {**manager.run_config(owner, thread_id), "callbacks": [recorder]}
        context = manager.run_context(owner)
        # The baseline shares the agent's store, so both search and append to a store of the
        # same size: the difference between them is the checkpointer alone.
        unpersisted = build_unpersisted_agent(backends.store)
        base_key = f"base-{key}"
        base_from: int | None = None
        objects = [saver, backends.store]

        def size_now() -> int:
            return stored_bytes(kind, [backends.database_url, backends.store_url], objects)

        _warm_up(graph, unpersisted, context, key)
        empty = size_now()
        payload = 0
        started = time.monotonic()
        for turn in range(1, turns + 1):
            text = user_text(turn, size)
            if turn in windows:
                values = graph.get_state(config).values
                state = {**values, "messages": [*values.get("messages", []), HumanMessage(text)]}
                base_config = {"configurable": {"thread_id": base_key}}
                begin = time.perf_counter()
                unpersisted.invoke(state, base_config, context=context)
                elapsed = (time.perf_counter() - begin) * 1000
                if base_from is None:
                    base_from = values.get("transcript_len", 0)
                point = min(p for p in points if p >= turn)
                series.unpersisted_ms.setdefault(point, []).append(elapsed)
            before = graph.get_state(config).values.get("transcript_len", 0)
            begin = time.perf_counter()
            values = graph.invoke(
                {"messages": [HumanMessage(text)]},
                config,
                context=context,
                durability=durability,  # type: ignore[arg-type]
            )
            series.latency_ms.append((time.perf_counter() - begin) * 1000)
            series.tokens.append(max(recorder.take_tokens(), default=0))
            after = values.get("transcript_len", before)
            added, _ = backends.sessions.page(key, before, after - before)
            payload += _content_bytes(added)
            series.payload.append(payload)
            # Reads first: measuring storage vacuums Postgres, and its writes would slow them.
            if turn in points:
                total = after
                series.reads_ms[turn] = {
                    "page": _median_ms(
                        lambda total=total: manager.get_messages(
                            owner, thread_id, limit=20, offset=max(0, total - 20)
                        )
                    ),
                    "first_page": _median_ms(
                        lambda: manager.get_messages(owner, thread_id, limit=20, offset=0)
                    ),
                    "state": _median_ms(lambda: graph.get_state(config)),
                    "list": _median_ms(lambda: manager.list(owner)),
                }
            if turn in points and base_from is not None:
                # What the baseline appended is not the thread's: gone before storage is measured.
                backends.sessions.truncate(base_key, base_from)
                base_from = None
            if turn in _storage_points(turns):
                series.storage[turn] = size_now() - empty
            if time.monotonic() - started > budget_s:
                series.stopped = f"time budget of {budget_s:.0f}s reached"
                break
        _log(f"  {kind}/{label}: {series.done} turns in {time.monotonic() - started:.1f}s")
    return series


def run_stock(kind: str, dbs: Databases, turns: int, size: int, budget_s: float) -> Series:
    """Drive the stock graph on a stock saver until `turns` or the time budget."""
    series = Series(kind, "stock", turns)
    settings = Settings(embeddings="none")
    url = dbs.url(kind, "stock")
    points = set(_points(turns))
    windows = {t for p in points for t in range(p - _WINDOW + 1, p + 1)}
    with open_checkpointer(url, settings) as opened:
        saver = stock_saver(opened)
        graph = build_stock_graph(saver)
        unpersisted = build_stock_graph(None)
        recorder = ModelInputs()
        config: dict[str, Any] = {
            "configurable": {"thread_id": f"stock-{uuid.uuid4().hex[:8]}"},
            "callbacks": [recorder],
        }

        def size_now() -> int:
            return stored_bytes(kind, [url], [saver])

        _warm_up_stock(graph, unpersisted)
        empty = size_now()
        payload = 0
        count = 0
        started = time.monotonic()
        for turn in range(1, turns + 1):
            text = user_text(turn, size)
            if turn in windows:
                messages = graph.get_state(config).values.get("messages", [])
                begin = time.perf_counter()
                unpersisted.invoke({"messages": [*messages, HumanMessage(text)]})
                elapsed = (time.perf_counter() - begin) * 1000
                point = min(p for p in points if p >= turn)
                series.unpersisted_ms.setdefault(point, []).append(elapsed)
            begin = time.perf_counter()
            values = graph.invoke({"messages": [HumanMessage(text)]}, config)
            series.latency_ms.append((time.perf_counter() - begin) * 1000)
            series.tokens.append(max(recorder.take_tokens(), default=0))
            messages = values["messages"]
            payload += sum(
                len(transcript.content_text(m.content).encode()) for m in messages[count:]
            )
            count = len(messages)
            series.payload.append(payload)
            if turn in points:
                series.reads_ms[turn] = {"state": _median_ms(lambda: graph.get_state(config))}
            if turn in _storage_points(turns):
                series.storage[turn] = size_now() - empty
            if time.monotonic() - started > budget_s:
                series.stopped = f"stopped at turn {turn}: time budget of {budget_s:.0f}s"
                if turn not in series.storage:
                    series.storage[turn] = size_now() - empty
                break
        _log(f"  {kind}/stock: {series.done} turns in {time.monotonic() - started:.1f}s")
    return series


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write `bench/results/<name>.md` and `.png`."""
    parser = argparse.ArgumentParser(prog="python -m bench.turns", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a few hundred turns (CI smoke)")
    parser.add_argument("--turns", type=int, help="turns per thread (default 10000, quick 300)")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--variants", help=f"comma-separated from {','.join(VARIANTS)}")
    parser.add_argument("--payload", type=int, default=560, help="bytes per user message")
    parser.add_argument("--keep", type=int, default=DEFAULT_KEEP, help="checkpoints retained")
    parser.add_argument(
        "--budget", type=float, help="seconds per variant and backend (quick 12, full 900)"
    )
    parser.add_argument(
        "--stock-budget", type=float, help="seconds for stock per backend (quick 8, full 240)"
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--name", help="result file name (default quick or full)")
    args = parser.parse_args(argv)

    turns = args.turns or (300 if args.quick else 10000)
    budget = args.budget or (12.0 if args.quick else 900.0)
    stock_budget = args.stock_budget or (8.0 if args.quick else 240.0)
    default_variants = "agent,stock" if args.quick else ",".join(VARIANTS)
    variants = (args.variants or default_variants).split(",")
    backends = args.backends.split(",")
    for name in variants:
        if name not in VARIANTS:
            parser.error(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
    for name in backends:
        if name not in BACKENDS:
            parser.error(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")

    results: list[Series] = []
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, Databases(Path(tmp)) as dbs:
        for kind in backends:
            _log(f"{kind}:")
            for variant in variants:
                gc.collect()
                try:
                    if variant == "stock":
                        results.append(run_stock(kind, dbs, turns, args.payload, stock_budget))
                        continue
                    results.append(
                        run_agent(
                            kind,
                            dbs,
                            min(turns, _KEEPALL_TURNS) if variant == "agent-keepall" else turns,
                            args.payload,
                            keep=None if variant == "agent-keepall" else args.keep,
                            durability="exit" if variant == "agent-exit" else "async",
                            label=variant,
                            budget_s=budget,
                        )
                    )
                except Exception as exc:  # one broken backend must not lose the others' results
                    _log(f"  {kind}/{variant} failed: {type(exc).__name__}: {exc}")
                    results.append(
                        Series(kind, variant, turns, stopped=f"failed: {type(exc).__name__}: {exc}")
                    )
    name = args.name or ("quick" if args.quick else "full")
    table = write_report(
        results,
        _points(turns),
        args.out,
        name,
        settings={
            "turns": turns,
            "payload_bytes_per_user_message": args.payload,
            "keep": args.keep,
            "token_budget": Context().token_budget,
            "wall_seconds": round(time.monotonic() - began),
        },
    )
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
