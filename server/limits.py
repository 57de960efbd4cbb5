"""Per-user rate limiting and the one-active-run-per-thread guard."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import defaultdict, deque
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from memory.errors import ConflictError, RateLimitedError
from memory.namespaces import Owner

T = TypeVar("T")


class RateLimiter:
    """At most `limit` events per owner in any rolling `window` seconds.

    Args:
        limit: Events allowed per window.
        window: Window length in seconds.
        clock: Monotonic seconds; tests pass their own to move time forward.
    """

    def __init__(
        self, limit: int, window: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._events: dict[Owner, deque[float]] = defaultdict(deque)

    def hit(self, owner: Owner) -> None:
        """Count one event for `owner`.

        Raises:
            RateLimitedError: the owner is over the limit; `retry_after` says for how long.
        """
        now = self.clock()
        events = self._events[owner]
        while events and events[0] <= now - self.window:
            events.popleft()
        if len(events) >= self.limit:
            retry = max(1, math.ceil(events[0] + self.window - now))
            raise RateLimitedError(
                f"rate limit of {self.limit} runs per {self.window:g} s reached; "
                f"retry in {retry} s",
                retry_after=retry,
            )
        events.append(now)


class RunRegistry:
    """The runs in progress, one per thread, each in a task of its own.

    A run keeps going when its client disconnects, so its messages are recorded whole and
    the thread stays consistent; its slot frees when it finishes.
    """

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[Any]] = {}

    def is_active(self, thread_key: str) -> bool:
        """Whether a run is in progress on the thread."""
        return thread_key in self._tasks

    def claim(self, thread_key: str, thread_id: str) -> None:
        """Reserve the thread for a run that `start` will launch.

        Raises:
            ConflictError: another run holds the thread.
        """
        if thread_key in self._tasks:
            raise ConflictError(f"a run is already active on thread {thread_id!r}")
        self._tasks[thread_key] = _PENDING

    def release(self, thread_key: str) -> None:
        """Free a claim that was not started (the request failed before running)."""
        if self._tasks.get(thread_key) is _PENDING:
            del self._tasks[thread_key]

    def start(self, thread_key: str, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run `work` in its own task on a claimed thread; the claim ends with the task."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks[thread_key] = task

        def _done(done: asyncio.Task[Any]) -> None:
            if self._tasks.get(thread_key) is done:
                del self._tasks[thread_key]
            if not done.cancelled():
                done.exception()  # retrieved here so an unawaited failure is not logged twice

        task.add_done_callback(_done)
        return task

    async def drain(self) -> None:
        """Wait for every started run to finish (shutdown, and tests)."""
        while running := [t for t in self._tasks.values() if isinstance(t, asyncio.Task)]:
            await asyncio.gather(*running, return_exceptions=True)


class _Pending:
    """Placeholder of a claimed thread whose run has not started yet."""


_PENDING: Any = _Pending()


class BodyLimitMiddleware:
    """Answer 413 with a JSON `detail` to request bodies larger than `max_bytes`.

    The body is read before the app sees it (JSON bodies here are small) and replayed;
    later `receive` calls go to the server, so disconnects are still noticed.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Buffer the body within the limit, then call the app."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away before sending everything
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)

    async def _too_large(self, send: Any) -> None:
        body = json.dumps(
            {"detail": f"request body is larger than the limit of {self.max_bytes} bytes"}
        ).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
