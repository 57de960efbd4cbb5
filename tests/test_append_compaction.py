"""Appends without runs keep the working window within the token budget, on every backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from langchain_core.messages import AIMessage

from agent import Context, build_graph
from agent.namespaces import Owner
from memory.sessions import SessionManager
from memory.settings import Settings
from memory.stores import aopen_backends, open_backends
from tests.scripted import ScriptedChatModel

_BUDGET = 300
_NOTES = 40


@asynccontextmanager
async def _manager(url: str, twin: bool, model: ScriptedChatModel) -> AsyncIterator[SessionManager]:
    settings = Settings(embeddings="none")
    context = Context(token_budget=_BUDGET)
    if twin:
        async with aopen_backends(url, settings=settings) as backends:
            graph = build_graph(backends.checkpointer, backends.store, chat_model=model)
            yield SessionManager(graph, context=context)
    else:
        with open_backends(url, settings=settings) as backends:
            graph = build_graph(backends.checkpointer, backends.store, chat_model=model)
            yield SessionManager(graph, context=context)


def _note(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"note {i}: " + "the order waits at the counter " * 4}]


@pytest.mark.parametrize("twin", [True, False], ids=["async", "sync"])
async def test_appends_fold_the_window_and_keep_the_transcript(
    backend_url: str, owner: Owner, twin: bool
) -> None:
    model = ScriptedChatModel(replies=[AIMessage("hi"), AIMessage("noted")])
    async with _manager(backend_url, twin, model) as sessions:

        async def call(name: str, *args: object) -> object:
            if twin:
                return await getattr(sessions, f"a{name}")(*args)
            return getattr(sessions, name)(*args)

        await call("run", owner, "t1", [{"role": "user", "content": "hello"}])
        for i in range(_NOTES):
            total = await call("add_messages", owner, "t1", _note(i))
            assert total == 2 + i + 1
        _record, snapshot = await call("get_state", owner, "t1")
        window = snapshot.values["messages"]
        # Folded while appending: the window is a few notes, not all of them, and what
        # left it is in the summary; the thread is not left paused or mid-turn.
        assert 0 < len(window) < _NOTES / 2, len(window)
        assert window[-1].content == _note(_NOTES - 1)[0]["content"]
        assert snapshot.values["summary"]
        assert snapshot.next == ()
        assert snapshot.values["transcript_len"] == 2 + _NOTES
        # The appends called the model only to summarise: folds, never a reply.
        assert model.summaries >= 1
        assert len(model.prompts) == 1
        # The transcript keeps every message, in order.
        page, count = await call("get_messages", owner, "t1", 100, 0)
        assert count == 2 + _NOTES
        assert [r["content"] for r in page[2:]] == [_note(i)[0]["content"] for i in range(_NOTES)]
        # A run after the appends answers from the folded window.
        result = await call("run", owner, "t1", [{"role": "user", "content": "and now?"}])
        assert result.reply == "noted"
        assert len(model.prompts[-1]) < _NOTES / 2 + 4
        assert f"summary #{model.summaries}" in str(model.prompts[-1][0].content)
