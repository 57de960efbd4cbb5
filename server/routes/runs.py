"""Runs: send messages to the agent on a thread, whole or as server-sent events, and rejoin
a stream. Each run is a record of the shared database, executed by the run core
(`server.runner`) as the `/langgraph` runs are, under the same multitask strategies."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header
from fastapi.responses import StreamingResponse

from agent.namespaces import Owner
from memory.errors import (
    ConflictError,
    InvalidInputError,
    MemoryAgentError,
    NotFoundError,
    RateLimitedError,
    SessionEndedError,
    UnavailableError,
)
from memory.sessions import SessionManager
from memory.settings import Settings
from memory.stores.rundb import Record
from server import sse
from server.deps import (
    OwnerDep,
    PolicyDep,
    RunnerDep,
    SessionsDep,
    SettingsDep,
    ThreadId,
)
from server.langgraph_api import guard
from server.runner import LiveRun, Runner, is_native, native_kwargs
from server.schemas import ChatRequest, RunId, RunOut, RunRequest, errors

router = APIRouter(tags=["runs"], dependencies=[Depends(guard.native_thread_route)])

_RUN_ERRORS = errors(401, 404, 409, 413, 422, 429)
_STREAM_DOC = sse.stream_doc(
    "Server-sent events, each with an `id`: `metadata` ({thread_id, run_id}), `token` "
    "({text}) as the model writes, then `done` (the run's result) or `error` ({detail, "
    "status_code}); `: heartbeat` comments. `Content-Location` names the stream to rejoin. "
    "When the server process stops first, the stream ends with `reconnect` ({detail, "
    "stream}): the run goes on elsewhere; rejoin `stream` with `Last-Event-ID`."
)


def stream_location(thread_id: str, run_id: str) -> str:
    """Where a native run's stream is rejoined."""
    return f"/threads/{thread_id}/runs/{run_id}/stream"


def _reconnect(thread_id: str) -> Callable[[sse.StreamClosed], str]:
    """The last event of a native stream whose server process stops before its run ends."""

    def farewell(closed: sse.StreamClosed) -> str:
        data = {"detail": str(closed), "stream": stream_location(thread_id, closed.run_id)}
        return f"event: reconnect\ndata: {json.dumps(data)}\n\n"

    return farewell


def recorded_error(error: dict[str, Any]) -> MemoryAgentError:
    """The error a native run recorded, as the exception the routes answer with."""
    detail = str(error.get("detail") or "the run failed")
    status_code = error.get("status_code")
    if error.get("error") == "SessionEndedError":
        return SessionEndedError(detail)
    if status_code == 429:
        return RateLimitedError(detail, retry_after=1)
    if status_code == 409:
        return ConflictError(detail)
    if status_code == 503:
        return UnavailableError(detail)
    failed = MemoryAgentError(detail)
    failed.status_code = status_code if isinstance(status_code, int) else 500
    return failed


async def _started(live: LiveRun) -> None:
    """Wait until the run holds its thread; raise why it was refused before that."""
    try:
        await asyncio.shield(live.started)
    except BaseException:
        task = asyncio.current_task()
        if not live.started.done() or (task is not None and task.cancelling()):
            raise  # the request itself was cancelled
        # Refused (409, 429, 422): answered once its record has ended, so the caller's
        # next run does not meet it as the thread's active run.
        await asyncio.shield(live.finished.wait())
        if live.started.cancelled():
            raise ConflictError("the run was stopped before it started") from None
        raise


async def _submit(
    owner: Owner,
    thread_id: str | None,
    body: RunRequest,
    settings: Settings,
    sessions: SessionManager,
    runner: Runner,
    *,
    streamed: bool,
) -> tuple[Record, LiveRun | None]:
    messages = body.to_dicts(settings.max_message_chars, settings.max_messages_per_request)
    if body.resume is not None and thread_id is None:
        raise InvalidInputError("resume answers a thread's pause: name the thread (thread_id)")
    record, live = await runner.submit(
        sessions,
        owner,
        thread_id or str(uuid.uuid4()),
        kwargs=native_kwargs(messages, resumable=streamed, resume=body.resume),
        metadata={},
        strategy=body.multitask_strategy or "reject",
        streamed=True,  # the caller is there for the end: a stream logs what it sends
    )
    if live is not None:
        await _started(live)
    return record, live


