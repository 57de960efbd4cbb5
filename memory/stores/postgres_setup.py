"""Postgres schema setup that several processes may run at once, serialised by an advisory lock.

LangGraph's Postgres saver and store create their tables and run their migrations in
`setup()`. Two processes starting together would both run `CREATE TABLE IF NOT EXISTS`
and insert the same migration versions, and one of them fails (a duplicate key in
`pg_type` or in the migrations table). Holding a session-level advisory lock on a
dedicated connection while setting up makes the second process wait, then find every
migration applied and do nothing.

The waiting side polls `pg_try_advisory_lock` instead of blocking in `pg_advisory_lock`:
the saver's migrations run `CREATE INDEX CONCURRENTLY`, which waits for every open
transaction to end, and a blocked `pg_advisory_lock` call is an open transaction waiting
for the lock holder, so the two would wait for each other forever.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import psycopg

__all__ = ["SETUP_LOCK_KEY", "SetupLockTimeoutError", "asetup_lock", "setup_lock"]

#: The advisory lock key of schema setup (any fixed bigint; this spells "magent01").
SETUP_LOCK_KEY = 0x6D6167656E743031
#: Seconds between attempts to take the lock.
POLL_SECONDS = 0.05
#: Seconds to wait for another process's setup before giving up.
TIMEOUT_SECONDS = 300.0
_TRY = "SELECT pg_try_advisory_lock(%s)"


class SetupLockTimeoutError(TimeoutError):
    """Another process held the setup lock for longer than the timeout."""


def _timeout_error(timeout: float) -> SetupLockTimeoutError:
    return SetupLockTimeoutError(
        f"another process has been setting up this database for over {timeout:.0f}s; "
        "check for a stuck memory-agent process (it holds the advisory lock "
        f"{SETUP_LOCK_KEY}) and restart"
    )


@contextmanager
def setup_lock(url: str, *, timeout: float = TIMEOUT_SECONDS) -> Iterator[None]:
    """Hold the setup advisory lock of the database at `url` for the duration of the block.

    The lock lives on its own connection, so it is released when the block ends, and
    also if this process dies while holding it.

    Raises:
        SetupLockTimeoutError: if the lock stays taken for `timeout` seconds.
    """
    with psycopg.connect(url, autocommit=True) as conn:
        deadline = time.monotonic() + timeout
        while True:
            row = conn.execute(_TRY, (SETUP_LOCK_KEY,)).fetchone()
            if row and row[0]:
                break
            if time.monotonic() > deadline:
                raise _timeout_error(timeout)
            time.sleep(POLL_SECONDS)
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (SETUP_LOCK_KEY,))


@asynccontextmanager
async def asetup_lock(url: str, *, timeout: float = TIMEOUT_SECONDS) -> AsyncIterator[None]:
    """Async `setup_lock`: hold the setup advisory lock of the database at `url`."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        deadline = time.monotonic() + timeout
        while True:
            row = await (await conn.execute(_TRY, (SETUP_LOCK_KEY,))).fetchone()
            if row and row[0]:
                break
            if time.monotonic() > deadline:
                raise _timeout_error(timeout)
            await asyncio.sleep(POLL_SECONDS)
        try:
            yield
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (SETUP_LOCK_KEY,))
