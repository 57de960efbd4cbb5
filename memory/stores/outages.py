"""What a database outage looks like from here, and how long a call may wait for it.

A backend that is down, restarting or hung shows up as one of a few exception types (a
refused or timed-out connection, a pool with no connection to give, a call past its
deadline). The session service turns each into `UnavailableError` (HTTP 503 with
`Retry-After`), so an outage is never reported as a server fault and never holds a request
past the deadline.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from functools import cache
from typing import Any, TypeVar

from memory.errors import UnavailableError

T = TypeVar("T")

#: Seconds a call to a database may take before it counts as an outage.
DEFAULT_TIMEOUT_SECONDS = 5.0


@cache
def outage_errors() -> tuple[type[BaseException], ...]:
    """The exception types that mean "the database cannot be reached now"."""
    import psycopg
    import psycopg_pool
    import redis

    return (
        TimeoutError,
        ConnectionError,
        psycopg.OperationalError,
        psycopg_pool.PoolTimeout,
        psycopg_pool.PoolClosed,
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
        redis.exceptions.BusyLoadingError,
    )


def as_unavailable(exc: BaseException) -> UnavailableError | None:
    """The 503 an outage deserves, or None for any other error."""
    if isinstance(exc, UnavailableError):
        return exc
    if isinstance(exc, sqlite3.OperationalError) and "locked" not in str(exc).lower():
        return None  # a SQLite error is a bug or a bad file, not an outage to wait out
    if not isinstance(exc, outage_errors()) and isinstance(exc.__cause__, outage_errors()):
        exc = exc.__cause__  # a library's wrapper (redisvl's RedisSearchError) of an outage
    if isinstance(exc, outage_errors()):
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        error = UnavailableError(f"the database is unreachable ({reason[:200]}); retry shortly")
        error.__cause__ = exc
        return error
    return None


async def within(
    call: Awaitable[T], seconds: float | None, on_late: Callable[[T], Any] | None = None
) -> T:
    """Await `call`, raising `TimeoutError` once `seconds` have passed (None: no deadline).

    At the deadline the call is cancelled but not waited for: a driver cancelling a query
    on a hung server can itself wait for that server (psycopg tries for several seconds),
    and the request must not. With `on_late` the call is not cancelled but left to finish
    in the background, and its result goes to `on_late`, so what the database granted
    after the deadline (a lease) can be given back.
    """
    if seconds is None:
        return await call
    task = asyncio.ensure_future(call)
    try:
        done, _ = await asyncio.wait({task}, timeout=seconds)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not done:
        if on_late is None:
            task.cancel()
        # With `on_late` the call is left to finish: cancelling it could not take back a
        # request the database already has, only hide whether it was granted.
        task.add_done_callback(lambda late: _late(late, on_late))
        raise TimeoutError(f"no answer within {seconds:g} s")
    return task.result()


def _late(task: asyncio.Future[Any], on_late: Callable[[Any], Any] | None) -> None:
    if task.cancelled() or task.exception() is not None:
        return  # an abandoned call's failure is expected: not logged as unhandled
    if on_late is not None:
        on_late(task.result())
