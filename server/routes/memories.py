"""Memories: the caller's long-term memories, and each session's own."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Header, Query, Request, Response, status

from agent.namespaces import Owner
from memory.errors import InvalidInputError, MemoryAgentError
from memory.sessions import SessionManager
from server.deps import MemoryKey, OwnerDep, SessionsDep, ThreadId
from server.schemas import (
    MAX_QUERY_CHARS,
    MemoryIn,
    MemoryOut,
    MemoryPage,
    PatchOp,
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
IfMatch = Annotated[
    str | None,
    Header(
        max_length=2000,
        description="Write only if the memory is at one of these versions (its `ETag`), or "
        "exists at all with `*`; 412 otherwise, nothing written.",
    ),
]
IfNoneMatch = Annotated[
    str | None,
    Header(
        max_length=10,
        description="`*`: create only; 412 if the memory exists, nothing written.",
    ),
]
_PATCH_TYPE = "application/json-patch+json"


class UnsupportedMediaError(MemoryAgentError):
    """A body in a media type the route does not take."""

    status_code = 415


def _patch_media(request: Request) -> None:
    # Checked in the route, after the API key and the body have passed, so those answer first.
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != _PATCH_TYPE:
        raise UnsupportedMediaError(
            f"send a JSON Patch (RFC 6902) as {_PATCH_TYPE}, not {media or 'no content type'}"
        )


PatchBody = Annotated[
    list[PatchOp], Body(max_length=100, description="An RFC 6902 JSON Patch document.")
]
_PATCH_OPENAPI: dict[str, object] = {
    "requestBody": {
        "required": True,
        "content": {
            _PATCH_TYPE: {
                "schema": {
                    "type": "array",
                    "maxItems": 100,
                    "items": {"$ref": "#/components/schemas/PatchOp"},
                }
            }
        },
    }
}
_ETAG_HEADER = {"ETag": {"description": "The memory's version.", "schema": {"type": "string"}}}


def _expected(if_match: str | None, if_none_match: str | None) -> str | None:
    """The version condition of `agent.memories.check_version` the headers ask for."""
    if if_none_match is not None:
        if if_none_match.strip() != "*":
            raise InvalidInputError("If-None-Match takes `*` only (create only)")
        if if_match is not None:
            raise InvalidInputError("send If-Match or If-None-Match, not both")
        return "!*"
    if if_match is not None and not if_match.strip():
        raise InvalidInputError("If-Match is empty: send an ETag or `*`")
    return if_match


def _versioned(memory: dict[str, object], response: Response) -> MemoryOut:
    response.headers["ETag"] = str(memory["etag"])
    return MemoryOut.model_validate(memory)


async def _list(
    sessions: SessionManager, owner: Owner, query: str | None, limit: int, thread_id: str | None
) -> MemoryPage:
    items = await sessions.alist_memories(owner, query or None, limit, thread_id)
    total = len(items)
    if not query and total == limit:
        total = len(await sessions.alist_memories(owner, None, _ALL, thread_id))
    return MemoryPage(items=[MemoryOut.model_validate(i) for i in items], total=total)


async def _put(
    sessions: SessionManager,
    owner: Owner,
    key: str,
    body: MemoryIn,
    thread_id: str | None,
    expected: str | None,
    response: Response,
) -> MemoryOut:
    saved = await sessions.asave_memory(
        owner, key, body.value, thread_id, expected_version=expected
    )
    return _versioned(saved, response)


# -- user memories -------------------------------------------------------------------


@router.get("/memories", response_model=MemoryPage, responses=errors(401, 422))
async def list_memories(
    owner: OwnerDep, sessions: SessionsDep, query: Search = None, limit: Limit = 20
) -> MemoryPage:
    """The caller's memories; most relevant first when `query` is given."""
    return await _list(sessions, owner, query, limit, None)


@router.put(
    "/memories/{key}",
    response_model=MemoryOut,
    responses={**errors(401, 412, 413, 422), 200: {"headers": _ETAG_HEADER}},
)
async def put_memory(
    key: MemoryKey,
    body: MemoryIn,
    owner: OwnerDep,
    sessions: SessionsDep,
    response: Response,
    if_match: IfMatch = None,
    if_none_match: IfNoneMatch = None,
) -> MemoryOut:
    """Save a memory under `key` (replacing any, or as `If-Match` / `If-None-Match` say)."""
    expected = _expected(if_match, if_none_match)
    return await _put(sessions, owner, key, body, None, expected, response)


