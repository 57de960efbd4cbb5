"""LangGraph's SQLite saver with async methods that run on the event loop itself.

LangGraph's `AsyncSqliteSaver` sends every statement through aiosqlite's worker thread: a
checkpoint read or write is a fraction of a millisecond of SQLite work, but each statement
costs two thread hand-overs and a wake-up of the loop, and a turn makes several. Measured
here, a turn of the agent through `ainvoke` cost 14.9 ms on that saver against 7.9 ms
through `invoke` on the sync one. This saver runs the sync saver's statements directly on
the loop instead.

It never blocks the loop waiting for another process: the connection's busy timeout is
zero, and a statement refused because another process holds the write lock is retried
after an `asyncio.sleep` (sync callers sleep in their thread). Reads in WAL mode are never
refused, and every write of the saver is a single upsert that is safe to repeat.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)
from langgraph.checkpoint.sqlite import SqliteSaver

from memory.errors import UnavailableError

T = TypeVar("T")

#: Seconds a statement keeps being retried while another process holds the write lock.
LOCK_TIMEOUT_SECONDS = 10.0


class SqliteLockTimeoutError(UnavailableError, sqlite3.OperationalError):
    """Another process held the SQLite write lock for longer than the timeout."""


def _operational_errors() -> tuple[type[Exception], ...]:
    """`OperationalError` of each SQLite module in use: the store's connections come from
    pysqlite3 where this Python's sqlite3 cannot load extensions, and its errors are not
    `sqlite3` errors."""
    try:
        import pysqlite3.dbapi2 as pysqlite3  # type: ignore[import-not-found]
    except ImportError:
        return (sqlite3.OperationalError,)
    return (sqlite3.OperationalError, pysqlite3.OperationalError)


#: What a SQLite statement refused for a lock raises, whichever module ran it.
OPERATIONAL_ERRORS = _operational_errors()


def is_locked(exc: BaseException) -> bool:
    """Whether `exc` is SQLite refusing a statement because another connection holds a lock."""
    return isinstance(exc, OPERATIONAL_ERRORS) and "locked" in str(exc).lower()


_locked = is_locked


def _timeout() -> SqliteLockTimeoutError:
    return SqliteLockTimeoutError(
        f"the SQLite database stayed locked by another process for over {LOCK_TIMEOUT_SECONDS:g}s; retry shortly"
    )


def retry_sync(call: Callable[[], T]) -> T:
    """Run `call`, retrying while the database is locked by another process."""
    deadline = time.monotonic() + LOCK_TIMEOUT_SECONDS
    delay = 0.0005
    while True:
        try:
            return call()
        except OPERATIONAL_ERRORS as exc:
            if not _locked(exc):
                raise
            if time.monotonic() > deadline:
                raise _timeout() from exc
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


async def retry_async(call: Callable[[], T]) -> T:
    """Run `call` on the loop, waiting with `asyncio.sleep` while the database is locked."""
    deadline = time.monotonic() + LOCK_TIMEOUT_SECONDS
    delay = 0.0005
    while True:
        try:
            return call()
        except OPERATIONAL_ERRORS as exc:
            if not _locked(exc):
                raise
            if time.monotonic() > deadline:
                raise _timeout() from exc
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)


class InlineSqliteSaver(SqliteSaver):
    """`SqliteSaver` whose sync and async methods both run in the caller's thread.

    Args:
        conn: A connection in autocommit mode; its busy timeout is set to zero here.
    """

    #: Retention prunes this saver with its sync statements, on the async path too.
    inline_async = True

    def __init__(self, conn: sqlite3.Connection, **kwargs: Any) -> None:
        super().__init__(conn, **kwargs)
        conn.execute("PRAGMA busy_timeout=0")

    # -- sync ------------------------------------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint `config` names, or the thread's latest."""
        return retry_sync(lambda: super(InlineSqliteSaver, self).get_tuple(config))

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """The checkpoints that match, newest first."""
        found = retry_sync(
            lambda: [
                *super(InlineSqliteSaver, self).list(
                    config, filter=filter, before=before, limit=limit
                )
            ]
        )
        yield from found

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store a checkpoint."""
        return retry_sync(
            lambda: super(InlineSqliteSaver, self).put(config, checkpoint, metadata, new_versions)
        )

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store a task's pending writes."""
        retry_sync(
            lambda: super(InlineSqliteSaver, self).put_writes(config, writes, task_id, task_path)
        )

    def delete_thread(self, thread_id: str) -> None:
        """Delete every checkpoint and write of a thread."""
        retry_sync(lambda: super(InlineSqliteSaver, self).delete_thread(thread_id))

    # -- async: the same statements on the loop ------------------------------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Async `get_tuple`."""
        return await retry_async(lambda: super(InlineSqliteSaver, self).get_tuple(config))

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """Async `list`."""
        found = await retry_async(
            lambda: [
                *super(InlineSqliteSaver, self).list(
                    config, filter=filter, before=before, limit=limit
                )
            ]
        )
        for item in found:
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Async `put`."""
        return await retry_async(
            lambda: super(InlineSqliteSaver, self).put(config, checkpoint, metadata, new_versions)
        )

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Async `put_writes`."""
        await retry_async(
            lambda: super(InlineSqliteSaver, self).put_writes(config, writes, task_id, task_path)
        )

    async def adelete_thread(self, thread_id: str) -> None:
        """Async `delete_thread`."""
        await retry_async(lambda: super(InlineSqliteSaver, self).delete_thread(thread_id))
