"""Runs: streamed, awaited or in the background; their status, join, rejoin and cancel,
answered from the run records of the shared database by any server process."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Query, Response, status
from fastapi.responses import StreamingResponse

from agent.namespaces import Owner
from memory.errors import InvalidInputError, NotFoundError
from memory.sessions import SessionManager
from memory.settings import Settings
from memory.stores.rundb import Record
from server import sse
from server.deps import OwnerDep, PolicyDep, RunnerDep, SessionsDep, SettingsDep, ThreadId
from server.langgraph_api import guard, views
from server.langgraph_api.schemas import MAX_BATCH, RunCreate, RunCreateStateless, RunsCancel
from server.langgraph_api.views import LangGraphJSON
from server.runner import LiveRun, Runner
from server.schemas import QueryFlag, QueryInt, RunId, errors
from server.sdk_auth import OPEN, Policy

router = APIRouter(tags=["langgraph: runs"], dependencies=[Depends(guard.thread_route)])

_RUN_ERRORS = errors(401, 404, 409, 413, 422, 429)
_STREAM_DOC = sse.stream_doc(
    "Server-sent events, each with an `id`: `metadata` ({run_id, attempt}) first, then the "
    "stream modes asked for (`values`, `updates`, `messages-tuple` as `messages` events of "
    "[chunk, metadata], `messages` as `messages/metadata` then `messages/partial` or "
    "`messages/complete`, `custom`, `tasks`, `checkpoints`, `debug`, `events`; with `stream_subgraphs` "
    "a subgraph's as `mode|namespace`), `error` ({error, message}) on failure; "
    "`: heartbeat` comments."
)


def location(thread_id: str, run_id: str) -> str:
    """A run's URL, for `Content-Location`."""
    return f"{views.PREFIX}/threads/{thread_id}/runs/{run_id}"


def run_out(record: Record) -> dict[str, Any]:
    """A run record as a LangGraph `Run`."""
    kwargs = record.get("kwargs") or {}
    return {
        "run_id": record["run_id"],
        "thread_id": record["thread_id"],
        "assistant_id": record["assistant_id"],
        "created_at": record["created_at"],
        "updated_at": record["updated_at"],
        "status": record["status"],
        "metadata": record.get("metadata") or {},
        "kwargs": {
            "input": kwargs.get("input"),
            "context": kwargs.get("context") or {},
            "stream_mode": kwargs.get("stream_mode"),
            "stream_resumable": kwargs.get("stream_resumable", False),
            "on_disconnect": kwargs.get("on_disconnect", "continue"),
        },
        "multitask_strategy": record["multitask_strategy"],
    }


def final_body(record: Record) -> dict[str, Any]:
    """What `wait` and `join` answer: the final values, or `{"__error__": ...}`."""
    if record.get("error") is not None:
        return {"__error__": record["error"]}
    return record.get("result") or {}


