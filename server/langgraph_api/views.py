"""What the LangGraph server API answers: assistants, threads, states and events as JSON."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from typing import Any
from uuid import UUID, uuid5

from fastapi.responses import JSONResponse
from langchain_core.messages import (
    BaseMessage,
    BaseMessageChunk,
    convert_to_messages,
    message_chunk_to_message,
)
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import StateSnapshot

#: Where the LangGraph server API is mounted.
PREFIX = "/langgraph"
#: The graph id `langgraph.json` serves the agent under.
GRAPH_ID = "agent"
#: langgraph-api names a graph's default assistant `uuid5(NAMESPACE_GRAPH, graph_id)`.
NAMESPACE_GRAPH = UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8")
ASSISTANT_ID = str(uuid5(NAMESPACE_GRAPH, GRAPH_ID))
_EPOCH = "1970-01-01T00:00:00+00:00"


def _default(value: Any) -> Any:
    if hasattr(value, "model_dump"):  # messages and other pydantic models
        return value.model_dump()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def dumps(value: Any) -> str:
    """JSON as langgraph-api writes it: messages as their `model_dump()`."""
    return json.dumps(value, default=_default, ensure_ascii=False, separators=(",", ":"))


class LangGraphJSON(JSONResponse):
    """A JSON response that serialises messages, dataclasses and datetimes."""

    def render(self, content: Any) -> bytes:
        """Serialise `content`."""
        return dumps(content).encode()


def assistant(graph: CompiledStateGraph) -> dict[str, Any]:
    """The one assistant: the agent graph with the deployment's configuration."""
    return {
        "assistant_id": ASSISTANT_ID,
        "graph_id": GRAPH_ID,
        "config": {},
        "context": {},
        "metadata": {"created_by": "system"},
        "name": GRAPH_ID,
        "description": None,
        "version": 1,
        "created_at": _EPOCH,
        "updated_at": _EPOCH,
    }


def is_assistant(assistant_id: str) -> bool:
    """Whether `assistant_id` names the agent (by graph id or assistant id)."""
    return assistant_id in (GRAPH_ID, ASSISTANT_ID)


def metadata_matches(metadata: dict[str, Any], wanted: dict[str, Any] | None) -> bool:
    """Whether `metadata` holds every key of `wanted` with the same value."""
    return all(metadata.get(k) == v for k, v in (wanted or {}).items())


def thread_metadata(record: dict[str, Any]) -> dict[str, Any]:
    """A thread's metadata as clients filter on it: as it was sent, and once the thread
    holds messages, the graph and assistant that ran on it (as langgraph-api adds them
    with a thread's first run)."""
    metadata = record.get("metadata") or {}
    if not record.get("message_count"):
        return dict(metadata)
    return {"graph_id": GRAPH_ID, "assistant_id": ASSISTANT_ID, **metadata}


def thread(
    record: dict[str, Any],
    running: bool,
    values: dict[str, Any] | None = None,
    snapshot: StateSnapshot | None = None,
) -> dict[str, Any]:
    """A session record as a LangGraph `Thread` (`values` null when not read; its pauses by
    task id from `snapshot`, when read)."""
    return {
        "thread_id": record["thread_id"],
        "created_at": record["created_at"],
        "updated_at": record["last_active_at"],
        "state_updated_at": record["last_active_at"],
        "metadata": thread_metadata(record),
        "status": "busy" if running else "interrupted" if record.get("waiting") else "idle",
        "config": {},
        "values": values,
        "interrupts": {
            task.id: [_interrupt(i) for i in task.interrupts]
            for task in (snapshot.tasks if snapshot is not None else ())
            if task.interrupts
        },
        "error": None,
    }


def _checkpoint(thread_id: str, config: Any) -> dict[str, Any] | None:
    conf = (config or {}).get("configurable") or {}
    if not conf.get("checkpoint_id"):
        return None
    return {
        "thread_id": thread_id,
        "checkpoint_ns": conf.get("checkpoint_ns", ""),
        "checkpoint_id": conf["checkpoint_id"],
        "checkpoint_map": None,
    }


def clean_metadata(metadata: Any, thread_id: str) -> dict[str, Any]:
    """Run or checkpoint metadata without the internal thread key and private entries."""
    out = {k: v for k, v in dict(metadata or {}).items() if not str(k).startswith("__")}
    if "thread_id" in out:
        out["thread_id"] = thread_id
    return out


#: Run-level keys of a checkpoint's config a client is shown (everything else in it is the
#: server's own: the internal thread key, the context, the store).
_CONFIG_KEYS = ("checkpoint_ns", "checkpoint_id", "run_id", "graph_id", "assistant_id")


def _client_config(config: Any, thread_id: str, metadata: Any) -> dict[str, Any] | None:
    """A checkpoint's config as langgraph-api streams it: its ids, with the client's
    thread id and the run's."""
    if not config:
        return None
    conf = dict((config or {}).get("configurable") or {})
    run = dict(metadata or {})
    out = {key: conf[key] for key in _CONFIG_KEYS if key in conf}
    for key in ("run_id", "graph_id", "assistant_id"):
        if key not in out and key in run:
            out[key] = run[key]
    out["thread_id"] = thread_id
    return {"configurable": out}


