"""Every method the README's "Python API" section lists, called, and its async twin too;
the `delete_memory` tool executed by a run."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import BaseMessage
from pydantic import Field

from agent import OfflineChatModel, build_graph
from agent.namespaces import Owner
from memory.errors import NotFoundError
from memory.sessions import SessionManager
from memory.settings import Settings
from memory.stores import aopen_backends, open_backends
from tests import readme

#: Backticked words of the section that are not `SessionManager` methods.
_NOT_METHODS = {"a", "status", "aopen_backends"}


def _documented_methods() -> set[str]:
    """The methods the section lists (its async examples name their sync twins too)."""
    prose = readme.section("Python API").split("```", 2)[2]
    names = set(re.findall(r"`([a-z_]+)`", prose)) - _NOT_METHODS
    return {n.removeprefix("a") if n.startswith("a") and n[1:] in names else n for n in names}


class SeeingModel(OfflineChatModel):
    """The offline model, keeping the system prompt of each agent call."""

    systems: list[str] = Field(default_factory=list)

    def _see(self, messages: list[BaseMessage]) -> None:
        self.systems.append(str(messages[0].content))

    def _generate(self, messages: list[BaseMessage], *args: Any, **kw: Any) -> Any:
        self._see(messages)
        return super()._generate(messages, *args, **kw)

    async def _agenerate(self, messages: list[BaseMessage], *args: Any, **kw: Any) -> Any:
        self._see(messages)
        return await super()._agenerate(messages, *args, **kw)

    def _stream(self, messages: list[BaseMessage], *args: Any, **kw: Any) -> Iterator[Any]:
        self._see(messages)
        yield from super()._stream(messages, *args, **kw)

    async def _astream(
        self, messages: list[BaseMessage], *args: Any, **kw: Any
    ) -> AsyncIterator[Any]:
        self._see(messages)
        async for chunk in super()._astream(messages, *args, **kw):
            yield chunk


Call = Callable[..., Awaitable[Any]]


class Api:
    """One way to call the manager (its sync methods, or their `a` twins), recording which
    documented method each call was."""

    def __init__(self, manager: SessionManager, twin: bool) -> None:
        self.manager = manager
        self.twin = twin
        self.called: set[str] = set()

    async def __call__(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call method `name` (or its async twin) and return what it returns."""
        self.called.add(name)
        if self.twin:
            return await getattr(self.manager, f"a{name}")(*args, **kwargs)
        return getattr(self.manager, name)(*args, **kwargs)

    async def stream(self, *args: Any) -> list[tuple[str, Any]]:
        """Every event of `stream` (or `astream`)."""
        self.called.add("stream")
        if self.twin:
            return [event async for event in self.manager.astream(*args)]
        return list(self.manager.stream(*args))


@asynccontextmanager
async def _manager(url: str, twin: bool, model: SeeingModel) -> AsyncIterator[SessionManager]:
    settings = Settings(embeddings="local")
    if twin:
        async with aopen_backends(url, settings=settings) as backends:
            graph = build_graph(backends.checkpointer, backends.store, chat_model=model)
            yield SessionManager.from_settings(graph, settings)
    else:
        with open_backends(url, settings=settings) as backends:
            graph = build_graph(backends.checkpointer, backends.store, chat_model=model)
            yield SessionManager.from_settings(graph, settings)


def _user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


_EXCHANGE = [
    {"role": "user", "content": "Is order A-1 ready?"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"id": "c1", "name": "order_status", "args": {"order_id": "A-1"}}],
    },
    {"role": "tool", "content": "ready at 9:00", "tool_call_id": "c1", "name": "order_status"},
    {"role": "assistant", "content": "Yes, at 9."},
]


async def _sessions(api: Api, owner: Owner, model: SeeingModel) -> None:
    created = await api("create", owner, "a", {"topic": "bread"})
    assert created["thread_id"] == "a" and (await api("get", owner, "a"))["metadata"] == {
        "topic": "bread"
    }
    assert (await api("get_or_create", owner, "a"))[1] is False
    assert (await api("get_or_create", owner, "b"))[1] is True

    assert "Sam" in (await api("run", owner, "a", _user("My name is Sam."))).reply
    events = await api.stream(owner, "a", _user("What is my name?"))
    assert events[0] == ("thread", "a") and events[-1][0] == "done"
    tokens = "".join(value for kind, value in events if kind == "token")
    assert tokens == events[-1][1].reply == "Your name is Sam."

    total = await api("add_messages", owner, "a", _EXCHANGE)
    items, listed_total = await api("get_messages", owner, "a", 2, total - 2)
    assert listed_total == total and [m["content"] for m in items] == [
        "ready at 9:00",
        "Yes, at 9.",
    ]
    context = await api("recent_context", owner, "a", 2)
    assert context.splitlines()[-1] == "assistant: Yes, at 9."

    assert await api("update_summary", owner, "a", "Sam likes rye bread.") == (
        "Sam likes rye bread."
    )
    assert await api("get_summary", owner, "a") == "Sam likes rye bread."
    record, summary, running = await api("detail", owner, "a")
    assert (summary, running, record["message_count"]) == ("Sam likes rye bread.", False, total)
    await api("run", owner, "a", _user("hello again"))
    assert "Sam likes rye bread." in model.systems[-1]  # the model reads the new summary

    await api("end", owner, "b")
    active, _ = await api("list", owner, status="active")
    ended, _ = await api("list", owner, status="ended")
    assert [s["thread_id"] for s in active] == ["a"] and [s["thread_id"] for s in ended] == ["b"]
    assert (await api("list", owner))[1] == 2

    copied = await api("copy", owner, "a", "c")
    assert copied["thread_id"] == "c" and copied["metadata"] == {"topic": "bread"}
    assert await api("get_messages", owner, "c", 100) == await api("get_messages", owner, "a", 100)
    await api("keep_latest", owner, "c")
    assert (await api("run", owner, "c", _user("What is my name?"))).reply == "Your name is Sam."
    assert (await api("get_messages", owner, "a", 100))[1] == total + 2  # the source stays
    undone = await api("undo", owner, "c", 2)  # the copy's last turn
    assert (undone["removed"], undone["messages"]) == (2, total + 2)
    assert (await api("get_messages", owner, "c", 100))[1] == total + 2