def _checked(
    body: RunCreate, owner: Owner, sessions: SessionManager, settings: Settings
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The run's messages and context overrides, once everything that can be checked
    before it starts is: its assistant, its messages' bounds, its context, its nodes."""
    if not views.is_assistant(body.assistant_id):
        raise NotFoundError(f"assistant {body.assistant_id!r} not found")
    messages = body.messages(
        settings.max_message_chars,
        settings.max_messages_per_request,
        settings.max_attachment_bytes,
    )
    context = body.context.overrides() if body.context else {}
    sessions.graph_context(owner, context)  # a bad override is a 422 before anything starts
    for field in ("interrupt_before", "interrupt_after"):
        nodes = getattr(body, field)
        if isinstance(nodes, list) and (unknown := sorted(set(nodes) - set(sessions.graph.nodes))):
            raise InvalidInputError(f"{field} names nodes this graph does not have: {unknown}")
    return messages, context


async def _start(
    thread_id: str,
    body: RunCreate,
    owner: Owner,
    sessions: SessionManager,
    settings: Settings,
    runner: Runner,
    *,
    streamed: bool,
    policy: Policy = OPEN,
) -> tuple[Record, LiveRun | None]:
    messages, context = _checked(body, owner, sessions, settings)
    metadata = dict(body.metadata or {})
    if policy.active:
        asked: dict[str, Any] = {
            "thread_id": None if isinstance(body, RunCreateStateless) else thread_id,
            "assistant_id": body.assistant_id,
            "run_id": None,
            "status": "pending",
            "metadata": metadata,
            "prevent_insert_if_inflight": True,
            "multitask_strategy": body.multitask_strategy or "enqueue",
            "if_not_exists": body.if_not_exists,
            "after_seconds": body.after_seconds,
            "kwargs": {"input": body.input, "context": context, "stream_mode": body.modes},
        }
        await guard.thread(policy, owner, sessions, thread_id, "create_run", asked)
        metadata = asked.get("metadata") or {}  # as the handler left it
    if metadata and body.if_not_exists == "create":
        # A thread the run creates holds the run's metadata, as in LangGraph.
        await sessions.aget_or_create(owner, thread_id, metadata)
    checkpoint_id = body.from_checkpoint
    if checkpoint_id is not None:  # a checkpoint of another thread, or none: 404 now
        await sessions.aview_state(owner, thread_id, checkpoint_id, recent=0)
    elif body.if_not_exists == "reject":
        await sessions.aget(owner, thread_id)
    # Ids fixed now, so a run taken over after a crash resumes with the same messages.
    messages = [{**m, "id": m.get("id") or str(uuid.uuid4())} for m in messages]
    record, live = await runner.submit(
        sessions,
        owner,
        thread_id,
        kwargs={
            "input": {"messages": messages},
            "checkpoint_id": checkpoint_id,
            "config": body.config.graph_config() if body.config else {},
            "command": body.command.as_kwargs() if body.command else None,
            "interrupt_before": body.interrupt_before,
            "interrupt_after": body.interrupt_after,
            "context": context,
            "stream_mode": body.modes,
            "stream_subgraphs": body.stream_subgraphs,
            "stream_resumable": body.stream_resumable,
            "on_disconnect": body.on_disconnect,
            "recent": settings.state_messages,
            "on_completion": getattr(body, "on_completion", "keep"),
        },
        metadata=metadata,
        strategy=body.multitask_strategy or "enqueue",
        delay_seconds=body.after_seconds or 0.0,
        streamed=streamed,
    )
    if live is not None:
        await live.started  # a refused run (409, 429, 422) answers with its error here
    elif body.if_not_exists != "reject":
        # Queued or delayed: the thread exists from the run's creation, as in LangGraph (a
        # run that starts at once creates it as it claims it).
        await sessions.aget_or_create(owner, thread_id)
    return record, live


def _stream_response(events: AsyncIterator[str], thread_id: str, run_id: str) -> StreamingResponse:
    return sse.response(
        events,
        {
            "Content-Location": location(thread_id, run_id),
            # Relative to the API root, as the SDKs join it to their URL to reconnect.
            "Location": f"/threads/{thread_id}/runs/{run_id}/stream",
        },
    )


@router.post(
    "/threads/{thread_id}/runs/stream",
    response_class=StreamingResponse,
    responses={**_STREAM_DOC, **_RUN_ERRORS},
)
async def stream_run(
    thread_id: ThreadId,
    body: RunCreate,
    owner: OwnerDep,
    policy: PolicyDep,
    sessions: SessionsDep,
    settings: SettingsDep,
    runner: RunnerDep,
) -> StreamingResponse:
    """Run and stream its events (queued behind the thread's active run by default); the
    run continues if the client goes away (unless `on_disconnect` is `cancel`)."""
    record, live = await _start(
        thread_id, body, owner, sessions, settings, runner, streamed=True, policy=policy
    )
    events = sse.run_events(
        runner,
        sessions,
        owner,
        thread_id,
        record["run_id"],
        live=live,
        cancel_on_disconnect=body.on_disconnect == "cancel",
    )
    return _stream_response(events, thread_id, record["run_id"])


@router.post("/threads/{thread_id}/runs/wait", response_class=LangGraphJSON, responses=_RUN_ERRORS)
async def wait_run(
    thread_id: ThreadId,
    body: RunCreate,
    owner: OwnerDep,
    policy: PolicyDep,
    sessions: SessionsDep,
    settings: SettingsDep,
    runner: RunnerDep,
) -> LangGraphJSON:
    """Run and answer its final values (`{"__error__": ...}` if it failed once started)."""
    # The caller is there for the end, as a stream's is: the events are logged only when
    # the run is resumable.
    record, _ = await _start(
        thread_id, body, owner, sessions, settings, runner, streamed=True, policy=policy
    )
    run_id = record["run_id"]
    final = await runner.wait(sessions, owner, thread_id, run_id)
    return LangGraphJSON(
        final_body(final),
        headers={
            "Content-Location": location(thread_id, run_id),
            # Where the same answer is read again (relative to the API root, as langgraph-api).
            "Location": f"/threads/{thread_id}/runs/{run_id}/join",
        },
    )


@router.post("/threads/{thread_id}/runs", response_class=LangGraphJSON, responses=_RUN_ERRORS)
async def create_run(
    thread_id: ThreadId,
    body: RunCreate,
    owner: OwnerDep,
    policy: PolicyDep,
    sessions: SessionsDep,
    settings: SettingsDep,
    runner: RunnerDep,
) -> LangGraphJSON:
    """Start a run in the background and answer it (poll, join or cancel it by id)."""
    record, _ = await _start(
        thread_id, body, owner, sessions, settings, runner, streamed=False, policy=policy
    )
    return LangGraphJSON(
        run_out(record), headers={"Content-Location": location(thread_id, record["run_id"])}
    )


@router.get("/threads/{thread_id}/runs", response_class=LangGraphJSON, responses=errors(401, 404))
async def list_runs(
    thread_id: ThreadId,
    owner: OwnerDep,
    sessions: SessionsDep,
    limit: Annotated[QueryInt, Query(ge=1, le=1000)] = 10,
    offset: Annotated[QueryInt, Query(ge=0, le=1_000_000_000)] = 0,
    status: Annotated[
        str | None,
        Query(pattern="^(pending|running|success|error|interrupted|timeout)$"),
    ] = None,
) -> LangGraphJSON:
    """The thread's runs, newest first, from any process."""
    await sessions.aget(owner, thread_id)
    found = await sessions.db.runs.list(owner.thread_key(thread_id), limit, offset, status)
    return LangGraphJSON([run_out(r) for r in found])


@router.get(
    "/threads/{thread_id}/runs/{run_id}", response_class=LangGraphJSON, responses=errors(401, 404)
)
async def get_run(
    thread_id: ThreadId,
    run_id: RunId,
    owner: OwnerDep,
    sessions: SessionsDep,
    runner: RunnerDep,
) -> LangGraphJSON:
    """The run's status."""
    await sessions.aget(owner, thread_id)
    return LangGraphJSON(run_out(await runner.get(sessions, owner, thread_id, run_id)))


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
    runner: RunnerDep,
) -> LangGraphJSON:
    """Wait for the run and answer its final values."""
    await sessions.aget(owner, thread_id)
    await runner.get(sessions, owner, thread_id, run_id)
    final = await runner.wait(sessions, owner, thread_id, run_id)
    return LangGraphJSON(
        final_body(final), headers={"Content-Location": location(thread_id, run_id)}
    )


