"""Runs: streamed, awaited or in the background, with their status, join and cancel."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.responses import StreamingResponse

from memory.errors import InvalidInputError, NotFoundError
from memory.namespaces import Owner
from memory.sessions import SessionManager
from memory.settings import Settings
from server.deps import OwnerDep, RunsDep, SessionsDep, SettingsDep, ThreadId
from server.langgraph_api import views
from server.langgraph_api.registry import Run, RunRegistry
from server.langgraph_api.schemas import RunCreate, RunId
from server.langgraph_api.views import LangGraphJSON
from server.limits import BackgroundRuns
from server.schemas import errors

router = APIRouter(tags=["langgraph: runs"])

#: Seconds of silence after which a stream sends a heartbeat comment.
HEARTBEAT_SECONDS = 5.0
_RUN_ERRORS = errors(401, 404, 409, 413, 422, 429)
_STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Server-sent events: `metadata` ({run_id, attempt}) first, then the "
        "stream modes asked for (`values`, `updates`, `messages` as [chunk, metadata], "
        "`custom`), `error` ({error, message}) on failure; `: heartbeat` comments.",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}


async def get_registry(request: Request) -> RunRegistry:
    """The LangGraph runs of this process."""
    registry: RunRegistry = request.app.state.langgraph_runs
    return registry


RegistryDep = Annotated[RunRegistry, Depends(get_registry)]


async def _start(
    thread_id: str,
    body: RunCreate,
    owner: Owner,
    sessions: SessionManager,
    settings: Settings,
    background: BackgroundRuns,
    registry: RunRegistry,
    *,
    streaming: bool,
) -> Run:
    if not views.is_assistant(body.assistant_id):
        raise NotFoundError(f"assistant {body.assistant_id!r} not found")
    messages = body.messages(settings.max_message_chars, settings.max_messages_per_request)
    if body.if_not_exists == "reject":
        await sessions.aget(owner, thread_id)
    context = body.context.overrides() if body.context else {}
    sessions.graph_context(owner, context)  # a bad override is a 422 before anything starts
    run = registry.start(
        background,
        sessions,
        owner,
        thread_id,
        messages=messages,
        modes=body.modes,
        context=context,
        metadata=body.metadata or {},
        streaming=streaming,
        recent=settings.state_messages,
    )
    await run.claimed  # a refused run (409, 429, 422) answers with its error here
    return run


@router.post(
    "/threads/{thread_id}/runs/stream",
    response_class=StreamingResponse,
    responses={**_STREAM_DOC, **_RUN_ERRORS},
)
async def stream_run(
    thread_id: ThreadId,
    body: RunCreate,
    owner: OwnerDep,
    sessions: SessionsDep,
    settings: SettingsDep,
    background: RunsDep,
    registry: RegistryDep,
) -> StreamingResponse:
    """Run and stream its events; the run continues if the client goes away (unless
    `on_disconnect` is `cancel`)."""
    run = await _start(
        thread_id, body, owner, sessions, settings, background, registry, streaming=True
    )

    async def events() -> AsyncIterator[str]:
        finished = False
        try:
            while True:
                try:
                    event = await asyncio.wait_for(run.events.get(), HEARTBEAT_SECONDS)
                except TimeoutError:
                    yield views.HEARTBEAT
                    continue
                if event is None:
                    finished = True
                    return
                yield event
        finally:
            if not finished and body.on_disconnect == "cancel" and run.task is not None:
                run.task.cancel()

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
            "Content-Location": run.location,
        },
    )


async def _finished(run: Run) -> dict[str, Any]:
    if run.task is not None:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            # Shielded: a client that goes away does not cut the run in half.
            await asyncio.shield(run.task)
    return run.body()


@router.post("/threads/{thread_id}/runs/wait", response_class=LangGraphJSON, responses=_RUN_ERRORS)
async def wait_run(
    thread_id: ThreadId,
    body: RunCreate,
    owner: OwnerDep,
    sessions: SessionsDep,
    settings: SettingsDep,
    background: RunsDep,
    registry: RegistryDep,
) -> LangGraphJSON:
    """Run and answer its final values (`{"__error__": ...}` if it failed once started)."""
    run = await _start(
        thread_id, body, owner, sessions, settings, background, registry, streaming=False
    )
    return LangGraphJSON(await _finished(run), headers={"Content-Location": run.location})


@router.post("/threads/{thread_id}/runs", response_class=LangGraphJSON, responses=_RUN_ERRORS)
async def create_run(
    thread_id: ThreadId,
    body: RunCreate,
    owner: OwnerDep,
    sessions: SessionsDep,
    settings: SettingsDep,
    background: RunsDep,
    registry: RegistryDep,
) -> LangGraphJSON:
    """Start a run in the background and answer it (poll, join or cancel it by id)."""
    run = await _start(
        thread_id, body, owner, sessions, settings, background, registry, streaming=False
    )
    return LangGraphJSON(run.out(), headers={"Content-Location": run.location})


@router.get("/threads/{thread_id}/runs", response_class=LangGraphJSON, responses=errors(401, 404))
async def list_runs(
    thread_id: ThreadId,
    owner: OwnerDep,
    sessions: SessionsDep,
    registry: RegistryDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 10,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> LangGraphJSON:
    """The thread's runs this server process started, newest first."""
    await sessions.aget(owner, thread_id)
    runs = registry.of_thread(owner, thread_id)[offset : offset + limit]
    return LangGraphJSON([r.out() for r in runs])


