"""The Redis checkpointer's own paths: its prune and its reads, against upstream's."""

from __future__ import annotations

import importlib
import operator
import sys
import uuid
from typing import Annotated, Any

import pytest
import redis
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.checkpoint.redis import RedisSaver
from langgraph.graph import START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.store.memory import InMemoryStore
from langgraph.types import interrupt
from typing_extensions import TypedDict

from agent import build_graph
from memory.settings import Settings
from memory.stores.factory import aopen_checkpointer, open_checkpointer
from memory.stores.redis_saver import AsyncListingRedisSaver, ListingRedisSaver

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


def _same(ours: Any, theirs: Any) -> None:
    assert ours is not None and theirs is not None
    assert ours.config == theirs.config
    assert ours.parent_config == theirs.parent_config
    assert ours.metadata == theirs.metadata
    assert ours.checkpoint == theirs.checkpoint
    assert ours.pending_writes == theirs.pending_writes


class _Interrupting(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    done: Annotated[list[str], operator.add]


def _interrupting_graph(checkpointer: Any) -> Any:
    """Two parallel nodes, one of which stops for a human: its sibling's writes stay pending."""

    def ask(state: _Interrupting) -> dict[str, Any]:
        answer = interrupt("approve?")
        return {"done": [f"ask:{answer}"]}

    def work(state: _Interrupting) -> dict[str, Any]:
        return {"done": ["work"], "messages": [AIMessage("worked")]}

    builder = StateGraph(_Interrupting)
    builder.add_node("ask", ask)
    builder.add_node("work", work)
    builder.add_edge(START, "ask")
    builder.add_edge(START, "work")
    return builder.compile(checkpointer=checkpointer)


def test_get_tuple_reads_what_upstream_reads(redis_url: str) -> None:
    """Latest, by id, with pending writes and an interrupt: the same tuple as upstream's."""
    with open_checkpointer(redis_url, SETTINGS) as saver:
        inner = saver.inner
        upstream = RedisSaver(redis_client=inner._redis)
        upstream.setup()
        thread = f"rg-{uuid.uuid4().hex}"
        graph = build_graph(inner, InMemoryStore())
        # Sync durability: upstream's sync reader trusts the checkpoint's `has_writes` flag,
        # which a put racing its own writes can leave stale; ours reads the registry.
        for i in range(2):
            graph.invoke(
                {"messages": [HumanMessage(f"turn {i}")]}, _config(thread), durability="sync"
            )
        paused = f"rg-{uuid.uuid4().hex}"
        _interrupting_graph(inner).invoke(
            {"messages": [HumanMessage("go")]}, _config(paused), durability="sync"
        )

        latest = inner.get_tuple(_config(paused))
        assert latest is not None
        assert {channel for _, channel, _ in latest.pending_writes} >= {"done", "__interrupt__"}
        _same(latest, upstream.get_tuple(_config(paused)))
        for thread_id in (thread, paused):
            for item in inner.list(_config(thread_id)):
                _same(inner.get_tuple(item.config), upstream.get_tuple(item.config))
        _same(inner.get_tuple(_config(thread)), upstream.get_tuple(_config(thread)))
        assert inner.get_tuple(_config(f"rg-{uuid.uuid4().hex}")) is None
        missing = {"configurable": {**_config(thread)["configurable"], "checkpoint_id": "nope"}}
        assert inner.get_tuple(missing) is None


async def test_async_get_tuple_reads_what_upstream_reads(redis_url: str) -> None:
    async with aopen_checkpointer(redis_url, SETTINGS) as saver:
        inner = saver.inner
        upstream = RedisSaver.from_conn_string(redis_url)
        thread = f"rg-{uuid.uuid4().hex}"
        paused = f"rg-{uuid.uuid4().hex}"
        await _interrupting_graph(inner).ainvoke(
            {"messages": [HumanMessage("go")]}, _config(paused), durability="sync"
        )
        graph = build_graph(inner, InMemoryStore())
        await graph.ainvoke(
            {"messages": [HumanMessage("hello")]}, _config(thread), durability="sync"
        )
        with upstream as reader:
            reader.setup()
            for thread_id in (thread, paused):
                _same(
                    await inner.aget_tuple(_config(thread_id)), reader.get_tuple(_config(thread_id))
                )
                async for item in inner.alist(_config(thread_id)):
                    _same(await inner.aget_tuple(item.config), reader.get_tuple(item.config))
        assert await inner.aget_tuple(_config(f"rg-{uuid.uuid4().hex}")) is None
