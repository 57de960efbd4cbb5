"""Structural bounds of a long thread: working state, checkpoints per turn, full transcript.

Timings never appear here; the benchmark in `bench/` measures them. These tests pin the
properties that make the cost per turn constant, on every backend.
"""

from __future__ import annotations

import uuid
from typing import Any

from langchain_core.messages.utils import count_tokens_approximately

from agent import Context, build_graph
from agent.namespaces import Owner
from memory.sessions import SessionManager
from memory.settings import Settings
from memory.stores.factory import aopen_backends
from memory.stores.retention import RetentionSaver

BUDGET = 300
KEEP, EVERY = 6, 6
TURNS = 40
WARM_UP = 15


def _text(turn: int) -> str:
    return f"Turn {turn}: the weekly review covers latency, churn and the roadmap items " * 2


async def _checkpoints(saver: Any, config: dict[str, Any]) -> int:
    return len([c async for c in saver.alist({"configurable": config["configurable"]})])


async def test_long_thread_stays_bounded_and_transcript_complete(
    backend_url: str, owner: Owner
) -> None:
    settings = Settings(embeddings="none")
    async with aopen_backends(backend_url, settings=settings) as backends:
        inner = backends.checkpointer
        if isinstance(inner, RetentionSaver):
            inner = inner.inner
        saver = RetentionSaver(inner, keep=KEEP, every=EVERY)
        manager = SessionManager(
            build_graph(saver, backends.store), context=Context(token_budget=BUDGET)
        )
        thread_id = f"long-{uuid.uuid4().hex[:8]}"
        config = manager.run_config(owner, thread_id)
        window_sizes: list[int] = []
        retained: list[int] = []
        for turn in range(TURNS):
            result = await manager.arun(
                owner, thread_id, [{"role": "user", "content": _text(turn)}]
            )
            assert [r["role"] for r in result.messages] == ["user", "assistant"]
            state = (await manager.graph.aget_state(config)).values
            assert state["transcript_len"] == 2 * (turn + 1)  # every message recorded once
            if turn >= WARM_UP:
                window_sizes.append(count_tokens_approximately(state["messages"]))
                retained.append(await _checkpoints(inner, config))

        # Working state: the summariser keeps the window within the token budget.
        assert max(window_sizes) <= BUDGET
        assert state.get("summary")
        # Checkpoints: a bounded count however many turns pass (rows per turn constant).
        assert max(retained) <= KEEP + EVERY
        assert min(retained) >= KEEP

        # The transcript holds every message, in order, page by page.
        page, total = await manager.aget_messages(owner, thread_id, limit=7, offset=0)
        assert total == 2 * TURNS
        records: list[dict[str, Any]] = []
        for offset in range(0, total, 7):
            page, _ = await manager.aget_messages(owner, thread_id, limit=7, offset=offset)
            records.extend(page)
        assert [r["seq"] for r in records] == list(range(2 * TURNS))
        users = [r["content"] for r in records if r["role"] == "user"]
        assert users == [_text(t) for t in range(TURNS)]

        # The session list shows the thread with its full count.
        sessions, _ = await manager.alist(owner)
        assert [(s["thread_id"], s["message_count"]) for s in sessions] == [(thread_id, 2 * TURNS)]


async def test_a_plain_turn_writes_three_checkpoints_and_a_fold_four(
    backend_url: str, owner: Owner
) -> None:
    """Summarisation runs only when the window is over budget, so it costs no checkpoint
    on the turns that do not need it."""
    settings = Settings(embeddings="none")
    async with aopen_backends(backend_url, settings=settings) as backends:
        inner = backends.checkpointer
        if isinstance(inner, RetentionSaver):
            inner = inner.inner  # count every checkpoint, none pruned
        manager = SessionManager(
            build_graph(inner, backends.store), context=Context(token_budget=BUDGET)
        )
        thread_id = f"steps-{uuid.uuid4().hex[:8]}"
        config = manager.run_config(owner, thread_id)
        written: list[int] = []
        folded: list[bool] = []
        for turn in range(8):
            before = await _checkpoints(inner, config)
            summary = (await manager.graph.aget_state(config)).values.get("summary")
            await manager.arun(owner, thread_id, [{"role": "user", "content": _text(turn)}])
            written.append(await _checkpoints(inner, config) - before)
            after = (await manager.graph.aget_state(config)).values.get("summary")
            folded.append(after != summary)
        assert any(folded) and not all(folded)
        # Input, the input applied, the model's reply; plus one when the summariser runs.
        assert written == [4 if fold else 3 for fold in folded]


def _plan_nodes(plan: dict[str, Any]) -> Any:
    yield plan
    for child in plan.get("Plans", []):
        yield from _plan_nodes(child)


async def test_postgres_loads_each_channel_blob_by_its_key(
    fresh_postgres_url: str, owner: Owner
) -> None:
    """Loading a checkpoint probes the blob table's primary key once per channel.

    Upstream's query scans every blob row the thread has, dead ones included until vacuum,
    so the load got slower as a thread ran on under steady writes.
    """
    import psycopg

    from memory.stores.postgres_saver import SELECT_SQL

    async with aopen_backends(fresh_postgres_url, settings=Settings(embeddings="none")) as be:
        manager = SessionManager(build_graph(be.checkpointer, be.store))
        for turn in range(5):
            await manager.arun(owner, "keyed", [{"role": "user", "content": _text(turn)}])
        config = manager.run_config(owner, "keyed")
        snapshot = await manager.graph.aget_state(config)
        assert snapshot.values["transcript_len"] == 10  # the keyed read loads the messages
        thread = config["configurable"]["thread_id"]
    query = SELECT_SQL + " WHERE thread_id = %s AND checkpoint_ns = '' ORDER BY checkpoint_id DESC"
    async with await psycopg.AsyncConnection.connect(fresh_postgres_url) as conn:
        cursor = await conn.execute(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + query + " LIMIT 1", (thread,)
        )
        row = await cursor.fetchone()
    assert row is not None
    scans = [
        n for n in _plan_nodes(row[0][0]["Plan"]) if n.get("Relation Name") == "checkpoint_blobs"
    ]
    assert scans, "the plan reads no blobs"
    for scan in scans:
        assert scan.get("Index Name") == "checkpoint_blobs_pkey"
        assert "channel = cv.channel" in scan["Index Cond"]
        assert "version = cv.version" in scan["Index Cond"]
