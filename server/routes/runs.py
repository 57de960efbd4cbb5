"""Runs: send messages to the agent on a thread, whole or as server-sent events."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from agent.namespaces import Owner
from memory.errors import MemoryAgentError, SessionEndedError
from memory.sessions import SessionManager
from memory.settings import Settings
from server.deps import (
    OwnerDep,
    RunsDep,
    SessionsDep,
    SettingsDep,
    ThreadId,
)
from server.limits import BackgroundRuns
from server.schemas import ChatRequest, RunOut, RunRequest, errors

logger = logging.getLogger("memory_agent.server")
router = APIRouter(tags=["runs"])

_RUN_ERRORS = errors(401, 409, 413, 422, 429)
_STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Server-sent events: `metadata` ({thread_id}), `token` ({text}) as the "
        "model writes, then `done` (the run's result) or `error` ({detail, status_code}).",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}


async def _run(
    owner: Owner,
    thread_id: str | None,
    body: RunRequest,
    settings: Settings,
    sessions: SessionManager,
    runs: BackgroundRuns,
) -> RunOut:
    messages = body.to_dicts(settings.max_message_chars, settings.max_messages_per_request)
    task = runs.start(sessions.arun(owner, thread_id, messages))
    # Shielded: a client that goes away does not cut the run in half.
    result = await asyncio.shield(task)
    return RunOut.model_validate(asdict(result))


def _event(name: str, data: Any) -> str:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False, default=str)}\n\n"


async def _stream(
    owner: Owner,
    thread_id: str | None,
    body: RunRequest,
    settings: Settings,
    sessions: SessionManager,
    runs: BackgroundRuns,
) -> StreamingResponse:
    messages = body.to_dicts(settings.max_message_chars, settings.max_messages_per_request)
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    claimed: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def work() -> None:
        # The run feeds a queue from its own task: when the client disconnects only the
        # reader below stops, and the run still finishes and records every message.
        try:
            async for kind, value in sessions.astream(owner, thread_id, messages):
                if kind == "thread":
                    claimed.set_result(value)
                elif kind == "token":
                    queue.put_nowait(_event("token", {"text": value}))
                else:
                    queue.put_nowait(_event("done", asdict(value)))
        except BaseException as exc:
            if not claimed.done():  # refused before it started: the route answers the error
                if isinstance(exc, Exception):
                    claimed.set_exception(exc)
                    return
                claimed.cancel()
            if isinstance(exc, MemoryAgentError):
                queue.put_nowait(
                    _event("error", {"detail": str(exc), "status_code": exc.status_code})
                )
            else:
                logger.error("run on thread %s failed", thread_id, exc_info=exc)
                queue.put_nowait(_event("error", {"detail": "the run failed", "status_code": 500}))
            if not isinstance(exc, Exception):
                raise
        finally:
            queue.put_nowait(None)

    runs.start(work())
    started = await claimed

    async def events() -> AsyncIterator[str]:
        yield _event("metadata", {"thread_id": started})
        while (event := await queue.get()) is not None:
            yield event

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.post("/threads/{thread_id}/runs", response_model=RunOut, responses=_RUN_ERRORS)
async def run_thread(
    thread_id: ThreadId,
    body: RunRequest,
    owner: OwnerDep,
    settings: SettingsDep,
    sessions: SessionsDep,
    runs: RunsDep,
) -> RunOut:
    """Send one message (or a list) and return the reply; creates the thread if new."""
    return await _run(owner, thread_id, body, settings, sessions, runs)


@router.post(
    "/threads/{thread_id}/runs/stream",
    response_class=StreamingResponse,
    responses={**_STREAM_DOC, **_RUN_ERRORS},
)
async def stream_thread(
    thread_id: ThreadId,
    body: RunRequest,
    owner: OwnerDep,
    settings: SettingsDep,
    sessions: SessionsDep,
    runs: RunsDep,
) -> StreamingResponse:
    """Like a run, as server-sent events: tokens as they come, then a final `done` event."""
    return await _stream(owner, thread_id, body, settings, sessions, runs)


@router.post("/chat", response_model=RunOut, responses=_RUN_ERRORS)
async def chat(
    body: ChatRequest,
    owner: OwnerDep,
    settings: SettingsDep,
    sessions: SessionsDep,
    runs: RunsDep,
) -> RunOut:
    """Send a message on `thread_id`, or on a new thread when it is omitted, or when that
    session has ended or expired (the reply then names both ids and says why)."""
    try:
        return await _run(owner, body.thread_id, body, settings, sessions, runs)
    except SessionEndedError:
        out = await _run(owner, None, body, settings, sessions, runs)
        return out.model_copy(
            update={
                "previous_thread_id": body.thread_id,
                "reason": "the session had ended or expired; a new one was started",
            }
        )
