"""Checkpoint retention keeps the latest K checkpoints per thread, on every backend."""

from __future__ import annotations

import operator
import uuid
from typing import Annotated, Any

import pytest
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, StateGraph
from langgraph.store.memory import InMemoryStore
from typing_extensions import TypedDict

from agent import build_graph
from memory.settings import Settings
from memory.stores.factory import aopen_checkpointer, open_checkpointer
from memory.stores.retention import (
    RetentionSaver,
    UnsupportedSaverError,
    akeep_latest,
    keep_latest,
    with_retention,
)

SETTINGS = Settings(embeddings="none")


def _config(thread_id: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id}}


def _count(saver: BaseCheckpointSaver, thread_id: str) -> int:
    return len(list(saver.list(_config(thread_id))))


async def _acount(saver: BaseCheckpointSaver, thread_id: str) -> int:
    return len([c async for c in saver.alist(_config(thread_id))])


def _turn(i: int) -> dict[str, Any]:
    return {"messages": [HumanMessage(f"message number {i} about the weather")]}


async def test_wrapper_bounds_checkpoints_and_keeps_state(backend_url: str) -> None:
    async with aopen_checkpointer(backend_url, SETTINGS) as inner:
        saver = RetentionSaver(inner, keep=5, every=3)
        graph = build_graph(saver, InMemoryStore())
        thread, other = f"ret-{uuid.uuid4().hex}", f"ret-{uuid.uuid4().hex}"
        await graph.ainvoke(_turn(0), _config(other))
        other_before = await _acount(inner, other)
        for i in range(12):
            await graph.ainvoke(_turn(i), _config(thread))

        retained = await _acount(inner, thread)
        assert 5 <= retained <= 5 + 3
        assert await _acount(inner, other) == other_before  # other threads are untouched
        state = await graph.aget_state(_config(thread))
        assert state.values["transcript_len"] == 24  # one question and one reply per turn
        assert state.values["messages"][-1].type == "ai"
        history = [s async for s in graph.aget_state_history(_config(thread))]
        assert len(history) == retained
        assert (
            history[0].config["configurable"]["checkpoint_id"]
            == (state.config["configurable"]["checkpoint_id"])
        )


async def test_time_travel_and_update_state_within_window(backend_url: str) -> None:
    async with aopen_checkpointer(backend_url, SETTINGS) as inner:
        graph = build_graph(RetentionSaver(inner, keep=8, every=4), InMemoryStore())
        thread = f"tt-{uuid.uuid4().hex}"
        for i in range(6):
            await graph.ainvoke(_turn(i), _config(thread))
        history = [s async for s in graph.aget_state_history(_config(thread))]
        earlier = next(s for s in history if s.next == ("call_model",))
        assert earlier.values["messages"][-1].type == "human"  # that turn's input, unrecorded
        forked = await graph.ainvoke(None, earlier.config)
        # Replaying from there records the question and a new reply at the same places.
        assert forked["transcript_len"] == earlier.values["transcript_len"] + 2
        assert forked["messages"][-2].id == earlier.values["messages"][-1].id

        await graph.aupdate_state(_config(thread), {"summary": "edited"}, as_node="call_model")
        assert (await graph.aget_state(_config(thread))).values["summary"] == "edited"


def test_keep_latest_sync_prunes_exactly_to_k(backend_url: str) -> None:
    with open_checkpointer(backend_url, SETTINGS) as saver:
        graph = build_graph(saver, InMemoryStore())
        thread, other = f"kl-{uuid.uuid4().hex}", f"kl-{uuid.uuid4().hex}"
        for i in range(5):
            graph.invoke(_turn(i), _config(thread))
        graph.invoke(_turn(0), _config(other))
        before = graph.get_state(_config(thread)).values
        other_before = _count(saver, other)
        assert _count(saver, thread) > 3

        keep_latest(saver, [thread], 3)

        assert _count(saver, thread) == 3
        assert _count(saver, other) == other_before
        after = graph.get_state(_config(thread)).values
        assert [m.id for m in after["messages"]] == [m.id for m in before["messages"]]
        assert after["transcript_len"] == before["transcript_len"]
        graph.invoke(_turn(9), _config(thread))  # the thread goes on after pruning
        assert graph.get_state(_config(thread)).values["transcript_len"] == 12


class _Fan(TypedDict):
    done: Annotated[list[str], operator.add]


async def test_resume_after_crash_keeps_pending_writes(backend_url: str) -> None:
    """A run that fails mid-step resumes from the latest checkpoint's pending writes."""
    calls: dict[str, int] = {"a": 0, "b": 0}

    def node_a(state: _Fan) -> dict[str, Any]:
        calls["a"] += 1
        return {"done": ["a"]}

    def node_b(state: _Fan) -> dict[str, Any]:
        calls["b"] += 1
        if calls["b"] == 1:
            raise RuntimeError("crash")
        return {"done": ["b"]}

    builder = StateGraph(_Fan)
    builder.add_node("a", node_a)
    builder.add_node("b", node_b)
    builder.add_edge(START, "a")
    builder.add_edge(START, "b")
    async with aopen_checkpointer(backend_url, SETTINGS) as inner:
        graph = builder.compile(checkpointer=RetentionSaver(inner, keep=1, every=1))
        config = _config(f"crash-{uuid.uuid4().hex}")
        with pytest.raises(RuntimeError, match="crash"):
            await graph.ainvoke({"done": []}, config)
        await akeep_latest(inner, [config["configurable"]["thread_id"]], 1)
        result = await graph.ainvoke(None, config)
        assert sorted(result["done"]) == ["a", "b"]
        assert calls == {"a": 1, "b": 2}  # a's pending write survived the prune


async def test_delete_thread_through_wrapper(backend_url: str) -> None:
    async with aopen_checkpointer(backend_url, SETTINGS) as inner:
        saver = with_retention(inner, keep=2)
        graph = build_graph(saver, InMemoryStore())
        thread = f"del-{uuid.uuid4().hex}"
        await graph.ainvoke(_turn(0), _config(thread))
        await saver.adelete_thread(thread)
        assert await _acount(inner, thread) == 0


def test_invalid_arguments_are_rejected() -> None:
    saver = RetentionSaver(InMemorySaver())
    with pytest.raises(ValueError, match="keep must be a positive"):
        RetentionSaver(saver.inner, keep=0)
    with pytest.raises(TypeError, match="not a str"):
        keep_latest(saver, "thread", 2)
    with pytest.raises(UnsupportedSaverError, match="no retention"):
        keep_latest(object(), ["t"], 2)  # type: ignore[arg-type]
    assert with_retention(saver.inner, keep=None) is saver.inner


async def test_wrong_twin_fails_loudly(tmp_path: Any) -> None:
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "a.sqlite")) as saver:
        with pytest.raises(UnsupportedSaverError, match="akeep_latest"):
            keep_latest(saver, ["t"], 2)
    # The factory's SQLite saver runs its statements on the caller's thread: both twins work.
    async with aopen_checkpointer(f"sqlite:///{tmp_path / 'c.sqlite'}", SETTINGS) as saver:
        keep_latest(saver, ["t"], 2)
        await akeep_latest(saver, ["t"], 2)
    with (
        open_checkpointer(f"sqlite:///{tmp_path / 'b.sqlite'}", SETTINGS) as saver,
        pytest.raises(UnsupportedSaverError, match="keep_latest"),
    ):
        await akeep_latest(saver, ["t"], 2)
