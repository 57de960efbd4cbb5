"""The append-only transcript: every message of a thread, one store item per message.

The working state in the checkpoint holds only a bounded window of recent messages; the
transcript keeps all of them. Items are keyed by their sequence number, so reading a page
is a batch of point lookups whose cost does not depend on how long the thread is, and
re-recording after a crash writes the same keys again instead of duplicating messages.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from langchain_core.messages import (
    AIMessage,
    AnyMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langgraph.store.base import GetOp, PutOp

from memory import namespaces

ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}


def seq_key(seq: int) -> str:
    """The store key of message number `seq` (zero-padded so keys sort in order)."""
    return f"{seq:012d}"


def content_text(content: Any) -> str:
    """Plain text of a message content (strings, or lists of content blocks)."""
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for block in content or []:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and block.get("type") == "text":
            parts.append(str(block.get("text", "")))
    return "".join(parts)


def message_to_record(message: BaseMessage, seq: int) -> dict[str, Any]:
    """The JSON record stored for one message."""
    record: dict[str, Any] = {
        "seq": seq,
        "id": message.id,
        "role": ROLES.get(message.type, message.type),
        "content": message.content,
        "created_at": datetime.now(UTC).isoformat(),
    }
    if message.name:
        record["name"] = message.name
    if isinstance(message, AIMessage) and message.tool_calls:
        record["tool_calls"] = [
            {"id": c["id"], "name": c["name"], "args": c["args"]} for c in message.tool_calls
        ]
    if isinstance(message, ToolMessage):
        record["tool_call_id"] = message.tool_call_id
        record["status"] = message.status
    return record


def record_to_message(record: dict[str, Any]) -> AnyMessage:
    """Rebuild a LangChain message from a stored record."""
    role = record["role"]
    common: dict[str, Any] = {"content": record.get("content", ""), "id": record.get("id")}
    if record.get("name"):
        common["name"] = record["name"]
    if role == "user":
        return HumanMessage(**common)
    if role == "assistant":
        calls = [
            {"id": c["id"], "name": c["name"], "args": c.get("args", {}), "type": "tool_call"}
            for c in record.get("tool_calls", [])
        ]
        return AIMessage(tool_calls=calls, **common)
    if role == "system":
        return SystemMessage(**common)
    if role == "tool":
        return ToolMessage(
            tool_call_id=record["tool_call_id"], status=record.get("status", "success"), **common
        )
    raise ValueError(f"unknown role {role!r} in transcript record")


def record_ops(thread_key: str, start: int, messages: Iterable[BaseMessage]) -> list[PutOp]:
    """Store operations that record `messages` as numbers `start`, `start + 1`, ..."""
    namespace = namespaces.transcript(thread_key)
    return [
        PutOp(namespace, seq_key(start + i), message_to_record(m, start + i), index=False)
        for i, m in enumerate(messages)
    ]


def page_ops(thread_key: str, offset: int, limit: int, total: int) -> list[GetOp]:
    """Point lookups for messages `offset` .. `offset + limit - 1` (clipped to `total`)."""
    namespace = namespaces.transcript(thread_key)
    return [GetOp(namespace, seq_key(s)) for s in range(offset, min(offset + limit, total))]


def delete_ops(thread_key: str, total: int) -> list[PutOp]:
    """Operations that delete the first `total` transcript items of a thread."""
    namespace = namespaces.transcript(thread_key)
    return [PutOp(namespace, seq_key(s), None) for s in range(total)]


def page_records(results: Sequence[Any]) -> list[dict[str, Any]]:
    """The records found by `page_ops`, oldest first (missing items are skipped)."""
    return [item.value for item in results if item is not None]


def format_context(records: Sequence[dict[str, Any]]) -> str:
    """Recent messages as prompt-ready lines: `user: ...`, `assistant: ...`."""
    lines = []
    for r in records:
        text = content_text(r.get("content"))
        if r.get("tool_calls"):
            calls = ", ".join(f"{c['name']}({json.dumps(c['args'])})" for c in r["tool_calls"])
            text = f"{text} [calls {calls}]".strip()
        lines.append(f"{r['role']}: {text}")
    return "\n".join(lines)
