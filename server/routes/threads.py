"""Threads: create, list, read, end and delete sessions; their transcript, state and history."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response, status
from langchain_core.messages import BaseMessage

from agent import transcript
from memory.errors import ConflictError
from server.deps import OwnerDep, PolicyDep, SessionsDep, SettingsDep, ThreadId
from server.langgraph_api import guard, views
from server.schemas import (
    Analytics,
    Appended,
    AppendMessages,
    CheckpointOut,
    CheckpointPage,
    CreateThread,
    MessageOut,
    MessagePage,
    PendingInterrupt,
    QueryInt,
    StateOut,
    SummaryIn,
    SummaryOut,
    ThreadDetail,
    ThreadOut,
    ThreadPage,
    UndoIn,
    UndoOut,
    errors,
)
from server.sdk_auth import matches

router = APIRouter(tags=["threads"], dependencies=[Depends(guard.native_thread_route)])

Limit = Annotated[QueryInt, Query(ge=1, le=100, description="Page size, 1-100.")]
MessageLimit = Annotated[QueryInt, Query(ge=1, le=500, description="Page size, 1-500.")]
Offset = Annotated[QueryInt, Query(ge=0, le=1_000_000_000, description="Items to skip.")]
MessageOffset = Annotated[
    QueryInt,
    Query(
        ge=-1_000_000_000,
        le=1_000_000_000,
        description="Messages to skip in the order asked for; negative: counts from the "
        "other end (`offset=-5` with `asc`: the last five, oldest first).",
    ),
]
_TOP_TOPICS = 5


def _detail(record: dict[str, Any], summary: str, running: bool) -> ThreadDetail:
    start = datetime.fromisoformat(record["created_at"])
    end = datetime.fromisoformat(record.get("ended_at") or record["last_active_at"])
    topics = sorted(record.get("topics", {}).items(), key=lambda kv: (-kv[1], kv[0]))
    return ThreadDetail.model_validate(
        {
            **record,
            "summary": summary,
            "running": running,
            "analytics": Analytics(
                duration_seconds=max(0.0, (end - start).total_seconds()),
                message_counts=dict(record.get("counts", {})),
                top_topics=[{"topic": t, "count": c} for t, c in topics[:_TOP_TOPICS]],
            ),
        }
    )


def _message(message: BaseMessage) -> MessageOut:
    record = transcript.message_to_record(message, 0)
    record.pop("seq")
    record.pop("created_at")
    return MessageOut.model_validate(record)


@router.post(
    "/threads",
    status_code=status.HTTP_201_CREATED,
    response_model=ThreadOut,
    responses={
        200: {"model": ThreadOut, "description": "It existed (`if_exists`: `do_nothing`)."},
        **errors(401, 409, 413, 422),
    },
)
async def create_thread(
    owner: OwnerDep,
    policy: PolicyDep,
    sessions: SessionsDep,
    response: Response,
    body: CreateThread | None = None,
) -> ThreadOut:
    """Create a session: a random UUID id unless `thread_id` is given (409 if it exists, or
    200 with the existing session when `if_exists` is `do_nothing`)."""
    body = body or CreateThread()
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
    if not created:
        response.status_code = status.HTTP_200_OK
    return ThreadOut.model_validate(record)


@router.get("/threads", response_model=ThreadPage, responses=errors(401, 422))
async def list_threads(
    owner: OwnerDep,
    policy: PolicyDep,
    sessions: SessionsDep,
    limit: Limit = 20,
    offset: Offset = 0,
    status: Annotated[
        Literal["active", "ended"] | None, Query(description="Only active or only ended sessions.")
    ] = None,
) -> ThreadPage:
    """The caller's sessions (optionally only `active` or `ended` ones), newest activity first."""
    wanted = await policy.check("threads", "search", {"metadata": None, "status": status})
    if wanted:  # only those the auth handler's filter lets the caller see
        shown = [
            r
            for r in await sessions.alist_all(owner)
            if matches(views.thread_metadata(r), wanted)
            and (status is None or r.get("status") == status)
        ]
        shown.sort(key=lambda r: r["last_active_at"], reverse=True)
        records, total = shown[offset : offset + limit], len(shown)
    else:
        records, total = await sessions.alist(owner, limit, offset, status)
    return ThreadPage(items=[ThreadOut.model_validate(r) for r in records], total=total)


@router.get("/threads/{thread_id}", response_model=ThreadDetail, responses=errors(401, 404, 422))
async def get_thread(thread_id: ThreadId, owner: OwnerDep, sessions: SessionsDep) -> ThreadDetail:
    """The session: times, status, summary and analytics (duration, counts by role, topics)."""
    record, summary, running = await sessions.adetail(owner, thread_id)
    return _detail(record, summary, running)


@router.delete(
    "/threads/{thread_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=errors(401, 404, 409, 422),
)
async def delete_thread(thread_id: ThreadId, owner: OwnerDep, sessions: SessionsDep) -> Response:
    """Delete the session's checkpoints, transcript, session memories and record."""
    await sessions.adelete(owner, thread_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/threads/{thread_id}/end", response_model=ThreadDetail, responses=errors(401, 404, 409, 422)
)
async def end_thread(thread_id: ThreadId, owner: OwnerDep, sessions: SessionsDep) -> ThreadDetail:
    """End the session; one with enough messages leaves its summary in long-term memory."""
    record = await sessions.aend(owner, thread_id)
    return _detail(record, record.get("summary", ""), False)


