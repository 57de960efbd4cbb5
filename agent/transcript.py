"""The append-only transcript: every message of a thread, in blocks of `BLOCK` messages.

The working state in the checkpoint holds only a bounded window of recent messages; the
transcript keeps all of them. Message `n` lives in block `n // BLOCK`, one store item keyed
by the block number, so reading a page is a point lookup of one or two blocks whose cost
does not depend on how long the thread is; appending rewrites only the last block, and
re-recording after a crash writes the same records again instead of duplicating them.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from langchain_core.messages import (
    AIMessage,
    AnyMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langgraph.store.base import GetOp, PutOp

from agent import namespaces

ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}


#: Messages per store item. One item per message costs a row (Postgres: ~1.4 KB with its
#: indexes) or a document (Redis: ~1.7 KB) of overhead for ~0.4 KB of text; blocks spread
#: that over many messages, and a page is still a read of one or two items.
BLOCK = 16

#: The `configurable` key under which a run is given its `TranscriptSink` (keys starting
#: with `__` stay out of checkpoint metadata).
TRANSCRIPT_KEY = "__memory_agent_transcript"


#: The sink that goes with a store (the session database opened beside it), for runs that
#: were given none in their config: a graph invoked directly, a replay, a fork.
_SINKS: weakref.WeakKeyDictionary[Any, TranscriptSink] = weakref.WeakKeyDictionary()


def attach(store: Any, sink: TranscriptSink) -> None:
    """Make `sink` where runs on `store` record their transcripts."""
    _SINKS[store] = sink


def sink_for(config_sink: TranscriptSink | None, store: Any) -> TranscriptSink | None:
    """The run's sink: the one its config names, else the one attached to its store."""
    if config_sink is not None or store is None:
        return config_sink
    return _SINKS.get(store)


class TranscriptSink(Protocol):
    """Where a run appends its transcript records when not into the store in blocks: the
    session database, which the session service passes to every run it makes."""

    def append(
        self, thread_key: str, start: int, records: Sequence[dict[str, Any]], token: str | None
    ) -> None:
        """Write `records` as messages `start...` of the thread (fenced by `token`)."""

    async def aappend(
        self, thread_key: str, start: int, records: Sequence[dict[str, Any]], token: str | None
    ) -> None:
        """`append`, async."""


def unrecorded(values: Mapping[str, Any]) -> list[AnyMessage]:
    """Messages of a thread's state that entered it after the last one it recorded.

    `values` is the graph state: its `messages` window and its `recorded_id` marker.
    """
    messages = values.get("messages") or []
    recorded = values.get("recorded_id")
    if recorded is None:
        return list(messages)
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].id == recorded:
            return list(messages[index + 1 :])
    return list(messages)  # the marker was removed by hand: record the window again


#: Keys of a content block whose string is its binary data, in base64 (LangChain's
#: `data` / `base64`, OpenAI's `file_data`); any string that is a base64 data URL is too.
_DATA_KEYS = frozenset({"data", "base64", "file_data"})


def _is_data_url(value: str) -> bool:
    return value.startswith("data:") and ";base64," in value[:200]


def binary_strings(content: Any) -> list[str]:
    """The base64 strings a message content carries in its blocks (images, files, audio,
    as LangChain's and OpenAI's content blocks hold them), data URLs whole."""
    if isinstance(content, str):
        return []
    found: list[str] = []
    pending: list[Any] = [
        b for b in content or [] if isinstance(b, dict) and b.get("type") != "text"
    ]
    while pending:
        node = pending.pop()
        for key, value in node.items():
            if isinstance(value, str) and (key in _DATA_KEYS or _is_data_url(value)):
                found.append(value)
            elif isinstance(value, dict):
                pending.append(value)
    return found


def binary_bytes(content: Any) -> int:
    """The decoded size of the binary data a message content carries (see `binary_strings`)."""
    total = 0
    for value in binary_strings(content):
        encoded = value.partition(";base64,")[2] if _is_data_url(value) else value
        total += len(encoded) * 3 // 4
    return total


def attachment_kinds(content: Any) -> list[str]:
    """The kinds of the non-text blocks of a message content (`image`, `file`, `audio`...),
    each once, in order; OpenAI's `image_url` and `input_audio` named as their kind."""
    if isinstance(content, str):
        return []
    kinds: list[str] = []
    for block in content or []:
        if isinstance(block, dict) and block.get("type") not in (None, "text"):
            kind = {"image_url": "image", "input_audio": "audio"}.get(block["type"], block["type"])
            if kind not in kinds:
                kinds.append(str(kind))
    return kinds


def without_binary(content: Any) -> Any:
    """The content with each block's binary data left out (its size said instead), for
    what measures or shows text: a token count, a summary."""
    if isinstance(content, str) or not binary_strings(content):
        return content

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: (
                    f"<{len(v)} base64 characters>"
                    if isinstance(v, str) and (k in _DATA_KEYS or _is_data_url(v))
                    else strip(v)
                )
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    return [b if not isinstance(b, dict) or b.get("type") == "text" else strip(b) for b in content]


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
    """The JSON record stored for one message.

    The first call stamps the message with its recording time (in `response_metadata`,
    which no provider is sent), so a record built again from the same message, such as a
    run's result built from its final state, carries the same `created_at`.
    """
    created = message.response_metadata.get("created_at")
    if not isinstance(created, str):
        created = datetime.now(UTC).isoformat()
        message.response_metadata["created_at"] = created
    record: dict[str, Any] = {
        "seq": seq,
        "id": message.id,
        "role": ROLES.get(message.type, message.type),
        "content": message.content,
        "created_at": created,
    }
    if message.name:
        record["name"] = message.name
    if message.response_metadata.get("metadata"):
        record["metadata"] = message.response_metadata["metadata"]
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
    if record.get("metadata"):
        common["response_metadata"] = {"metadata": record["metadata"]}
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


