"""The async SQLite path runs on the loop, and waits for another process's lock without
blocking it."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

from langchain_core.messages import HumanMessage

from agent import build_graph
from memory.settings import Settings
from memory.stores import aopen_backends
from memory.stores.sqlite_saver import InlineSqliteSaver

SETTINGS = Settings(embeddings="none")


def _hold_write_lock(path: Path, seconds: float, taken: threading.Event) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    taken.set()
    time.sleep(seconds)
    conn.execute("ROLLBACK")
    conn.close()


async def test_a_locked_database_is_waited_for_without_blocking_the_loop(tmp_path: Path) -> None:
    db = tmp_path / "agent.sqlite"
    async with aopen_backends(f"sqlite:///{db}", settings=SETTINGS) as backends:
        saver = backends.checkpointer
        assert isinstance(getattr(saver, "inner", saver), InlineSqliteSaver)
        graph = build_graph(backends.checkpointer, backends.store)
        config = {"configurable": {"thread_id": "locked"}}
        await graph.ainvoke({"messages": [HumanMessage("hello")]}, config)

        taken = threading.Event()
        holder = threading.Thread(target=_hold_write_lock, args=(db, 0.5, taken))
        holder.start()
        await asyncio.to_thread(taken.wait)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticking = asyncio.create_task(ticker())
        started = time.monotonic()
        await graph.ainvoke({"messages": [HumanMessage("my name is Sam")]}, config)
        waited = time.monotonic() - started
        ticking.cancel()
        holder.join()
        assert waited >= 0.3  # the turn's writes waited for the other connection's lock
        assert ticks >= 15  # and the loop kept running meanwhile
        state = await graph.aget_state(config)
        assert [m.type for m in state.values["messages"]][-4:] == ["human", "ai", "tool", "ai"]
