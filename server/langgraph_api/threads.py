"""Threads and their state, as the LangGraph server API serves them."""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from typing import Any

from fastapi import APIRouter, Depends, Response, status

from agent.namespaces import Owner
from memory.errors import ConflictError, InvalidInputError, NotFoundError
from memory.sessions import SessionManager
from memory.settings import Settings
from server.deps import OwnerDep, PolicyDep, RunnerDep, SessionsDep, SettingsDep, ThreadId
from server.langgraph_api import guard, views
from server.langgraph_api.schemas import (
    CheckpointId,
    History,
    StateAt,
    StateUpdate,
    ThreadCount,
    ThreadCreate,
    ThreadPatch,
    ThreadPrune,
    ThreadSearch,
)
from server.langgraph_api.views import LangGraphJSON
from server.runner import Runner
from server.schemas import MAX_METADATA_CHARS, MAX_METADATA_KEYS, QueryFlag, errors, text_size
from server.sdk_auth import Filter, matches

router = APIRouter(tags=["langgraph: threads"], dependencies=[Depends(guard.thread_route)])


@router.post("/threads", response_class=LangGraphJSON, responses=errors(401, 409, 413, 422))
async def create_thread(
    owner: OwnerDep,
    policy: PolicyDep,
    sessions: SessionsDep,
    settings: SettingsDep,
    body: ThreadCreate | None = None,
) -> LangGraphJSON:
    """Create a thread (409 if `thread_id` exists, unless `if_exists` is `do_nothing`),
    then apply `supersteps` to it when this request created it."""
    body = body or ThreadCreate()
    asked: dict[str, Any] = {"thread_id": body.thread_id, "metadata": dict(body.metadata or {})}
    asked["if_exists"] = body.if_exists
    wanted = await policy.check("threads", "create", asked)
    metadata = asked.get("metadata")  # as the handler left it
    if body.if_exists == "do_nothing":
        record, created = await sessions.aget_or_create(owner, body.thread_id, metadata)
        if not created and not matches(views.thread_metadata(record), wanted):
            raise ConflictError(f"thread {record['thread_id']!r} already exists")
    else:
        record, created = await sessions.acreate(owner, body.thread_id, metadata), True
    if created and body.supersteps:
        thread_id = record["thread_id"]
        try:
            for step in body.supersteps:
                for update in step.updates:
                    await _apply(owner, thread_id, update, sessions, settings)
        except BaseException:
            # All or nothing: a history that cannot be applied leaves no thread behind.
            await asyncio.shield(sessions.adelete(owner, thread_id))
            raise
        record = await sessions.aget(owner, thread_id)
    return LangGraphJSON(views.thread(record, False))


async def _with_values(
    threads: list[dict[str, Any]], owner: Owner, sessions: SessionManager, recent: int
) -> list[dict[str, Any]]:
    """`threads` with their current values (what a chat UI titles its thread list from)."""

    async def values(thread_id: str) -> dict[str, Any] | None:
        try:
            return (await sessions.aview_state(owner, thread_id, recent=recent))[2]
        except NotFoundError:  # deleted meanwhile
            return None

    found = await asyncio.gather(*(values(t["thread_id"]) for t in threads))
    return [{**t, "values": v} for t, v in zip(threads, found, strict=True)]


async def _matching(
    owner: Owner,
    sessions: SessionManager,
    metadata: dict[str, Any] | None,
    ids: list[str] | None,
    wanted: Filter | None = None,
) -> list[dict[str, Any]]:
    """The records of the caller's threads whose metadata holds `metadata` and passes the
    auth handler's filter `wanted` (and whose id is in `ids`, when given)."""
    return [
        r
        for r in await sessions.alist_all(owner)
        if views.metadata_matches(views.thread_metadata(r), metadata)
        and matches(views.thread_metadata(r), wanted)
        and (ids is None or r["thread_id"] in ids)
    ]