def _stream_checkpoint(
    payload: dict[str, Any], thread_id: str, metadata: Any, *, refs: bool
) -> dict[str, Any]:
    out = {
        **payload,
        "config": _client_config(payload.get("config"), thread_id, metadata),
        "parent_config": _client_config(payload.get("parent_config"), thread_id, metadata),
        "metadata": checkpoint_metadata(payload.get("metadata"), thread_id),
    }
    if refs:  # `debug` names the checkpoints too
        out["checkpoint"] = _ref(thread_id, payload.get("config"))
        out["parent_checkpoint"] = _ref(thread_id, payload.get("parent_config"))
    return out


def _ref(thread_id: str, config: Any) -> dict[str, Any] | None:
    found = _checkpoint(thread_id, config)
    if found is None:
        return None
    return {k: found[k] for k in ("checkpoint_id", "thread_id", "checkpoint_ns")}


def _stream_task(payload: dict[str, Any], thread_id: str, metadata: Any) -> dict[str, Any]:
    if "input" not in payload:  # a task's result
        return {**payload, "interrupts": [_interrupt(i) for i in payload.get("interrupts", ())]}
    return {**payload, "metadata": clean_metadata(metadata, thread_id)}


def stream_part(mode: str, payload: Any, thread_id: str, metadata: Any) -> Any:
    """A `checkpoints`, `tasks` or `debug` stream part as langgraph-api sends it: checkpoint
    configs carry only the client's ids, a task its run's metadata. Other parts unchanged."""
    if mode == "checkpoints" and isinstance(payload, dict):
        return _stream_checkpoint(payload, thread_id, metadata, refs=False)
    if mode == "tasks" and isinstance(payload, dict):
        return _stream_task(payload, thread_id, metadata)
    if mode == "debug" and isinstance(payload, dict):
        inner = payload.get("payload")
        if not isinstance(inner, dict):
            return payload
        if payload.get("type") == "checkpoint":
            inner = _stream_checkpoint(inner, thread_id, metadata, refs=True)
        else:
            inner = _stream_task(inner, thread_id, metadata)
        return {**payload, "payload": inner}
    return payload


class MessageParts:
    """The older `messages` stream mode: each message's metadata once (`messages/metadata`,
    by message id), then the message so far after each chunk (`messages/partial`), or whole
    when it arrives whole (`messages/complete`), as langgraph-api sends them."""

    def __init__(self) -> None:
        self._seen: dict[str, BaseMessage] = {}

    def add(self, message: Any, metadata: dict[str, Any]) -> list[tuple[str, Any]]:
        if not isinstance(message, BaseMessage):
            message = convert_to_messages([message])[0]
        key = message.id or f"#{len(self._seen)}"
        parts: list[tuple[str, Any]] = []
        before = self._seen.get(key)
        if before is None:
            parts.append(("messages/metadata", {key: {"metadata": metadata}}))
        if isinstance(message, BaseMessageChunk) and isinstance(before, BaseMessageChunk):
            message = before + message
        self._seen[key] = message
        # The message so far, shaped as the message it becomes (no chunk fields).
        name = "messages/partial" if isinstance(message, BaseMessageChunk) else "messages/complete"
        parts.append((name, [message_chunk_to_message(message)]))
        return parts


def _interrupt(pause: Any) -> dict[str, Any]:
    """A pause (`langgraph.types.Interrupt`) as LangGraph's server shows it (its fields;
    a response schema given as a class is not sent)."""
    schema = getattr(pause, "response_schema", None)
    return {
        "value": pause.value,
        "id": pause.id,
        "response_schema": schema if isinstance(schema, dict) else None,
    }


def checkpoint_metadata(metadata: Any, thread_id: str) -> dict[str, Any]:
    """A checkpoint's metadata as clients read and filter it: a run's checkpoints name
    their thread too, as langgraph-api's do (LangGraph leaves it out of what it stores)."""
    out = clean_metadata(metadata, thread_id)
    if "run_id" in out:
        out["thread_id"] = thread_id
    return out


def state(thread_id: str, snapshot: Any, values: dict[str, Any]) -> dict[str, Any]:
    """A `StateSnapshot` as a LangGraph `ThreadState`, with the client's view of values."""
    checkpoint = _checkpoint(thread_id, snapshot.config) or {
        "thread_id": thread_id,
        "checkpoint_ns": "",
        "checkpoint_id": None,
        "checkpoint_map": None,
    }
    parent = _checkpoint(thread_id, snapshot.parent_config)
    return {
        "values": values,
        "next": list(snapshot.next),
        "tasks": [
            {
                "id": task.id,
                "name": task.name,
                "path": list(task.path),
                "error": str(task.error) if task.error else None,
                "interrupts": [_interrupt(i) for i in task.interrupts],
                "checkpoint": None,
                "state": None,
                "result": task.result,
            }
            for task in snapshot.tasks
        ],
        "checkpoint": checkpoint,
        "metadata": checkpoint_metadata(snapshot.metadata, thread_id),
        "created_at": snapshot.created_at,
        "parent_checkpoint": parent,
        "interrupts": [_interrupt(i) for t in snapshot.tasks for i in t.interrupts],
        # The flat ids older clients read, as langgraph-api still sends them.
        "checkpoint_id": checkpoint["checkpoint_id"],
        "parent_checkpoint_id": parent["checkpoint_id"] if parent else None,
    }