@router.post(
    "/threads/{thread_id}/undo", response_model=UndoOut, responses=errors(401, 404, 409, 422)
)
async def undo_messages(
    thread_id: ThreadId, owner: OwnerDep, sessions: SessionsDep, body: UndoIn | None = None
) -> UndoOut:
    """Remove the last `messages` messages (whole turns) from transcript, window and counts."""
    count = body.messages if body is not None else 1
    return UndoOut.model_validate(await sessions.aundo(owner, thread_id, count))


@router.get(
    "/threads/{thread_id}/messages",
    response_model=MessagePage,
    response_model_exclude_unset=True,
    responses=errors(401, 404, 422),
)
async def get_messages(
    thread_id: ThreadId,
    owner: OwnerDep,
    sessions: SessionsDep,
    limit: MessageLimit = 100,
    offset: MessageOffset = 0,
    order: Annotated[
        Literal["asc", "desc"],
        Query(
            description="`asc`: oldest first (`offset` skips the oldest); `desc`: newest "
            "first (`offset` skips the newest)."
        ),
    ] = "asc",
    format: Annotated[
        Literal["records", "openai"],
        Query(
            description="`records`: each message with its `seq`, `id`, `created_at`, "
            "`metadata` and tool calls as `{id, name, args}`; `openai`: OpenAI chat messages "
            "(`role`, `content`, `name`, `tool_calls` with JSON `arguments`, `tool_call_id`) "
            "to send to a chat-completions API as they are."
        ),
    ] = "records",
) -> MessagePage:
    """The full transcript, including what summarisation folded away: oldest first, or
    newest first with `order=desc`; a negative `offset` counts from the other end."""
    if order == "desc":
        items, total = await sessions.aget_newest_messages(owner, thread_id, limit, offset)
    else:
        items, total = await sessions.aget_messages(owner, thread_id, limit, offset)
    if format == "openai":
        items = [transcript.record_to_openai(i) for i in items]
    return MessagePage(items=[MessageOut.model_validate(i) for i in items], total=total)


@router.post(
    "/threads/{thread_id}/messages",
    response_model=Appended,
    status_code=status.HTTP_201_CREATED,
    responses=errors(401, 404, 409, 413, 422, 429),
)
async def add_messages(
    thread_id: ThreadId,
    body: AppendMessages,
    owner: OwnerDep,
    sessions: SessionsDep,
    settings: SettingsDep,
) -> Appended:
    """Append messages to the transcript and the working state without running the model."""
    messages = body.to_dicts(settings.max_message_chars, settings.max_messages_per_request)
    total = await sessions.aadd_messages(owner, thread_id, messages)
    return Appended(thread_id=thread_id, added=len(messages), total=total)


@router.get(
    "/threads/{thread_id}/summary", response_model=SummaryOut, responses=errors(401, 404, 422)
)
async def get_summary(thread_id: ThreadId, owner: OwnerDep, sessions: SessionsDep) -> SummaryOut:
    """The running summary of what the working window no longer holds."""
    return SummaryOut(thread_id=thread_id, summary=await sessions.aget_summary(owner, thread_id))


@router.put(
    "/threads/{thread_id}/summary",
    response_model=SummaryOut,
    responses=errors(401, 404, 409, 413, 422),
)
async def put_summary(
    thread_id: ThreadId, body: SummaryIn, owner: OwnerDep, sessions: SessionsDep
) -> SummaryOut:
    """Replace the running summary (409 while a run is active on the thread)."""
    await sessions.aupdate_summary(owner, thread_id, body.summary)
    return SummaryOut(thread_id=thread_id, summary=body.summary)


@router.get("/threads/{thread_id}/state", response_model=StateOut, responses=errors(401, 404, 422))
async def get_state(thread_id: ThreadId, owner: OwnerDep, sessions: SessionsDep) -> StateOut:
    """The working state: the messages in the window and the running summary."""
    record, snapshot = await sessions.aget_state(owner, thread_id)
    values = snapshot.values or {}
    return StateOut(
        thread_id=thread_id,
        messages=[_message(m) for m in values.get("messages", [])],
        summary=values.get("summary") or record.get("summary", ""),
        transcript_len=values.get("transcript_len", 0),
        checkpoint_id=(snapshot.config or {}).get("configurable", {}).get("checkpoint_id"),
        next=list(snapshot.next),
        interrupts=[
            PendingInterrupt(id=i.id, value=i.value) for t in snapshot.tasks for i in t.interrupts
        ],
    )


@router.get(
    "/threads/{thread_id}/history", response_model=CheckpointPage, responses=errors(401, 404, 422)
)
async def get_history(
    thread_id: ThreadId,
    owner: OwnerDep,
    sessions: SessionsDep,
    limit: Limit = 20,
    offset: Offset = 0,
) -> CheckpointPage:
    """The thread's checkpoints, newest first."""
    items: list[CheckpointOut] = []
    total = 0
    async for snap in sessions.ahistory(owner, thread_id):
        if offset <= total < offset + limit:
            conf = snap.config.get("configurable", {})
            parent = (snap.parent_config or {}).get("configurable", {})
            meta = snap.metadata or {}
            items.append(
                CheckpointOut(
                    checkpoint_id=conf.get("checkpoint_id", ""),
                    parent_checkpoint_id=parent.get("checkpoint_id"),
                    created_at=snap.created_at,
                    step=meta.get("step"),
                    source=meta.get("source"),
                    next=list(snap.next),
                    message_count=len((snap.values or {}).get("messages", [])),
                )
            )
        total += 1
    return CheckpointPage(items=items, total=total)
