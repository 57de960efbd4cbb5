"""What a database outage looks like from here, and how long a call may wait for it.

A backend that is down, restarting or hung shows up as one of a few exception types (a
refused or timed-out connection, a pool with no connection to give, a call past its
deadline). The session service turns each into `UnavailableError` (HTTP 503 with
`Retry-After`), so an outage is never reported as a server fault and never holds a request
past the deadline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import cache
from typing import Any, TypeVar

from memory.errors import UnavailableError
from memory.metrics import BREAKER_OPEN
from memory.stores.sqlite_saver import OPERATIONAL_ERRORS, is_locked

logger = logging.getLogger("memory_agent.outages")

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
    if is_locked(exc):  # a lock no retry outlasted (or a statement outside the retries)
        error = UnavailableError("the SQLite database is locked by another writer; retry shortly")
        error.__cause__ = exc
        return error
    if isinstance(exc, OPERATIONAL_ERRORS):
        return None  # a SQLite error is a bug or a bad file, not an outage to wait out
    if not isinstance(exc, outage_errors()) and isinstance(exc.__cause__, outage_errors()):
        exc = exc.__cause__  # a library's wrapper (redisvl's RedisSearchError) of an outage
    if isinstance(exc, outage_errors()):
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        error = UnavailableError(f"the database is unreachable ({reason[:200]}); retry shortly")
        error.__cause__ = exc
        return error
    return None


class DeadlineError(TimeoutError):
    """A call left at its deadline (by `within`)."""


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
        # The caller went away (a client that disconnected): the call is abandoned, and a
        # driver that fails while it is cancelled must not leave its error unretrieved.
        task.cancel()
        observe(task)
        raise
    if not done:
        if on_late is None:
            task.cancel()
        # With `on_late` the call is left to finish: cancelling it could not take back a
        # request the database already has, only hide whether it was granted.
        task.add_done_callback(lambda late: _late(late, on_late))
        raise DeadlineError(f"no answer within {seconds:g} s")
    return task.result()


def observe(future: asyncio.Future[Any], what: str | None = None) -> asyncio.Future[Any]:
    """Retrieve `future`'s exception once it ends, so that a task or future nobody awaits any
    more is never reported as "exception was never retrieved"; with `what`, the exception is
    logged as an error of that (a task that was expected to handle its own)."""

    def retrieve(ended: asyncio.Future[Any]) -> None:
        if ended.cancelled():
            return
        exc = ended.exception()
        if exc is not None and what is not None:
            logger.error("%s failed", what, exc_info=exc)

    future.add_done_callback(retrieve)
    return future


class _Lost:
    """What `on_late` receives when the late call failed: whether the database did what
    was asked is unknown (a connection cut after the request was sent, say)."""

    def __repr__(self) -> str:
        return "LOST"


LOST: Any = _Lost()


def _late(task: asyncio.Future[Any], on_late: Callable[[Any], Any] | None) -> None:
    if task.cancelled():
        return
    if task.exception() is not None:  # expected of an abandoned call: not logged
        if on_late is not None:
            on_late(LOST)
        return
    if on_late is not None:
        on_late(task.result())


#: Longest wait between two attempts of `retry_in_background`.
RETRY_MAX_DELAY_SECONDS = 0.25

#: Tasks `retry_in_background` runs, kept referenced until they end.
_background: set[asyncio.Task[Any]] = set()


def retry_in_background(
    call: Callable[[], Awaitable[Any]], seconds: float, deadline: float | None
) -> asyncio.Task[Any]:
    """Call `call()` again and again (each within `deadline`), backing off up to
    `RETRY_MAX_DELAY_SECONDS`, until it succeeds or `seconds` have passed: for an
    idempotent write that must reach a database that is down for now, such as giving back
    a lease (once its lease has run out it would not matter any more). An attempt on a
    database that is down fails at once (refused, or by its breaker), so trying often costs
    little, and the write lands within that delay of the database answering again."""

    async def attempts() -> None:
        give_up = time.monotonic() + seconds
        delay = PROBE_INTERVAL_SECONDS
        while True:
            try:
                await within(call(), deadline)
                return
            except Exception as exc:
                if time.monotonic() + delay > give_up:
                    logger.warning("gave up retrying after %.0f s: %s", seconds, exc)
                    return
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_DELAY_SECONDS)

    task = asyncio.get_running_loop().create_task(attempts())
    _background.add(task)
    task.add_done_callback(_background.discard)
    return task


#: While a database is down, how often one call may try it (the others fail at once).
PROBE_INTERVAL_SECONDS = 0.2


class _Default:
    """The type of `_DEFAULT`: no value given."""


_DEFAULT = _Default()


class Breaker:
    """Fails calls at once while their database is known to be unreachable.

    Every call gets the deadline. A call that meets an outage opens the breaker; while it
    is open, calls fail at once with the outage's 503, except one probe at a time, at most
    every `PROBE_INTERVAL_SECONDS`, which goes through with the full deadline. The first
    call that succeeds closes it. So a run cut by an outage answers within one deadline, not one per call it still
    makes (its error writes, its cleanup), and a hung database holds no call past it.
    """

    def __init__(self, seconds: float | None, database: str = "") -> None:
        self.seconds = seconds
        self.down: UnavailableError | None = None
        self._failed_at = 0.0
        self._probing = False
        #: The `memory_agent_breaker_open` gauge of this database (None: not exported).
        self._gauge = BREAKER_OPEN.labels(database) if database else None
        if self._gauge is not None:
            self._gauge.set(0)

    def _set_down(self, down: UnavailableError | None) -> None:
        if (down is None) != (self.down is None) and self._gauge is not None:
            self._gauge.set(0 if down is None else 1)
        self.down = down

    async def call(
        self,
        call: Awaitable[T],
        on_late: Callable[[T], Any] | None = None,
        seconds: float | _Default | None = _DEFAULT,
    ) -> T:
        """Await `call` within the deadline (`seconds`, else the breaker's); fail it at once
        while the database is down. `on_late` as for `within`."""
        probe = False
        if self.down is not None:
            if self._probing or time.monotonic() - self._failed_at < PROBE_INTERVAL_SECONDS:
                _discard(call)
                raise UnavailableError(str(self.down)) from self.down.__cause__
            self._probing = probe = True
        try:
            deadline = self.seconds if isinstance(seconds, _Default) else seconds
            result = await within(call, deadline, on_late)
        except Exception as exc:
            # An outage opens the breaker; any other error is an answer, so the database is up.
            self._set_down(as_unavailable(exc))
            self._failed_at = time.monotonic()
            raise
        finally:
            if probe:
                self._probing = False
        if self.down is not None:
            self._set_down(None)
        return result


def _discard(call: Awaitable[Any]) -> None:
    """Close a coroutine that will not be awaited (no "never awaited" warning)."""
    close = getattr(call, "close", None)
    if close is not None:
        close()


_breakers: dict[tuple[str, float | None], Breaker] = {}


def breaker_for(url: str, seconds: float | None) -> Breaker:
    """The process's breaker for one database: every pool and client on it shares it.

    Its gauge is labelled with the URL's scheme only: a URL may carry a password."""
    key = (url, seconds)
    if key not in _breakers:
        _breakers[key] = Breaker(seconds, database=url.split(":", 1)[0])
    return _breakers[key]


async def bounded(
    breaker: Breaker | None, call: Awaitable[T], on_late: Callable[[T], Any] | None = None
) -> T:
    """`call` through `breaker` (`on_late` as for `within`), or as it is without one."""
    if breaker is None:
        return await call
    return await breaker.call(call, on_late)


async def guarded(
    breaker: Breaker | None, call: Awaitable[T], on_late: Callable[[T], Any] | None = None
) -> T:
    """`call` as `bounded` makes it, with an outage it meets raised as its 503
    (`UnavailableError`): for callers outside the session service, whose driver does this
    for its own calls. With `on_late`, a call the outage cut (its outcome unknown) also
    gets `on_late(LOST)`, as one left at its deadline gets its late answer."""
    try:
        return await bounded(breaker, call, on_late)
    except UnavailableError:
        raise  # failed at once by the breaker: never sent
    except Exception as exc:
        outage = as_unavailable(exc)
        if outage is None:
            raise
        if on_late is not None and not isinstance(exc, DeadlineError):
            on_late(LOST)
        raise outage from exc


class BoundedSaver:
    """Mixin for an async saver: each call goes through the database's `Breaker`.

    Put first in the bases of the saver class the factory opens and pass `breaker` to its
    constructor (None leaves calls as they are). Only the methods every saver has are
    wrapped, so capability checks on the optional ones still see the saver's own.
    """

    def __init__(self, *args: Any, breaker: Breaker | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.breaker = breaker

    async def aget_tuple(self, config: Any) -> Any:
        """The saver's `aget_tuple`, within the deadline."""
        return await bounded(self.breaker, super().aget_tuple(config))  # type: ignore[misc]

    async def aput(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        """The saver's `aput`, within the deadline."""
        return await bounded(
            self.breaker,
            super().aput(config, checkpoint, metadata, new_versions),  # type: ignore[misc]
        )

    async def aput_writes(
        self, config: Any, writes: Any, task_id: str, task_path: str = ""
    ) -> None:
        """The saver's `aput_writes`, within the deadline."""
        await bounded(
            self.breaker,
            super().aput_writes(config, writes, task_id, task_path),  # type: ignore[misc]
        )

    async def adelete_thread(self, thread_id: str) -> None:
        """The saver's `adelete_thread`, within the deadline."""
        await bounded(self.breaker, super().adelete_thread(thread_id))  # type: ignore[misc]

    async def alist(self, config: Any, **kwargs: Any) -> AsyncIterator[Any]:
        """The saver's `alist`, each step within the deadline."""
        listing = super().alist(config, **kwargs).__aiter__()  # type: ignore[misc]
        while (item := await bounded(self.breaker, _next(listing))) is not _END:
            yield item


_END = object()


async def _next(listing: AsyncIterator[Any]) -> Any:
    """The listing's next item, or `_END`."""
    return await anext(listing, _END)
