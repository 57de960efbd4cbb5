"""Appends without runs: the cost of one append of 50 messages as a thread grows, memory-agent
beside stock LangGraph (`update_state` on the stock graph, whose window only grows).

Usage: `python -m bench.appends [--messages 5000] [--backends sqlite,postgres]`. Prints, per
backend, the milliseconds of an append of 50 messages at the start and at the end, and the
messages in the working window at the end.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from langchain_core.messages import HumanMessage

from agent import Context, build_graph
from agent.namespaces import Owner
from bench import stock
from bench.databases import Databases
from bench.workload import user_text
from memory.sessions import SessionManager
from memory.settings import Settings
from memory.stores import open_backends
from memory.stores.factory import open_checkpointer

_BATCH = 50


def _timed(batches: int, append: Callable[[int], None]) -> tuple[float, float]:
    """Median ms of the first and of the last five appends of `batches`."""
    times = []
    for i in range(batches):
        start = time.perf_counter()
        append(i)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times[:5]), statistics.median(times[-5:])


def _texts(i: int) -> list[str]:
    return [user_text(i * _BATCH + k, 40) for k in range(_BATCH)]


def ours(url: str, batches: int) -> tuple[float, float, int]:
    settings = Settings(database_url=url, embeddings="none")
    owner = Owner("bench", "appends")
    with open_backends(url, settings=settings) as backends:
        graph = build_graph(backends.checkpointer, backends.store)
        sessions = SessionManager(graph, context=Context(), runs_per_minute=None)
        sessions.create(owner, "t")

        def append(i: int) -> None:
            sessions.add_messages(owner, "t", [{"role": "user", "content": t} for t in _texts(i)])

        first, last = _timed(batches, append)
        _record, snapshot = sessions.get_state(owner, "t")
        return first, last, len(snapshot.values["messages"])


def theirs(url: str, batches: int) -> tuple[float, float, int]:
    settings = Settings(database_url=url, embeddings="none")
    with open_checkpointer(url, settings) as saver:
        graph = stock.build_stock_graph(stock.stock_saver(saver))
        config: Any = {"configurable": {"thread_id": "t"}}

        def append(i: int) -> None:
            graph.update_state(config, {"messages": [HumanMessage(t) for t in _texts(i)]})

        first, last = _timed(batches, append)
        return first, last, len(graph.get_state(config).values["messages"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--backends", default="sqlite,postgres")
    args = parser.parse_args()
    batches = max(10, args.messages // _BATCH)
    print(f"append of {_BATCH} messages, {batches * _BATCH} messages in all")
    print(f"{'backend':<10} {'variant':<14} {'first ms':>9} {'last ms':>9} {'window':>7}")
    with tempfile.TemporaryDirectory() as tmp, Databases(Path(tmp)) as databases:
        for kind in args.backends.split(","):
            for label, variant in (("memory-agent", ours), ("stock", theirs)):
                first, last, window = variant(databases.url(kind, label), batches)
                print(f"{kind:<10} {label:<14} {first:9.1f} {last:9.1f} {window:7d}")


if __name__ == "__main__":
    main()