@router.get(
    "/threads/{thread_id}/runs/{run_id}/stream",
    response_class=StreamingResponse,
    responses={**_STREAM_DOC, **errors(401, 404, 422)},
)
async def join_stream(
    thread_id: ThreadId,
    run_id: RunId,
    owner: OwnerDep,
    sessions: SessionsDep,
    runner: RunnerDep,
    last_event_id: Annotated[str | None, Header(max_length=32)] = None,
    cancel_on_disconnect: QueryFlag = False,
    stream_mode: Annotated[list[str] | None, Query(max_length=8)] = None,
) -> StreamingResponse:
    """Rejoin the run's stream, from any process: the events after `Last-Event-ID` (all
    of them without it), then the rest as they come, until the run ends."""
    after = sse.last_event_id(last_event_id)
    await sessions.aget(owner, thread_id)
    await runner.get(sessions, owner, thread_id, run_id)
    events = sse.run_events(
        runner,
        sessions,
        owner,
        thread_id,
        run_id,
        after=after,
        cancel_on_disconnect=cancel_on_disconnect,
    )
    return _stream_response(events, thread_id, run_id)


@router.get(
    "/threads/{thread_id}/stream",
    response_class=StreamingResponse,
    responses={**_STREAM_DOC, **errors(401, 404, 422)},
)
async def thread_stream(
    thread_id: ThreadId,
    owner: OwnerDep,
    sessions: SessionsDep,
    runner: RunnerDep,
    last_event_id: Annotated[str | None, Header(max_length=32)] = None,
) -> StreamingResponse:
    """The thread's runs in turn, as they start, while the client stays (the active run's
    events after `Last-Event-ID` first)."""
    after = sse.last_event_id(last_event_id)
    await sessions.aget(owner, thread_id)
    key = owner.thread_key(thread_id)

    async def events() -> AsyncIterator[str]:
        seen: set[str] = set()
        first = True
        quiet_since = time.monotonic()
        while not runner.streams_closed.is_set():
            active = [r for r in await sessions.db.runs.active(key) if r["run_id"] not in seen]
            if not active:
                if time.monotonic() - quiet_since >= sse.HEARTBEAT_SECONDS:
                    yield sse.HEARTBEAT
                    quiet_since = time.monotonic()
                await asyncio.sleep(0.2)
                continue
            run_id = active[0]["run_id"]
            seen.add(run_id)
            try:
                async for event in runner.follow(
                    sessions,
                    owner,
                    thread_id,
                    run_id,
                    after if first else 0,
                    None,
                    sse.HEARTBEAT_SECONDS,
                ):
                    yield sse.event_text(event)
            except sse.StreamClosed:  # this process stops: the client reconnects elsewhere
                return
            first = False
            quiet_since = time.monotonic()

    return sse.response(events())


