"""The one server-sent-events writer of the native and `/langgraph` run streams: event
text with ids, heartbeats, `Last-Event-ID` and the response headers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from fastapi.responses import StreamingResponse

from agent.namespaces import Owner
from memory.errors import InvalidInputError, UnavailableError
from memory.sessions import SessionManager
from memory.stores.rundb import Event

if TYPE_CHECKING:  # the runner imports the LangGraph views, whose package imports this
    from server.runner import LiveRun, Runner

#: Seconds of silence after which a stream sends a heartbeat comment.
HEARTBEAT_SECONDS = 5.0
#: A heartbeat: a comment line, which clients skip.
HEARTBEAT = ": heartbeat\n\n"
#: What every event stream is answered with, so proxies pass events on at once.
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class StreamClosed(UnavailableError):
    """This process is stopping: a caller following or waiting on a run here should
    rejoin it (another process, or the next start, continues the run)."""

    def __init__(self, run_id: str) -> None:
        super().__init__(
            f"this server process is stopping; rejoin run {run_id!r} (it goes on elsewhere)"
        )
        self.run_id = run_id


def event_text(event: Event | None) -> str:
    """One server-sent event with its id (None: a heartbeat comment)."""
    if event is None:
        return HEARTBEAT
    return f"event: {event.event}\ndata: {event.data}\nid: {event.id}\n\n"


def last_event_id(value: str | None) -> int:
    """The id a rejoining client sent in `Last-Event-ID` (0 without one).

    Raises:
        InvalidInputError: not an id this server could have sent.
    """
    if not value:
        return 0
    try:
        parsed = int(value)
    except ValueError:
        raise InvalidInputError("Last-Event-ID must be an event id this server sent") from None
    if parsed < 0:
        raise InvalidInputError("Last-Event-ID must be an event id this server sent")
    return parsed


async def run_events(
    runner: Runner,
    sessions: SessionManager,
    owner: Owner,
    thread_id: str,
    run_id: str,
    *,
    after: int = 0,
    live: LiveRun | None = None,
    cancel_on_disconnect: bool = False,
    farewell: Callable[[StreamClosed], str] | None = None,
) -> AsyncIterator[str]:
    """A run's events after id `after` as SSE text, with heartbeats, until it ends (from
    this process's live run, or the run's log when another process executes it).

    When this process stops first, the stream ends with `farewell`'s text (none: it just
    ends, and LangGraph's SDKs rejoin a run that is still active)."""
    finished = False
    try:
        try:
            async for event in runner.follow(
                sessions, owner, thread_id, run_id, after, live, HEARTBEAT_SECONDS
            ):
                yield event_text(event)
        except StreamClosed as closed:
            if farewell is not None:
                yield farewell(closed)
        finished = True
    finally:
        if not finished and cancel_on_disconnect:
            await runner.cancel(sessions, owner, thread_id, [run_id], "interrupt")


def response(
    events: AsyncIterator[str], headers: dict[str, str] | None = None
) -> StreamingResponse:
    """An event-stream response of `events`, with the stream headers and `headers`."""
    return StreamingResponse(
        events, media_type="text/event-stream", headers={**HEADERS, **(headers or {})}
    )


#: One event of a stream, as OpenAPI 3.2's `itemSchema` describes the items of a sequence
#: (`data` holds JSON text; `: heartbeat` comments are no events).
EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["event", "data", "id"],
    "properties": {
        "event": {"type": "string", "minLength": 1},
        "data": {"type": "string", "contentMediaType": "application/json"},
        "id": {"type": "string", "pattern": "^[0-9]+$"},
        "retry": {"type": "integer", "minimum": 0},
    },
}


def stream_doc(description: str) -> dict[int | str, dict[str, Any]]:
    """The documented 200 of an event-stream route: `text/event-stream` only, each event
    described by `itemSchema`."""
    return {
        200: {
            "description": description,
            "content": {
                "text/event-stream": {
                    "schema": {"type": "string", "description": "Server-sent events."},
                    "itemSchema": EVENT_SCHEMA,
                }
            },
        }
    }