async def _run(
    owner: Owner,
    thread_id: str | None,
    body: RunRequest,
    settings: Settings,
    sessions: SessionManager,
    runner: Runner,
) -> RunOut:
    record, _ = await _submit(owner, thread_id, body, settings, sessions, runner, streamed=False)
    thread_id, run_id = record["thread_id"], record["run_id"]
    try:
        # The run is a task of its own: a client that goes away does not cut it in half.
        final = await runner.wait(sessions, owner, thread_id, run_id)
    except NotFoundError:  # deleted meanwhile: a newer run rolled it back
        raise ConflictError("the run was rolled back before it finished") from None
    if final.get("error") is not None:
        raise recorded_error(final["error"])
    if final["status"] != "success" or final.get("result") is None:
        stopped = "rolled back" if final.get("cancel") == "rollback" else "interrupted"
        raise ConflictError(f"the run was {stopped} before it finished")
    return RunOut.model_validate(final["result"])


async def _stream(
    owner: Owner,
    thread_id: str,
    body: RunRequest,
    settings: Settings,
    sessions: SessionManager,
    runner: Runner,
) -> StreamingResponse:
    record, live = await _submit(owner, thread_id, body, settings, sessions, runner, streamed=True)
    # The run feeds its own task: when the client disconnects only the reader stops, and
    # the run still finishes and records every message.
    events = sse.run_events(
        runner,
        sessions,
        owner,
        thread_id,
        record["run_id"],
        live=live,
        farewell=_reconnect(thread_id),
    )
    return sse.response(events, {"Content-Location": stream_location(thread_id, record["run_id"])})


@router.post("/threads/{thread_id}/runs", response_model=RunOut, responses=_RUN_ERRORS)
async def run_thread(
    thread_id: ThreadId,
    body: RunRequest,
    owner: OwnerDep,
    settings: SettingsDep,
    sessions: SessionsDep,
    runner: RunnerDep,
) -> RunOut:
    """Send one message (or a list) and return the reply; creates the thread if new."""
    return await _run(owner, thread_id, body, settings, sessions, runner)


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
    runner: RunnerDep,
) -> StreamingResponse:
    """Like a run, as server-sent events: tokens as they come, then a final `done` event."""
    return await _stream(owner, thread_id, body, settings, sessions, runner)


@router.get(
    "/threads/{thread_id}/runs/{run_id}/stream",
    response_class=StreamingResponse,
    responses={**_STREAM_DOC, **errors(401, 404, 422)},
)
async def rejoin_stream(
    thread_id: ThreadId,
    run_id: RunId,
    owner: OwnerDep,
    sessions: SessionsDep,
    runner: RunnerDep,
    last_event_id: Annotated[str | None, Header(max_length=32)] = None,
) -> StreamingResponse:
    """Rejoin a streamed run, from any process: its events after `Last-Event-ID` (all of
    them without it), then the rest as they come, until it ends."""
    after = sse.last_event_id(last_event_id)
    await sessions.aget(owner, thread_id)
    record = await runner.get(sessions, owner, thread_id, run_id)
    if not is_native(record):
        raise NotFoundError(f"run {run_id!r} not found on thread {thread_id!r}")
    events = sse.run_events(
        runner, sessions, owner, thread_id, run_id, after=after, farewell=_reconnect(thread_id)
    )
    return sse.response(events, {"Content-Location": stream_location(thread_id, run_id)})


@router.post("/chat", response_model=RunOut, responses=_RUN_ERRORS)
async def chat(
    body: ChatRequest,
    owner: OwnerDep,
    policy: PolicyDep,
    settings: SettingsDep,
    sessions: SessionsDep,
    runner: RunnerDep,
) -> RunOut:
    """Send a message on `thread_id`, or on a new thread when it is omitted, or when that
    session has ended or expired (the reply then names both ids and says why)."""

    async def asked(thread_id: str | None) -> str | None:
        if not policy.active:
            return thread_id
        thread_id = thread_id or str(uuid.uuid4())
        await guard.native_run(policy, owner, sessions, thread_id)
        return thread_id

    try:
        return await _run(owner, await asked(body.thread_id), body, settings, sessions, runner)
    except SessionEndedError:
        out = await _run(owner, await asked(None), body, settings, sessions, runner)
        return out.model_copy(
            update={
                "previous_thread_id": body.thread_id,
                "reason": "the session had ended or expired; a new one was started",
            }
        )