async def _searched(policy: Any, body: ThreadSearch | ThreadCount) -> Filter | None:
    asked: dict[str, Any] = {"metadata": body.metadata, "values": None, "status": body.status}
    if isinstance(body, ThreadSearch):
        asked.update(limit=body.limit, offset=body.offset, thread_id=None)
    return await policy.check("threads", "search", asked)  # type: ignore[no-any-return]


@router.post("/threads/count", response_class=LangGraphJSON, responses=errors(401, 422))
async def count_threads(
    owner: OwnerDep, policy: PolicyDep, sessions: SessionsDep, body: ThreadCount | None = None
) -> LangGraphJSON:
    """How many of the caller's threads match `metadata` (and `status`)."""
    body = body or ThreadCount()
    wanted = await _searched(policy, body)
    records = await _matching(owner, sessions, body.metadata, None, wanted)
    if body.status is None:
        return LangGraphJSON(len(records))
    busy = await asyncio.gather(*(sessions.arunning(owner, r["thread_id"]) for r in records))
    statuses = [views.thread(r, b)["status"] for r, b in zip(records, busy, strict=True)]
    return LangGraphJSON(statuses.count(body.status))


@router.post("/threads/prune", response_class=LangGraphJSON, responses=errors(401, 409, 422))
async def prune_threads(
    body: ThreadPrune, owner: OwnerDep, policy: PolicyDep, sessions: SessionsDep, runner: RunnerDep
) -> LangGraphJSON:
    """Prune the caller's threads among `thread_ids` (others' and unknown ids are passed
    over): `delete` deletes each as `DELETE /threads/{id}` does; `keep_latest` keeps each
    thread, its transcript and its latest checkpoint, and deletes its older checkpoints
    (state history then starts there). Answers how many threads were pruned."""
    pruned = 0
    for thread_id in dict.fromkeys(body.thread_ids):
        try:
            await sessions.aget(owner, thread_id)
            await guard.thread(
                policy, owner, sessions, thread_id, "delete", {"thread_id": thread_id}
            )
        except NotFoundError:
            continue
        if body.strategy == "delete":
            await _delete(thread_id, owner, sessions, runner)
        else:
            await sessions.akeep_latest(owner, thread_id)
        pruned += 1
    return LangGraphJSON({"pruned_count": pruned})


@router.post("/threads/search", response_class=LangGraphJSON, responses=errors(401, 422))
async def search_threads(
    owner: OwnerDep,
    policy: PolicyDep,
    sessions: SessionsDep,
    settings: SettingsDep,
    body: ThreadSearch | None = None,
) -> LangGraphJSON:
    """The caller's threads matching `metadata` (and `ids`, `status`), sorted and paged, each
    with its current values (unless `select` leaves them out)."""
    body = body or ThreadSearch()
    wanted = await _searched(policy, body)
    records = await _matching(owner, sessions, body.metadata, body.ids, wanted)
    sort_by = body.sort_by or "updated_at"
    descending = (body.sort_order or "desc") == "desc"
    key = {"thread_id": "thread_id", "created_at": "created_at"}.get(sort_by, "last_active_at")
    if body.status is not None or sort_by == "status":
        busy = await asyncio.gather(*(sessions.arunning(owner, r["thread_id"]) for r in records))
        threads = [views.thread(r, b) for r, b in zip(records, busy, strict=True)]
        if body.status is not None:
            threads = [t for t in threads if t["status"] == body.status]
        if sort_by == "status":
            threads.sort(key=lambda t: t["status"], reverse=descending)
        page = threads[body.offset : body.offset + body.limit]
    else:
        records.sort(key=lambda r: r[key], reverse=descending)
        chosen = records[body.offset : body.offset + body.limit]
        busy = await asyncio.gather(*(sessions.arunning(owner, r["thread_id"]) for r in chosen))
        page = [views.thread(r, b) for r, b in zip(chosen, busy, strict=True)]
    if body.select is None or "values" in body.select:
        page = await _with_values(page, owner, sessions, settings.state_messages)
    if body.select is not None:
        page = [{k: t[k] for k in body.select} for t in page]
    return LangGraphJSON(page)