async def _run(
    thread_id: str, run_id: str, owner: Owner, sessions: SessionManager, registry: RunRegistry
) -> Run:
    await sessions.aget(owner, thread_id)
    run = registry.get(owner, thread_id, run_id)
    if run is None:
        raise NotFoundError(f"run {run_id!r} not found on thread {thread_id!r} in this process")
    return run


@router.get(
    "/threads/{thread_id}/runs/{run_id}", response_class=LangGraphJSON, responses=errors(401, 404)
)
async def get_run(
    thread_id: ThreadId,
    run_id: RunId,
    owner: OwnerDep,
    sessions: SessionsDep,
    registry: RegistryDep,
) -> LangGraphJSON:
    """The run's status."""
    return LangGraphJSON((await _run(thread_id, run_id, owner, sessions, registry)).out())


@router.get(
    "/threads/{thread_id}/runs/{run_id}/join",
    response_class=LangGraphJSON,
    responses=errors(401, 404),
)
async def join_run(
    thread_id: ThreadId,
    run_id: RunId,
    owner: OwnerDep,
    sessions: SessionsDep,
    registry: RegistryDep,
) -> LangGraphJSON:
    """Wait for the run and answer its final values."""
    run = await _run(thread_id, run_id, owner, sessions, registry)
    return LangGraphJSON(await _finished(run), headers={"Content-Location": run.location})


@router.post(
    "/threads/{thread_id}/runs/{run_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    response_class=Response,
    responses={202: {"description": "Stopped, or it had finished: no body."}, **errors(401, 404)},
)
async def cancel_run(
    thread_id: ThreadId,
    run_id: RunId,
    owner: OwnerDep,
    sessions: SessionsDep,
    registry: RegistryDep,
    wait: bool = False,
    action: str = "interrupt",
) -> Response:
    """Stop the run: the messages it produced so far stay in the thread."""
    if action not in ("interrupt", "rollback"):
        raise InvalidInputError("action must be interrupt or rollback")
    if action == "rollback":
        raise InvalidInputError("action rollback is not supported; use interrupt")
    run = await _run(thread_id, run_id, owner, sessions, registry)
    if run.task is not None and not run.task.done():
        run.task.cancel()
        if wait:
            await _finished(run)
    return Response(status_code=status.HTTP_202_ACCEPTED)