def record_to_openai(record: Mapping[str, Any]) -> dict[str, Any]:
    """A stored record as an OpenAI chat message, ready to send to a chat-completions API:
    `role`, `content`, and `name`, `tool_calls` (`{"id", "type": "function", "function":
    {"name", "arguments": "<json>"}}`) or `tool_call_id` where they apply; nothing else."""
    message: dict[str, Any] = {"role": record["role"], "content": record.get("content", "")}
    if record.get("name"):
        message["name"] = record["name"]
    if record.get("tool_calls"):
        message["tool_calls"] = [
            {
                "id": call["id"],
                "type": "function",
                "function": {
                    "name": call["name"],
                    "arguments": json.dumps(call.get("args", {}), ensure_ascii=False),
                },
            }
            for call in record["tool_calls"]
        ]
    if record.get("tool_call_id"):
        message["tool_call_id"] = record["tool_call_id"]
    return message


def block_key(block: int) -> str:
    """The store key of transcript block number `block` (zero-padded so keys sort in order)."""
    return f"{block:012d}"


def _blocks(start: int, stop: int) -> range:
    """Numbers of the blocks that hold messages `start` .. `stop - 1`."""
    return range(start // BLOCK, (stop - 1) // BLOCK + 1) if stop > start else range(0)


def _block_value(records: list[dict[str, Any]]) -> dict[str, Any]:
    # One compact JSON string per block: document stores such as RedisJSON spend tens of
    # bytes on every field of a nested value, which would dwarf short messages.
    return {"records": json.dumps(records, ensure_ascii=False, separators=(",", ":"))}


def _block_records(item: Any) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = json.loads(item.value["records"])
    return records


def prepare_ops(thread_key: str, start: int) -> list[GetOp]:
    """What `record_ops` needs read first: the partly filled block message `start` goes into."""
    if start % BLOCK == 0:
        return []
    return [GetOp(namespaces.transcript(thread_key), block_key(start // BLOCK))]


def record_ops(
    thread_key: str,
    start: int,
    messages: Sequence[BaseMessage],
    prepared: Sequence[Any] = (),
) -> list[PutOp]:
    """Store operations that record `messages` as numbers `start`, `start + 1`, ...

    Args:
        thread_key: The LangGraph thread id.
        start: Sequence number of the first message.
        messages: The messages to append.
        prepared: The results of `prepare_ops(thread_key, start)`.
    """
    namespace = namespaces.transcript(thread_key)
    earlier = _block_records(prepared[0]) if prepared and prepared[0] is not None else []
    # Records from `start` on are replaced, so recording the same messages again after a
    # crash rewrites them instead of adding duplicates.
    records = [r for r in earlier if r["seq"] < start]
    records += [message_to_record(m, start + i) for i, m in enumerate(messages)]
    return [
        PutOp(
            namespace,
            block_key(block),
            _block_value([r for r in records if r["seq"] // BLOCK == block]),
            index=False,
        )
        for block in _blocks(start - start % BLOCK, start + len(messages))
    ]


def page_ops(thread_key: str, offset: int, limit: int, total: int) -> list[GetOp]:
    """Point lookups for the blocks holding messages `offset` .. `offset + limit - 1`."""
    namespace = namespaces.transcript(thread_key)
    return [GetOp(namespace, block_key(b)) for b in _blocks(offset, min(offset + limit, total))]


def page_records(results: Sequence[Any], offset: int, limit: int) -> list[dict[str, Any]]:
    """Messages `offset` .. `offset + limit - 1` from the blocks `page_ops` found, oldest first."""
    return [
        record
        for item in results
        if item is not None
        for record in _block_records(item)
        if offset <= record["seq"] < offset + limit
    ]


def session_digest(records: Sequence[dict[str, Any]], summary: str, limit: int = 1500) -> str:
    """What a session was about, for a person (and a prompt) to read: the summary of its
    older turns, then what the user said in its recent ones and the last reply, with tool
    calls, their results and attachments left out."""

    def clip(text: str, size: int) -> str:
        text = " ".join(text.split())
        return text if len(text) <= size else text[: size - 1] + "…"

    said = [
        clip(t, 160)
        for r in records
        if r["role"] == "user" and (t := content_text(r.get("content")).strip())
    ]
    replies = [
        content_text(r.get("content")).strip()
        for r in records
        if r["role"] == "assistant" and not r.get("tool_calls")
    ]
    parts = [clip(summary, 600)] if summary.strip() else []
    if said:
        parts.append("The user said: " + "; ".join(f'"{s}"' for s in said) + ".")
    if replies and replies[-1]:
        parts.append(f'The last reply: "{clip(replies[-1], 200)}"')
    text = " ".join(parts)
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
