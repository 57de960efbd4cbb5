"""Model-managed facts: the record shape shared by the agent's tools and the Python API."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import threading
from collections.abc import Callable
from typing import Any

import jsonpatch
import jsonpointer
from langgraph.store.base import BaseStore, Item, SearchItem

#: The field the semantic index embeds.
INDEX_FIELDS = ["content"]
#: Longest text a memory may hold; longer facts are rejected, not truncated.
MAX_CONTENT_CHARS = 4000


class MemoryTooLargeError(ValueError):
    """A memory's text is longer than `MAX_CONTENT_CHARS`."""


def memory_value(value: Any) -> dict[str, Any]:
    """The stored value of a memory: the caller's JSON plus the text that gets embedded."""
    text = (
        value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)
    )
    if len(text) > MAX_CONTENT_CHARS:
        raise MemoryTooLargeError(
            f"memory is {len(text)} characters; the limit is {MAX_CONTENT_CHARS}"
        )
    return {"content": text, "value": value}


def memory_out(item: Item | SearchItem, scope: str) -> dict[str, Any]:
    """The public form of a stored memory."""
    out: dict[str, Any] = {
        "key": item.key,
        "value": item.value.get("value", item.value.get("content")),
        "content": item.value.get("content", ""),
        "scope": scope,
        "created_at": item.created_at.isoformat(),
        "updated_at": item.updated_at.isoformat(),
        "etag": etag(item),
    }
    score = getattr(item, "score", None)
    if score is not None:
        out["score"] = score
    return out


class PreconditionFailedError(ValueError):
    """A conditional write's condition does not hold (`If-Match`, `If-None-Match`)."""


class PatchFailedError(ValueError):
    """A JSON Patch operation could not be applied; `index` is the failed operation."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


def etag(item: Item | SearchItem) -> str:
    """The strong version of a stored memory: a digest of its value and update time."""
    text = json.dumps(item.value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(f"{text}\x1f{item.updated_at.isoformat()}".encode())
    return f'"{digest.hexdigest()[:32]}"'


def check_version(item: Item | None, expected: str | None) -> None:
    """Raise `PreconditionFailedError` unless `item` is at the `expected` version.

    `expected` is an ETag (quoted or not), a comma-separated list of them, `*` (any
    existing memory) or `!*` (no memory: create only); None accepts anything.
    """
    if expected is None:
        return
    if expected == "!*":
        if item is not None:
            raise PreconditionFailedError("the memory already exists (If-None-Match: *)")
        return
    if item is None:
        raise PreconditionFailedError("the memory does not exist, so no version matches")
    if expected.strip() == "*":
        return
    wanted = {_quoted(tag) for tag in expected.split(",") if tag.strip()}
    current = etag(item)
    if current not in wanted:
        raise PreconditionFailedError(
            f"the memory is at version {current}, not {', '.join(sorted(wanted))}"
        )


def _quoted(tag: str) -> str:
    tag = tag.strip()
    if tag.startswith("W/"):
        tag = tag[2:]
    return tag if tag.startswith('"') else f'"{tag}"'


def patched_value(value: Any, patch: Any) -> Any:
    """`value` after the RFC 6902 document `patch`; the value is left unchanged.

    Raises:
        PatchFailedError: the document is not a list of operations, or one of them fails
            (a `test` that does not hold, a path that does not exist); names the operation.
    """
    if not isinstance(patch, list):
        raise PatchFailedError("a JSON Patch document is a list of operations")
    for index, op in enumerate(patch):
        try:
            jsonpatch.JsonPatch([op])
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, TypeError) as e:
            raise PatchFailedError(
                f"operation {index} ({_op_text(op)}) is invalid: {e}", index
            ) from e
    result = copy.deepcopy(value)
    for index, op in enumerate(patch):
        try:
            result = jsonpatch.JsonPatch([op]).apply(result, in_place=False)
        except (
            jsonpatch.JsonPatchException,
            jsonpointer.JsonPointerException,
            TypeError,
            KeyError,
            IndexError,
        ) as exc:
            raise PatchFailedError(
                f"operation {index} ({_op_text(op)}) failed: {exc or type(exc).__name__}", index
            ) from exc
    return result


def _op_text(op: Any) -> str:
    if isinstance(op, dict):
        return f"{op.get('op')!s} {op.get('path')!s}"
    return repr(op)[:80]


#: The new value of a store item given the current one (None: absent); None deletes it.
Change = Callable[[Item | None], dict[str, Any] | None]
_FALLBACK_LOCK = threading.RLock()


def update_item(store: BaseStore, namespace: tuple[str, ...], key: str, change: Change) -> Any:
    """Apply `change` to one store item atomically; the item after it (None if deleted).

    The stores of `memory.stores` do it with their backend's own primitive (`update`);
    any other `BaseStore` under a lock of this process only.
    """
    native = getattr(store, "update", None)
    if native is not None:
        return native(namespace, key, change)
    with _FALLBACK_LOCK:
        value = change(store.get(namespace, key))
        if value is None:
            store.delete(namespace, key)
            return None
        store.put(namespace, key, value)
        return store.get(namespace, key)


async def aupdate_item(
    store: BaseStore, namespace: tuple[str, ...], key: str, change: Change
) -> Any:
    """Async `update_item`."""
    native = getattr(store, "aupdate", None)
    if native is not None:
        return await native(namespace, key, change)
    async with _async_fallback_lock():
        value = change(await store.aget(namespace, key))
        if value is None:
            await store.adelete(namespace, key)
            return None
        await store.aput(namespace, key, value)
        return await store.aget(namespace, key)


_ASYNC_LOCKS: dict[int, asyncio.Lock] = {}


def _async_fallback_lock() -> asyncio.Lock:
    loop = id(asyncio.get_running_loop())
    return _ASYNC_LOCKS.setdefault(loop, asyncio.Lock())
