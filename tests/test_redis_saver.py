"""The Redis checkpointer's own paths: its prune, and its reading of stored messages."""

from __future__ import annotations

import importlib
import sys
import uuid
from typing import Any

import pytest
import redis
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.store.memory import InMemoryStore

from agent import build_graph
from memory.backends import aopen_checkpointer, open_checkpointer
from memory.redis_saver import AsyncListingRedisSaver, ListingRedisSaver
from memory.settings import Settings

SETTINGS = Settings(embeddings="none")


def _config(thread_id: str, ns: str = "") -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns}}


def _keys(client: redis.Redis, thread_id: str) -> set[str]:
    """Every key of the thread: checkpoints, writes, write registries, latest pointers."""
    return {k.decode() for k in client.scan_iter(match=f"*{thread_id}*", count=1000)}


def _turns(graph: Any, thread_id: str, count: int) -> None:
    for i in range(count):
        graph.invoke({"messages": [HumanMessage(f"turn {i}")]}, _config(thread_id))


def test_prune_deletes_dropped_checkpoints_with_their_writes_and_registries(
    redis_url: str,
) -> None:
    with open_checkpointer(redis_url, SETTINGS) as saver:
        inner = saver.inner
        assert isinstance(inner, ListingRedisSaver)
        client = redis.Redis.from_url(redis_url)
        graph = build_graph(inner, InMemoryStore())
        thread, other = f"rp-{uuid.uuid4().hex}", f"rp-{uuid.uuid4().hex}"
        _turns(graph, thread, 4)
        _turns(graph, other, 1)
        other_keys = _keys(client, other)
        ids = [c.config["configurable"]["checkpoint_id"] for c in inner.list(_config(thread))]
        kept, dropped = ids[:3], ids[3:]
        assert dropped
        before = _keys(client, thread)
        assert any(d in k and "write" in k for d in dropped for k in before)

        inner.prune([thread], keep_last=3)

        after = _keys(client, thread)
        assert not [k for k in after if any(d in k for d in dropped)]
        for checkpoint_id in kept:  # kept checkpoints keep their writes and registries
            assert {k for k in after if checkpoint_id in k} == {
                k for k in before if checkpoint_id in k
            }
        assert [
            c.config["configurable"]["checkpoint_id"] for c in inner.list(_config(thread))
        ] == kept
        assert _keys(client, other) == other_keys
        state = graph.get_state(_config(thread)).values
        assert [m.content for m in state["messages"] if isinstance(m, HumanMessage)] == [
            f"turn {i}" for i in range(4)
        ]


async def test_async_prune_to_zero_removes_the_latest_pointer(redis_url: str) -> None:
    async with aopen_checkpointer(redis_url, SETTINGS) as saver:
        inner = saver.inner
        assert isinstance(inner, AsyncListingRedisSaver)
        client = redis.Redis.from_url(redis_url)
        graph = build_graph(inner, InMemoryStore())
        thread = f"rp-{uuid.uuid4().hex}"
        for i in range(2):
            await graph.ainvoke({"messages": [HumanMessage(f"turn {i}")]}, _config(thread))
        assert any("latest" in k for k in _keys(client, thread))

        await inner.aprune([thread], keep_last=1)
        assert len([c async for c in inner.alist(_config(thread))]) == 1
        assert any("latest" in k for k in _keys(client, thread))

        await inner.aprune([thread], strategy="delete")
        assert _keys(client, thread) == set()
        assert await inner.aget_tuple(_config(thread)) is None


def test_prune_rejects_what_upstream_rejects(redis_url: str) -> None:
    with open_checkpointer(redis_url, SETTINGS) as saver:
        with pytest.raises(ValueError, match="keep_last"):
            saver.inner.prune(["t"], keep_last=-1)
        with pytest.raises(ValueError, match="max_results"):
            saver.inner.prune(["t"], max_results=0)
        saver.inner.prune([])  # no threads: nothing to do


def test_loading_messages_resolves_each_class_once(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading a checkpoint does not retry a failing import per message (upstream tries the
    legacy `langchain.schema.messages` path for each one), and the messages come back whole."""
    with open_checkpointer(redis_url, SETTINGS) as saver:
        inner = saver.inner
        thread = f"rs-{uuid.uuid4().hex}"
        graph = build_graph(inner, InMemoryStore())
        _turns(graph, thread, 3)
        inner.get_tuple(_config(thread))  # classes resolved here, once

        imports: list[str] = []
        real_import = importlib.import_module

        def counting_import(name: str, *args: Any) -> Any:
            imports.append(name)
            return real_import(name, *args)

        monkeypatch.setattr(importlib, "import_module", counting_import)
        loaded = inner.get_tuple(_config(thread))
        assert loaded is not None
        # A module not yet imported means a search of the file system: none per load.
        assert [name for name in imports if name not in sys.modules] == []
        messages = loaded.checkpoint["channel_values"]["messages"]
        assert [type(m) for m in messages] == [HumanMessage, AIMessage] * 3
        assert [m.content for m in messages[::2]] == ["turn 0", "turn 1", "turn 2"]
        assert all(m.id for m in messages)


def test_unknown_constructor_paths_still_fail_the_same_way(redis_url: str) -> None:
    with open_checkpointer(redis_url, SETTINGS) as saver:
        serde = saver.inner.serde
        envelope = {"lc": 1, "type": "constructor", "id": ["no_such_pkg", "Thing"], "kwargs": {}}
        for _ in range(2):  # the second answer comes from the cache
            with pytest.raises(ValueError, match="Cannot import Thing"):
                serde._constructor_class(envelope)
