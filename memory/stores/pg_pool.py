"""psycopg pools that take a restarted Postgres back as soon as it answers.

psycopg_pool backs off exponentially where a database is unreachable: a lost connection is
replaced by attempts 1, 2, 4, 8 ... s apart (for up to `reconnect_timeout`, 5 minutes),
and `getconn` sleeps 1, 2, 4 ... s between pooled connections that fail their check. After
a restart every pooled connection fails its check and every reconnection attempt has
failed for as long as the database was down, so service came back seconds after the
database did (9.8 s after an outage of 10 s). Here reconnection attempts are at most
`RECONNECT_MAX_DELAY_S` apart, and a connection that fails its check is replaced by the
next at once. An attempt on a database that is down costs one refused connection (or a
connection timeout on a hung one), so trying this often costs the database nothing.

Built on psycopg_pool 3.3's internals (`_add_connection`, `_getconn_with_check_loop`);
the version is pinned in pyproject.toml.
"""

from __future__ import annotations

from time import monotonic
from typing import Any

from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout
from psycopg_pool.base import AttemptWithBackoff

#: Longest wait between two attempts to replace a lost connection.
RECONNECT_MAX_DELAY_S = 0.25


class PromptAttempt(AttemptWithBackoff):
    """Reconnection attempts 0.05 s apart, doubling up to `RECONNECT_MAX_DELAY_S`."""

    INITIAL_DELAY = 0.05

    def update_delay(self, now: float) -> None:
        """The next delay, capped."""
        super().update_delay(now)
        self.delay = min(self.delay, RECONNECT_MAX_DELAY_S)


class PromptConnectionPool(ConnectionPool):
    """A `ConnectionPool` that reconnects promptly (see the module docstring)."""

    def _add_connection(self, attempt: Any, growing: bool = False) -> None:
        attempt = attempt or PromptAttempt(timeout=self.reconnect_timeout)
        super()._add_connection(attempt, growing)

    def _getconn_with_check_loop(self, deadline: float) -> Any:
        while True:
            conn = self._getconn_unchecked(deadline - monotonic())
            try:
                self._check_connection(conn)
            except Exception:  # broken: discarded and replaced; the next one is tried
                self._putconn(conn, from_getconn=True)
            except BaseException:
                self._putconn(conn, from_getconn=True)
                raise
            else:
                return conn
            if monotonic() >= deadline:
                raise PoolTimeout()


class AsyncPromptConnectionPool(AsyncConnectionPool):
    """Async `PromptConnectionPool`."""

    async def _add_connection(self, attempt: Any, growing: bool = False) -> None:
        attempt = attempt or PromptAttempt(timeout=self.reconnect_timeout)
        await super()._add_connection(attempt, growing)

    async def _getconn_with_check_loop(self, deadline: float) -> Any:
        while True:
            conn = await self._getconn_unchecked(deadline - monotonic())
            try:
                await self._check_connection(conn)
            except Exception:  # broken: discarded and replaced; the next one is tried
                await self._putconn(conn, from_getconn=True)
            except BaseException:
                await self._putconn(conn, from_getconn=True)
                raise
            else:
                return conn
            if monotonic() >= deadline:
                raise PoolTimeout()