@router.get("/threads/{thread_id}", response_class=LangGraphJSON, responses=errors(401, 404, 422))
async def get_thread(
    thread_id: ThreadId, owner: OwnerDep, sessions: SessionsDep, settings: SettingsDep
) -> LangGraphJSON:
    """The thread with its current values."""
    record, snapshot, values = await sessions.aview_state(
        owner, thread_id, recent=settings.state_messages
    )
    running = await sessions.arunning(owner, thread_id)
    return LangGraphJSON(views.thread(record, running, values, snapshot))


@router.patch(
    "/threads/{thread_id}", response_class=LangGraphJSON, responses=errors(401, 404, 409, 422)
)
async def patch_thread(
    thread_id: ThreadId, body: ThreadPatch, owner: OwnerDep, sessions: SessionsDep
) -> LangGraphJSON:
    """Merge `metadata` into the thread's metadata."""
    record = await sessions.aget(owner, thread_id)
    merged = {**(record.get("metadata") or {}), **(body.metadata or {})}
    if len(merged) > MAX_METADATA_KEYS or len(views.dumps(merged)) > MAX_METADATA_CHARS:
        raise InvalidInputError(
            f"metadata would exceed {MAX_METADATA_KEYS} keys or {MAX_METADATA_CHARS} characters"
        )
    record = await sessions.aset_metadata(owner, thread_id, body.metadata or {})
    return LangGraphJSON(views.thread(record, False))


@router.delete(
    "/threads/{thread_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=errors(401, 404, 409, 422),
)
async def delete_thread(
    thread_id: ThreadId, owner: OwnerDep, sessions: SessionsDep, runner: RunnerDep
) -> Response:
    """Delete the thread: its active runs are cancelled first, then its checkpoints,
    transcript, session memories, runs and record go."""
    await sessions.aget(owner, thread_id)
    await _delete(thread_id, owner, sessions, runner)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/threads/{thread_id}/copy",
    response_class=LangGraphJSON,
    responses=errors(401, 404, 409, 422),
)
async def copy_thread(thread_id: ThreadId, owner: OwnerDep, sessions: SessionsDep) -> LangGraphJSON:
    """A new thread of the caller with the thread's metadata, state and state history,
    whole transcript and session memories (409 while a run is active on it)."""
    record = await sessions.acopy(owner, thread_id)
    return LangGraphJSON(views.thread(record, False))


async def _delete(thread_id: str, owner: Owner, sessions: SessionManager, runner: Runner) -> None:
    await runner.cancel(sessions, owner, thread_id, None, "interrupt", wait=True)
    await sessions.adelete(owner, thread_id)
    await sessions.db.runs.delete_thread(owner.thread_key(thread_id))


async def _state(
    thread_id: str, checkpoint_id: str | None, owner: Any, sessions: Any, recent: int
) -> LangGraphJSON:
    _, snapshot, values = await sessions.aview_state(owner, thread_id, checkpoint_id, recent)
    return LangGraphJSON(views.state(thread_id, snapshot, values))


@router.get(
    "/threads/{thread_id}/state", response_class=LangGraphJSON, responses=errors(401, 404, 422)
)
async def get_state(
    thread_id: ThreadId,
    owner: OwnerDep,
    sessions: SessionsDep,
    settings: SettingsDep,
    subgraphs: QueryFlag = False,
) -> LangGraphJSON:
    """The latest state: the recent transcript and the summary."""
    return await _state(thread_id, None, owner, sessions, settings.state_messages)


@router.post(
    "/threads/{thread_id}/state/checkpoint",
    response_class=LangGraphJSON,
    responses=errors(401, 404, 422),
)
async def get_state_at(
    thread_id: ThreadId,
    body: StateAt,
    owner: OwnerDep,
    sessions: SessionsDep,
    settings: SettingsDep,
) -> LangGraphJSON:
    """The state at a checkpoint (the latest when `checkpoint_id` is null)."""
    return await _state(
        thread_id, body.checkpoint.checkpoint_id, owner, sessions, settings.state_messages
    )


