"""The Postgres checkpointers: langgraph-checkpoint-postgres's savers, with keyed blob reads.

Upstream loads a checkpoint's channel values by joining `jsonb_each_text(channel_versions)`
with `checkpoint_blobs`. Postgres estimates a hundred rows for the function, so it plans a
hash join that scans every blob row of the thread, live or dead, through the `thread_id`
index. Retention keeps the live rows few, but every pruned row stays in that scan until
vacuum reaches it; under steady writes, loading the latest checkpoint got slower the longer
the thread ran (0.65 ms at turn 10, 1.41 ms at turn 10,000 in the benchmark).

Here each channel's blob is fetched by its primary key (`thread_id, checkpoint_ns, channel,
version`) in a lateral subquery, which cannot be flattened into that join. Loading a
checkpoint then costs one index probe per channel, however many rows the thread has left
behind. Everything else, writes and tables included, is upstream's.
"""

from __future__ import annotations

from typing import Any

from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg_pool import AsyncConnectionPool

__all__ = ["SELECT_SQL", "AsyncKeyedPostgresSaver", "KeyedPostgresSaver"]

#: The columns upstream's `SELECT_SQL` returns, in its order; `get_tuple` and `list` append
#: their WHERE, ORDER BY and LIMIT clauses to it.
SELECT_SQL = """
select
    thread_id,
    checkpoint,
    checkpoint_ns,
    checkpoint_id,
    parent_checkpoint_id,
    metadata,
    (
        select array_agg(array[bl.channel::bytea, bl.type::bytea, bl.blob])
        from jsonb_each_text(checkpoint -> 'channel_versions') as cv(channel, version)
        cross join lateral (
            select b.channel, b.type, b.blob
            from checkpoint_blobs b
            where b.thread_id = checkpoints.thread_id
                and b.checkpoint_ns = checkpoints.checkpoint_ns
                and b.channel = cv.channel
                and b.version = cv.version
            limit 1
        ) as bl
    ) as channel_values,
    (
        select array_agg(array[cw.task_id::text::bytea, cw.channel::bytea, cw.type::bytea,
            cw.blob, convert_to(cw.task_path, 'UTF8'), cw.idx::text::bytea])
        from checkpoint_writes cw
        where cw.thread_id = checkpoints.thread_id
            and cw.checkpoint_ns = checkpoints.checkpoint_ns
            and cw.checkpoint_id = checkpoints.checkpoint_id
    ) as pending_writes
from checkpoints """


class KeyedPostgresSaver(PostgresSaver):
    """Sync Postgres checkpointer that reads each channel blob by its primary key."""

    SELECT_SQL = SELECT_SQL


class AsyncKeyedPostgresSaver(AsyncPostgresSaver):
    """Async Postgres checkpointer that reads each channel blob by its primary key.

    On a pool, calls run side by side: upstream holds one lock around every call, which
    one shared connection needs, but a pool hands each call a connection of its own, so
    the lock only queued a process's checkpoint reads and writes behind each other.
    """

    SELECT_SQL = SELECT_SQL

    def __init__(self, conn: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(conn, *args, **kwargs)
        if isinstance(conn, AsyncConnectionPool):
            self.lock = _NoLock()  # type: ignore[assignment]


class _NoLock:
    """An `asyncio.Lock` stand-in that never waits."""

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None
