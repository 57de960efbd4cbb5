"""Memories: the caller's long-term memories, and each session's own."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from agent.namespaces import Owner
from memory.sessions import SessionManager
from server.deps import MemoryKey, OwnerDep, SessionsDep, ThreadId
from server.schemas import (
    MAX_QUERY_CHARS,
    MemoryIn,
    MemoryOut,
    MemoryPage,
    QueryInt,
    SafeText,
    errors,
)

router = APIRouter(tags=["memories"])

Search = Annotated[
    SafeText | None,
    Query(max_length=MAX_QUERY_CHARS, description="Semantic search text; omit to list."),
]
Limit = Annotated[QueryInt, Query(ge=1, le=100, description="Most memories to return, 1-100.")]
_ALL = 10_000


async def _list(
    sessions: SessionManager, owner: Owner, query: str | None, limit: int, thread_id: str | None
) -> MemoryPage:
    items = await sessions.alist_memories(owner, query or None, limit, thread_id)
    total = len(items)
    if not query and total == limit:
        total = len(await sessions.alist_memories(owner, None, _ALL, thread_id))
    return MemoryPage(items=[MemoryOut.model_validate(i) for i in items], total=total)


async def _put(
    sessions: SessionManager, owner: Owner, key: str, body: MemoryIn, thread_id: str | None
) -> MemoryOut:
    saved = await sessions.asave_memory(owner, key, body.value, thread_id)
    return MemoryOut.model_validate(saved)


# -- user memories -------------------------------------------------------------------


@router.get("/memories", response_model=MemoryPage, responses=errors(401, 422))
async def list_memories(
    owner: OwnerDep, sessions: SessionsDep, query: Search = None, limit: Limit = 20
) -> MemoryPage:
    """The caller's memories; most relevant first when `query` is given."""
    return await _list(sessions, owner, query, limit, None)


@router.put("/memories/{key}", response_model=MemoryOut, responses=errors(401, 413, 422))
async def put_memory(
    key: MemoryKey, body: MemoryIn, owner: OwnerDep, sessions: SessionsDep
) -> MemoryOut:
    """Save a memory under `key` (replacing any); the value is any JSON."""
    return await _put(sessions, owner, key, body, None)


@router.get("/memories/{key}", response_model=MemoryOut, responses=errors(401, 404, 422))
async def get_memory(key: MemoryKey, owner: OwnerDep, sessions: SessionsDep) -> MemoryOut:
    """One memory."""
    return MemoryOut.model_validate(await sessions.aget_memory(owner, key))


@router.delete(
    "/memories/{key}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(401, 404, 422)
)
async def delete_memory(key: MemoryKey, owner: OwnerDep, sessions: SessionsDep) -> Response:
    """Delete one memory."""
    await sessions.adelete_memory(owner, key)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete("/memories", status_code=status.HTTP_204_NO_CONTENT, responses=errors(401))
async def clear_memories(owner: OwnerDep, sessions: SessionsDep) -> Response:
    """Delete all of the caller's long-term memories."""
    await sessions.aclear_memories(owner)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# -- session memories ----------------------------------------------------------------


@router.get(
    "/threads/{thread_id}/memories", response_model=MemoryPage, responses=errors(401, 404, 422)
)
async def list_session_memories(
    thread_id: ThreadId,
    owner: OwnerDep,
    sessions: SessionsDep,
    query: Search = None,
    limit: Limit = 20,
) -> MemoryPage:
    """The session's memories; most relevant first when `query` is given."""
    return await _list(sessions, owner, query, limit, thread_id)


@router.put(
    "/threads/{thread_id}/memories/{key}",
    response_model=MemoryOut,
    responses=errors(401, 404, 413, 422),
)
async def put_session_memory(
    thread_id: ThreadId,
    key: MemoryKey,
    body: MemoryIn,
    owner: OwnerDep,
    sessions: SessionsDep,
) -> MemoryOut:
    """Save a session memory under `key` (replacing any)."""
    return await _put(sessions, owner, key, body, thread_id)


@router.get(
    "/threads/{thread_id}/memories/{key}",
    response_model=MemoryOut,
    responses=errors(401, 404, 422),
)
async def get_session_memory(
    thread_id: ThreadId,
    key: MemoryKey,
    owner: OwnerDep,
    sessions: SessionsDep,
) -> MemoryOut:
    """One session memory."""
    return MemoryOut.model_validate(await sessions.aget_memory(owner, key, thread_id))


@router.delete(
    "/threads/{thread_id}/memories/{key}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=errors(401, 404, 422),
)
async def delete_session_memory(
    thread_id: ThreadId,
    key: MemoryKey,
    owner: OwnerDep,
    sessions: SessionsDep,
) -> Response:
    """Delete one session memory."""
    await sessions.adelete_memory(owner, key, thread_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete(
    "/threads/{thread_id}/memories",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=errors(401, 404, 422),
)
async def clear_session_memories(
    thread_id: ThreadId, owner: OwnerDep, sessions: SessionsDep
) -> Response:
    """Delete all of the session's memories."""
    await sessions.aclear_memories(owner, thread_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
