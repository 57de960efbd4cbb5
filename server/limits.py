"""The request body limit."""

from __future__ import annotations

import json
from typing import Any

#: `/langgraph` paths whose bodies may carry attachments (a run's input messages), by their
#: ending (the native API's messages are text).
RUN_PATHS = (b"/runs", b"/runs/stream", b"/runs/wait", b"/runs/batch")


class BodyLimitMiddleware:
    """Answer 413 with a JSON `detail` to request bodies larger than `max_bytes`, or than
    `run_bytes` for a `/langgraph` POST that starts runs (whose messages may carry images and
    files).

    The body is read before the app sees it (JSON bodies here are small) and replayed;
    later `receive` calls go to the server, so disconnects are still noticed.
    """

    def __init__(self, app: Any, max_bytes: int, run_bytes: int | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.run_bytes = max(max_bytes, run_bytes or 0)

    def _limit(self, scope: dict[str, Any]) -> int:
        path = scope.get("raw_path") or scope.get("path", "").encode()
        if (
            scope.get("method") == "POST"
            and path.startswith(b"/langgraph/")
            and path.rstrip(b"/").endswith(RUN_PATHS)
        ):
            return self.run_bytes
        return self.max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Buffer the body within the limit, then call the app."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope)
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await self._too_large(send, limit, unread=True)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before sending everything: no one to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._too_large(send, limit, unread=message.get("more_body", False))
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

    async def _too_large(self, send: Any, limit: int, unread: bool) -> None:
        """Answer 413; with the body still coming (`unread`), close the connection after it."""
        body = json.dumps(
            {"detail": f"request body is larger than the limit of {limit} bytes"}
        ).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        if unread:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
