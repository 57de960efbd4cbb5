"""Model-managed facts: the record shape shared by the agent's tools and the Python API."""

from __future__ import annotations

import json
from typing import Any

from langgraph.store.base import Item, SearchItem

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
    }
    score = getattr(item, "score", None)
    if score is not None:
        out["score"] = score
    return out