@router.get(
    "/threads/{thread_id}/state/{checkpoint_id}",
    response_class=LangGraphJSON,
    responses=errors(401, 404, 422),
)
async def get_state_by_id(
    thread_id: ThreadId,
    checkpoint_id: CheckpointId,
    owner: OwnerDep,
    sessions: SessionsDep,
    settings: SettingsDep,
) -> LangGraphJSON:
    """The state at a checkpoint."""
    return await _state(thread_id, checkpoint_id, owner, sessions, settings.state_messages)


@router.post(
    "/threads/{thread_id}/state",
    response_class=LangGraphJSON,
    responses=errors(401, 404, 409, 413, 422),
)
async def update_state(
    thread_id: ThreadId,
    body: StateUpdate,
    owner: OwnerDep,
    sessions: SessionsDep,
    settings: SettingsDep,
) -> LangGraphJSON:
    """Add `messages` to the thread (recorded in its transcript) and/or replace its
    `summary`, as `as_node` wrote them; with no values, a checkpoint of no writes."""
    await _apply(owner, thread_id, body, sessions, settings)
    _, snapshot, _ = await sessions.aview_state(owner, thread_id, recent=0)
    return LangGraphJSON({"checkpoint": views.state(thread_id, snapshot, {})["checkpoint"]})


async def _apply(
    owner: Owner, thread_id: str, body: StateUpdate, sessions: SessionManager, settings: Settings
) -> None:
    """One state update: its messages recorded, its summary set, as its node wrote them."""
    values = body.values or {}
    as_node = body.as_node or "call_model"
    if as_node not in sessions.graph.nodes:
        known = ", ".join(sorted(sessions.graph.nodes))
        raise InvalidInputError(f"as_node {as_node!r} is not a node of the graph ({known})")
    if not values:
        await sessions.aupdate_summary(owner, thread_id, None, as_node=as_node)
    if "messages" in values:
        messages = values["messages"]
        messages = [messages] if isinstance(messages, dict) else messages
        if not isinstance(messages, list) or not messages:
            raise InvalidInputError("values.messages must be a non-empty list of messages")
        if len(messages) > settings.max_messages_per_request:
            raise InvalidInputError(
                f"values.messages holds {len(messages)} messages; "
                f"the limit is {settings.max_messages_per_request}"
            )
        for i, message in enumerate(messages):
            content = message.get("content", "") if isinstance(message, dict) else ""
            if text_size(content) > settings.max_message_chars:
                raise InvalidInputError(
                    f"values.messages[{i}].content is longer than "
                    f"{settings.max_message_chars} characters"
                )
        await sessions.aadd_messages(owner, thread_id, messages, as_node=as_node)
    if "summary" in values:
        if len(values["summary"]) > settings.max_message_chars:
            raise InvalidInputError(
                f"values.summary is longer than {settings.max_message_chars} characters"
            )
        await sessions.aupdate_summary(owner, thread_id, values["summary"], as_node=as_node)


@router.post(
    "/threads/{thread_id}/history", response_class=LangGraphJSON, responses=errors(401, 404, 422)
)
async def get_history(
    thread_id: ThreadId,
    owner: OwnerDep,
    sessions: SessionsDep,
    settings: SettingsDep,
    body: History | None = None,
) -> LangGraphJSON:
    """The retained checkpoints, newest first, each with the client's view of its values."""
    body = body or History()
    before = body.before_id
    started = before is None
    snapshots = []
    # Collected first: the values are read after the checkpointer's listing is closed.
    async with aclosing(sessions.ahistory(owner, thread_id)) as history:
        async for snapshot in history:
            checkpoint_id = (snapshot.config.get("configurable") or {}).get("checkpoint_id")
            if not started:
                started = checkpoint_id == before
                continue
            if views.metadata_matches(
                views.checkpoint_metadata(snapshot.metadata, thread_id), body.metadata
            ):
                snapshots.append(snapshot)
                if len(snapshots) >= body.limit:
                    break
    out = []
    for snapshot in snapshots:
        values = await sessions.aclient_values(
            owner, thread_id, snapshot.values or {}, settings.state_messages
        )
        out.append(views.state(thread_id, snapshot, values))
    return LangGraphJSON(out)
