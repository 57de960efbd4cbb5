"""The runs in flight in this process, and the request body limit."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class BackgroundRuns:
    """The runs this process has in flight, each in a task of its own.

    A run keeps going when its client disconnects, so its messages are recorded whole
    and the thread is released; shutdown waits for every run to finish. Who may run on a
    thread is the session service's business, not this registry's.
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def start(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run `work` in its own task."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)

        def _done(done: asyncio.Task[Any]) -> None:
            self._tasks.discard(done)
            if not done.cancelled():
                done.exception()  # retrieved here so an unawaited failure is not logged twice

        task.add_done_callback(_done)
        return task

    async def drain(self) -> None:
        """Wait for every started run to finish (shutdown, and tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


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
            await self._too_large(send, unread=True)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before sending everything: no one to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(send, unread=message.get("more_body", False))
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

    async def _too_large(self, send: Any, unread: bool) -> None:
        """Answer 413; with the body still coming (`unread`), close the connection after it."""
        body = json.dumps(
            {"detail": f"request body is larger than the limit of {self.max_bytes} bytes"}
        ).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        if unread:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
