"""Stock LangGraph with and without `DeltaChannel` for the messages: latency, storage, reads.

Usage: `python -m bench.delta [--turns 400] [--backends memory,sqlite]`. The evaluation
behind the design notes in `bench/README.md`: a delta channel stores each checkpoint's new
messages instead of the whole list, but the working state it rebuilds is still unbounded.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

from langchain_core.messages import AnyMessage, HumanMessage
from langgraph.channels.delta import DeltaChannel
from langgraph.graph import START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.graph.state import CompiledStateGraph
from typing_extensions import TypedDict

from bench import stock
from bench.databases import Databases, stored_bytes
from bench.workload import user_text
from memory.settings import Settings
from memory.stores.factory import open_checkpointer


def _fold(state: list[AnyMessage] | None, writes: Sequence[Any]) -> list[AnyMessage]:
    return functools.reduce(add_messages, writes, state or [])  # type: ignore[arg-type]


class DeltaState(TypedDict):
    """The stock state with its messages in a delta channel (a snapshot every 50 updates)."""

    messages: Annotated[list[AnyMessage], DeltaChannel(_fold, snapshot_frequency=50)]


def build_delta_graph(checkpointer: Any) -> CompiledStateGraph:
    """The stock graph's shape and nodes over `DeltaState`."""
    graph = StateGraph(DeltaState)
    graph.add_node("summarize_conversation", lambda state: {})
    graph.add_node("call_model", lambda state: stock.call_model(state))
    graph.add_node("save_memories", lambda state: stock.save_memories(state))
    graph.add_conditional_edges(
        START, lambda state: stock.route_turn(state), ["summarize_conversation", "call_model"]
    )
    graph.add_edge("summarize_conversation", "call_model")
    graph.add_conditional_edges(
        "call_model", lambda state: stock.route_model_output(state), ["save_memories", "__end__"]
    )
    graph.add_conditional_edges(
        "save_memories",
        lambda state: stock.route_turn(state),
        ["summarize_conversation", "call_model"],
    )
    return graph.compile(checkpointer=checkpointer)


def main(argv: list[str] | None = None) -> int:
    """Print one line per backend and state layout."""
    parser = argparse.ArgumentParser(prog="python -m bench.delta", description=__doc__)
    parser.add_argument("--turns", type=int, default=400)
    parser.add_argument("--backends", default="memory,sqlite")
    args = parser.parse_args(argv)
    print("| backend | messages channel | ms/turn @10 | ms/turn last | stored | get_state ms |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="bench-delta-") as tmp, Databases(Path(tmp)) as dbs:
        for kind in args.backends.split(","):
            for name, build in (("stock", stock.build_stock_graph), ("delta", build_delta_graph)):
                url = dbs.url(kind, name)
                with open_checkpointer(url, Settings(embeddings="none")) as opened:
                    saver = stock.stock_saver(opened)
                    graph = build(saver)
                    config: Any = {"configurable": {"thread_id": "t"}}
                    times = []
                    for turn in range(args.turns):
                        message = HumanMessage(user_text(turn, 560))
                        begin = time.perf_counter()
                        graph.invoke({"messages": [message]}, config)
                        times.append((time.perf_counter() - begin) * 1000)
                    begin = time.perf_counter()
                    graph.get_state(config)
                    read = (time.perf_counter() - begin) * 1000
                    size = stored_bytes(kind, [url], [saver]) / 1e6
                    print(
                        f"| {kind} | {name} | {statistics.median(times[:10]):.1f} "
                        f"| {statistics.median(times[-10:]):.1f} | {size:.1f} MB | {read:.1f} |",
                        flush=True,
                    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