async def _patch(
    sessions: SessionManager,
    owner: Owner,
    key: str,
    patch: PatchBody,
    thread_id: str | None,
    if_match: str | None,
    request: Request,
    response: Response,
) -> MemoryOut:
    _patch_media(request)
    ops = [op.document() for op in patch]
    patched = await sessions.apatch_memory(owner, key, ops, thread_id, expected_version=if_match)
    return _versioned(patched, response)


@router.patch(
    "/memories/{key}",
    response_model=MemoryOut,
    responses={**errors(401, 404, 409, 412, 413, 415, 422), 200: {"headers": _ETAG_HEADER}},
    openapi_extra=_PATCH_OPENAPI,
)
async def patch_memory(
    key: MemoryKey,
    patch: PatchBody,
    owner: OwnerDep,
    sessions: SessionsDep,
    request: Request,
    response: Response,
    if_match: IfMatch = None,
) -> MemoryOut:
    """Apply a JSON Patch (RFC 6902) to a memory's value atomically."""
    return await _patch(sessions, owner, key, patch, None, if_match, request, response)


@router.get(
    "/memories/{key}",
    response_model=MemoryOut,
    responses={**errors(401, 404, 422), 200: {"headers": _ETAG_HEADER}},
)
async def get_memory(
    key: MemoryKey, owner: OwnerDep, sessions: SessionsDep, response: Response
) -> MemoryOut:
    """One memory; its `ETag` header is its version."""
    return _versioned(await sessions.aget_memory(owner, key), response)


@router.delete(
    "/memories/{key}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=errors(401, 404, 412, 422),
)
async def delete_memory(
    key: MemoryKey, owner: OwnerDep, sessions: SessionsDep, if_match: IfMatch = None
) -> Response:
    """Delete one memory (only at the version `If-Match` names, when given)."""
    await sessions.adelete_memory(owner, key, expected_version=_expected(if_match, None))
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
    responses={**errors(401, 404, 412, 413, 422), 200: {"headers": _ETAG_HEADER}},
)
async def put_session_memory(
    thread_id: ThreadId,
    key: MemoryKey,
    body: MemoryIn,
    owner: OwnerDep,
    sessions: SessionsDep,
    response: Response,
    if_match: IfMatch = None,
    if_none_match: IfNoneMatch = None,
) -> MemoryOut:
    """Save a session memory under `key` (replacing any, or as the conditions say)."""
    expected = _expected(if_match, if_none_match)
    return await _put(sessions, owner, key, body, thread_id, expected, response)


@router.patch(
    "/threads/{thread_id}/memories/{key}",
    response_model=MemoryOut,
    responses={**errors(401, 404, 409, 412, 413, 415, 422), 200: {"headers": _ETAG_HEADER}},
    openapi_extra=_PATCH_OPENAPI,
)
async def patch_session_memory(
    thread_id: ThreadId,
    key: MemoryKey,
    patch: PatchBody,
    owner: OwnerDep,
    sessions: SessionsDep,
    request: Request,
    response: Response,
    if_match: IfMatch = None,
) -> MemoryOut:
    """Apply a JSON Patch (RFC 6902) to a session memory's value atomically."""
    return await _patch(sessions, owner, key, patch, thread_id, if_match, request, response)


@router.get(
    "/threads/{thread_id}/memories/{key}",
    response_model=MemoryOut,
    responses={**errors(401, 404, 422), 200: {"headers": _ETAG_HEADER}},
)
async def get_session_memory(
    thread_id: ThreadId,
    key: MemoryKey,
    owner: OwnerDep,
    sessions: SessionsDep,
    response: Response,
) -> MemoryOut:
    """One session memory; its `ETag` header is its version."""
    return _versioned(await sessions.aget_memory(owner, key, thread_id), response)


@router.delete(
    "/threads/{thread_id}/memories/{key}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=errors(401, 404, 412, 422),
)
async def delete_session_memory(
    thread_id: ThreadId,
    key: MemoryKey,
    owner: OwnerDep,
    sessions: SessionsDep,
    if_match: IfMatch = None,
) -> Response:
    """Delete one session memory (only at the version `If-Match` names, when given)."""
    expected = _expected(if_match, None)
    await sessions.adelete_memory(owner, key, thread_id, expected_version=expected)
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