# -- runs without a thread: each on a thread made for it ---------------------------------


def _new_thread() -> str:
    return str(uuid.uuid4())


@router.post("/runs/stream", response_class=StreamingResponse, responses=_STREAM_DOC | _RUN_ERRORS)
async def stream_stateless_run(
    body: RunCreateStateless,
    owner: OwnerDep,
    policy: PolicyDep,
    sessions: SessionsDep,
    settings: SettingsDep,
    runner: RunnerDep,
) -> StreamingResponse:
    """Run on a new thread and stream its events; the thread is deleted once the run ends
    (`on_completion: "delete"`, the default) or kept (`keep`); `metadata` names the run."""
    return await stream_run(_new_thread(), body, owner, policy, sessions, settings, runner)


@router.post("/runs/wait", response_class=LangGraphJSON, responses=_RUN_ERRORS)
async def wait_stateless_run(
    body: RunCreateStateless,
    owner: OwnerDep,
    policy: PolicyDep,
    sessions: SessionsDep,
    settings: SettingsDep,
    runner: RunnerDep,
) -> LangGraphJSON:
    """Run on a new thread and answer its final values (the thread as `on_completion`)."""
    return await wait_run(_new_thread(), body, owner, policy, sessions, settings, runner)


@router.post("/runs", response_class=LangGraphJSON, responses=_RUN_ERRORS)
async def create_stateless_run(
    body: RunCreateStateless,
    owner: OwnerDep,
    policy: PolicyDep,
    sessions: SessionsDep,
    settings: SettingsDep,
    runner: RunnerDep,
) -> LangGraphJSON:
    """Start a run on a new thread in the background and answer it (its `thread_id` to poll
    or join it by; with `on_completion: "delete"` the thread and run go once it ends)."""
    return await create_run(_new_thread(), body, owner, policy, sessions, settings, runner)


@router.post("/runs/batch", response_class=LangGraphJSON, responses=_RUN_ERRORS)
async def create_stateless_runs(
    body: Annotated[list[RunCreateStateless], Body(min_length=1, max_length=MAX_BATCH)],
    owner: OwnerDep,
    policy: PolicyDep,
    sessions: SessionsDep,
    settings: SettingsDep,
    runner: RunnerDep,
) -> LangGraphJSON:
    """Start several runs in the background, each on a new thread, in order; answers them.
    Every run is checked before any starts; one refused as it starts (429) answers the
    error, the runs before it going on."""
    for run in body:
        _checked(run, owner, sessions, settings)
    started = []
    for run in body:
        record, _ = await _start(
            _new_thread(), run, owner, sessions, settings, runner, streamed=False, policy=policy
        )
        started.append(run_out(record))
    return LangGraphJSON(started)


_CANCEL_ACTION = Annotated[str, Query(pattern="^(interrupt|rollback)$")]


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
    runner: RunnerDep,
    wait: QueryFlag = False,
    action: _CANCEL_ACTION = "interrupt",
) -> Response:
    """Stop the run, from any process: `interrupt` keeps what it did so far in the thread,
    `rollback` removes it (and the run)."""
    await sessions.aget(owner, thread_id)
    await runner.get(sessions, owner, thread_id, run_id)
    await runner.cancel(sessions, owner, thread_id, [run_id], action, wait)  # type: ignore[arg-type]
    return Response(status_code=status.HTTP_202_ACCEPTED)


@router.post(
    "/runs/cancel",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={204: {"description": "Stopped: no body."}, **errors(401, 404, 422)},
)
async def cancel_runs(
    body: RunsCancel,
    owner: OwnerDep,
    sessions: SessionsDep,
    runner: RunnerDep,
    action: _CANCEL_ACTION = "interrupt",
) -> Response:
    """Stop several runs of a thread: those named, or its active ones."""
    assert body.thread_id is not None
    await sessions.aget(owner, body.thread_id)
    await runner.cancel(sessions, owner, body.thread_id, body.run_ids, action)  # type: ignore[arg-type]
    return Response(status_code=status.HTTP_204_NO_CONTENT)