async def _memories(api: Api, owner: Owner) -> None:
    await api("save_memory", owner, "allergy", "allergic to penicillin")
    await api("save_memory", owner, "bread", "likes rye bread")
    await api("save_memory", owner, "cart", ["blue mug"], thread_id="a")
    assert (await api("get_memory", owner, "cart", thread_id="a"))["value"] == ["blue mug"]
    added = [{"op": "add", "path": "/-", "value": "red mug"}]
    await api("patch_memory", owner, "cart", added, thread_id="a")
    assert (await api("get_memory", owner, "cart", thread_id="a"))["value"] == [
        "blue mug",
        "red mug",
    ]
    found = await api("list_memories", owner, query="which antibiotics should I avoid?")
    assert found[0]["key"] == "allergy"
    assert [m["key"] for m in await api("list_memories", owner, thread_id="a")] == ["cart"]
    await api("delete_memory", owner, "allergy")
    with pytest.raises(NotFoundError):
        await api("get_memory", owner, "allergy")
    assert await api("clear_memories", owner, thread_id="a") == 1
    assert await api("clear_memories", owner) >= 2  # bread, and the name the run saved
    assert await api("list_memories", owner) == []


async def _lifecycle(api: Api, owner: Owner) -> None:
    manager = api.manager
    manager.clock = lambda: datetime.now(UTC) + timedelta(days=2)  # past the idle timeout
    assert await api("sweep") >= 1
    assert (await api("get", owner, "a"))["status"] == "ended"
    await api("delete", owner, "a")
    with pytest.raises(NotFoundError):
        await api("get", owner, "a")
    erased = await api("erase", owner)
    assert erased and (await api("list", owner))[1] == 0


@pytest.mark.parametrize("twin", [False, True], ids=["sync", "async"])
async def test_every_listed_method_runs(twin: bool, tmp_path: Path, owner: Owner) -> None:
    model = SeeingModel()
    manager_cm: AbstractAsyncContextManager[SessionManager] = _manager(
        f"sqlite:///{tmp_path / 'api.sqlite'}", twin, model
    )
    async with manager_cm as manager:
        api = Api(manager, twin)
        await _sessions(api, owner, model)
        await _memories(api, owner)
        await _lifecycle(api, owner)
    documented = _documented_methods()
    assert len(documented) >= 20, documented
    assert documented - api.called == set()
    for name in documented:  # each has an async twin
        assert callable(getattr(SessionManager, f"a{name}", None)), name


async def test_the_delete_memory_tool_is_executed(owner: Owner) -> None:
    settings = Settings(database_url="memory://", embeddings="local")
    async with aopen_backends(settings=settings) as backends:
        sessions = SessionManager(build_graph(backends.checkpointer, backends.store))
        await sessions.arun(owner, "t", _user("I'm allergic to penicillin"))
        await sessions.arun(owner, "t", _user("Add blue mug to my cart"))
        assert await sessions.aget_memory(owner, "allergy-penicillin")
        assert await sessions.aget_memory(owner, "cart-blue-mug", thread_id="t")

        for text, key, scope in (
            ("Forget that I'm allergic to penicillin", "allergy-penicillin", "user"),
            ("Remove blue mug from my cart", "cart-blue-mug", "session"),
        ):
            result = await sessions.arun(owner, "t", _user(text))
            (call,) = [c for m in result.messages for c in m.get("tool_calls", [])]
            assert (call["name"], call["args"]) == ("delete_memory", {"key": key, "scope": scope})
            (done,) = [m for m in result.messages if m["role"] == "tool"]
            assert done["status"] == "success" and key in done["content"]
            with pytest.raises(NotFoundError):
                await sessions.aget_memory(
                    owner, key, thread_id="t" if scope == "session" else None
                )
