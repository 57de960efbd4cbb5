"""Atomic read-modify-write of one store item on each backend (`update` / `aupdate`).

A change is a function of the item as it stands (None when absent) that returns the new
value, `None` to delete it, or raises to leave it untouched. Each backend runs it where no
other writer of the same item can come between the read and the write: the in-memory store
under a lock, SQLite in a `BEGIN IMMEDIATE` transaction, Postgres in a transaction holding
an advisory lock on the item and its row (`FOR UPDATE`), Redis (in `redis_store`) as a
compare-and-set loop whose write is a Lua script that refuses a document changed since it
was read.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from langgraph.store.base import GetOp, Item, PutOp, Result

from memory.stores.outages import bounded
from memory.stores.sqlite_saver import retry_async, retry_sync
from memory.stores.values import check_put

#: The new value of an item given the current one; None deletes it.
Change = Callable[[Item | None], dict[str, Any] | None]


def _item(result: Result) -> Item | None:
    return result if isinstance(result, Item) else None


class UpdateConflictError(RuntimeError):
    """An item kept changing under an update through every attempt of its bounded loop."""


def put_of(namespace: tuple[str, ...], key: str, value: dict[str, Any] | None) -> PutOp:
    op = PutOp(namespace, key, value)
    if value is not None:
        check_put(op)
    return op


class InMemoryUpdates:
    """`update` for the in-memory store: the change runs under the store's write lock."""

    _update_lock = threading.RLock()

    def batch(self, ops: Any) -> list[Result]:
        with self._update_lock:
            return super().batch(ops)  # type: ignore[misc, no-any-return]

    async def abatch(self, ops: Any) -> list[Result]:
        return InMemoryUpdates.batch(self, list(ops))

    def update(self, namespace: tuple[str, ...], key: str, change: Change) -> Item | None:
        """Apply `change` to the item atomically; the item after it (None if deleted)."""
        with self._update_lock:
            (current,) = self.batch([GetOp(namespace, key)])
            self.batch([put_of(namespace, key, change(_item(current)))])
            (after,) = self.batch([GetOp(namespace, key)])
            return _item(after)

    async def aupdate(self, namespace: tuple[str, ...], key: str, change: Change) -> Item | None:
        """Async `update`."""
        return self.update(namespace, key, change)


class SqliteUpdates:
    """`update` for the SQLite store: one `BEGIN IMMEDIATE` transaction, so another
    connection or process cannot write between the read and the write."""

    lock: Any
    conn: Any
    is_setup: bool

    def _update_once(self, namespace: tuple[str, ...], key: str, change: Change) -> Item | None:
        if not self.is_setup:
            self.setup()  # type: ignore[attr-defined]
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            cur = self.conn.cursor()
            try:
                found: list[Result] = [None]
                self._batch_get_ops([(0, GetOp(namespace, key))], found, cur)  # type: ignore[attr-defined]
                self._batch_put_ops([(0, put_of(namespace, key, change(_item(found[0]))))], cur)  # type: ignore[attr-defined]
                after: list[Result] = [None]
                self._batch_get_ops([(0, GetOp(namespace, key))], after, cur)  # type: ignore[attr-defined]
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            else:
                self.conn.execute("COMMIT")
            finally:
                cur.close()
        return _item(after[0])

    def update(self, namespace: tuple[str, ...], key: str, change: Change) -> Item | None:
        """Apply `change` to the item atomically; the item after it (None if deleted)."""
        return retry_sync(lambda: self._update_once(namespace, key, change))

    async def aupdate(self, namespace: tuple[str, ...], key: str, change: Change) -> Item | None:
        """Async `update`, waiting on the loop while another process holds the write lock."""
        return await retry_async(lambda: self._update_once(namespace, key, change))


_PG_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"
_PG_ROW = "SELECT 1 FROM store WHERE prefix = %s AND key = %s FOR UPDATE"


def _pg_params(namespace: tuple[str, ...], key: str) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    prefix = ".".join(namespace)
    return (f"memory-agent store {prefix}\x1f{key}".replace("\x00", ""),), (prefix, key)


class PostgresUpdates:
    """`update` for the Postgres store: a transaction that holds an advisory lock on the
    item (an absent item too) and its row, so concurrent updates of it run one at a time."""

    conn: Any

    def update(self, namespace: tuple[str, ...], key: str, change: Change) -> Item | None:
        """Apply `change` to the item atomically; the item after it (None if deleted)."""
        from psycopg.rows import dict_row

        lock, row = _pg_params(namespace, key)
        with (
            self.conn.connection() as conn,
            conn.transaction(),
            conn.cursor(binary=True, row_factory=dict_row) as cur,
        ):
            cur.execute(_PG_LOCK, lock)
            cur.execute(_PG_ROW, row)
            found: list[Result] = [None]
            self._batch_get_ops([(0, GetOp(namespace, key))], found, cur)  # type: ignore[attr-defined]
            self._batch_put_ops([(0, put_of(namespace, key, change(_item(found[0]))))], cur)  # type: ignore[attr-defined]
            after: list[Result] = [None]
            self._batch_get_ops([(0, GetOp(namespace, key))], after, cur)  # type: ignore[attr-defined]
        return _item(after[0])


class AsyncPostgresUpdates:
    """Async `PostgresUpdates` (`aupdate`), bounded by the store's breaker."""

    conn: Any
    breaker: Any

    async def _aupdate(self, namespace: tuple[str, ...], key: str, change: Change) -> Item | None:
        from psycopg.rows import dict_row

        lock, row = _pg_params(namespace, key)
        async with (
            self.conn.connection() as conn,
            conn.transaction(),
            conn.cursor(binary=True, row_factory=dict_row) as cur,
        ):
            await cur.execute(_PG_LOCK, lock)
            await cur.execute(_PG_ROW, row)
            found: list[Result] = [None]
            await self._batch_get_ops([(0, GetOp(namespace, key))], found, cur)  # type: ignore[attr-defined]
            op = put_of(namespace, key, change(_item(found[0])))
            await self._batch_put_ops([(0, op)], cur)  # type: ignore[attr-defined]
            after: list[Result] = [None]
            await self._batch_get_ops([(0, GetOp(namespace, key))], after, cur)  # type: ignore[attr-defined]
        return _item(after[0])

    async def aupdate(self, namespace: tuple[str, ...], key: str, change: Change) -> Item | None:
        """Apply `change` to the item atomically; the item after it (None if deleted)."""
        return await bounded(self.breaker, self._aupdate(namespace, key, change))

    def update(self, namespace: tuple[str, ...], key: str, change: Change) -> Item | None:
        raise TypeError("this store is async: use `await store.aupdate(...)`")


__all__ = [
    "AsyncPostgresUpdates",
    "Change",
    "InMemoryUpdates",
    "PostgresUpdates",
    "SqliteUpdates",
    "UpdateConflictError",
    "put_of",
]
