"""The application's tools beside the memory tools, on every backend: results recorded,
kept with their calls through summarisation, failures and timeouts as error results."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from langchain_core.messages import AIMessage

from agent import Context, build_graph
from agent.loading import AppConfigError, graph_factory
from agent.namespaces import Owner
from memory.sessions import SessionManager
from memory.stores.factory import aopen_backends
from tests.owngraph import TOOLS
from tests.scripted import ScriptedChatModel


@pytest.fixture
async def backends(backend_url: str) -> AsyncIterator:
    async with aopen_backends(backend_url) as opened:
        yield opened


def _call(call_id: str, name: str, **args: object) -> dict:
    return {"id": call_id, "name": name, "args": args}


def manager(backends, model, *, budget: int = 2000, timeout: float = 30.0) -> SessionManager:
    graph = build_graph(backends.checkpointer, backends.store, chat_model=model, tools=TOOLS)
    context = Context(token_budget=budget, tool_timeout_seconds=timeout)
    return SessionManager(graph, context=context)


async def test_tool_result_is_recorded_in_the_transcript(backends, owner: Owner) -> None:
    model = ScriptedChatModel(
        replies=[
            AIMessage("", tool_calls=[_call("c1", "order_status", order_id="A-1")]),
            AIMessage("Two croissants at 9."),
        ]
    )
    sessions = manager(backends, model)
    result = await sessions.arun(owner, "order", [{"role": "user", "content": "my order A-1?"}])
    assert result.reply == "Two croissants at 9."
    items, total = await sessions.aget_messages(owner, "order")
    assert total == 4
    assert [m["role"] for m in items] == ["user", "assistant", "tool", "assistant"]
    assert items[1]["tool_calls"][0]["name"] == "order_status"
    assert items[2]["tool_call_id"] == "c1"
    assert items[2]["content"] == "two croissants, ready at 9:00"
    assert items[2]["status"] == "success"
    # The model saw the result on its second call.
    assert model.prompts[1][-1].content == "two croissants, ready at 9:00"


async def test_failure_and_timeout_become_error_results(backends, owner: Owner) -> None:
    calls = [
        _call("c1", "broken_oven", temperature=250),
        _call("c2", "slow_supplier", item="rye flour"),
        _call("c3", "save_memory", key="name", content="Name is Ana"),
        _call("c4", "no_such_tool"),
        _call("c5", "order_status", order_id="A-1"),
    ]
    model = ScriptedChatModel(replies=[AIMessage("", tool_calls=calls), AIMessage("Done.")])
    sessions = manager(backends, model, timeout=0.3)
    result = await sessions.arun(owner, "oven", [{"role": "user", "content": "bake"}])
    assert result.reply == "Done."
    tools = [m for m in result.messages if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in tools] == ["c1", "c2", "c3", "c4", "c5"]
    assert [m["status"] for m in tools] == ["error", "error", "success", "error", "success"]
    assert "RuntimeError: the oven is on fire at 250" in tools[0]["content"]
    assert "did not finish within 0.3 s" in tools[1]["content"]
    assert "unknown tool 'no_such_tool'" in tools[3]["content"]
    assert (await sessions.aget_memory(owner, "name"))["value"] == "Name is Ana"
    _, total = await sessions.aget_messages(owner, "oven")
    assert total == 8


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_sync_runs_execute_tools_with_a_timeout(kind: str, tmp_path, owner: Owner) -> None:
    from memory.stores.factory import open_backends

    url = "memory://" if kind == "memory" else f"sqlite:///{tmp_path / 'agent.sqlite'}"
    calls = [_call("c1", "slow_supplier", item="rye"), _call("c2", "order_status", order_id="B")]
    model = ScriptedChatModel(replies=[AIMessage("", tool_calls=calls), AIMessage("Sorry.")])
    with open_backends(url) as backends:
        sessions = manager(backends, model, timeout=0.3)
        result = sessions.run(owner, "sync", [{"role": "user", "content": "rye?"}])
    tools = [m for m in result.messages if m["role"] == "tool"]
    assert [m["status"] for m in tools] == ["error", "success"]
    assert "did not finish within 0.3 s" in tools[0]["content"]
    assert tools[1]["content"] == "no order B"


async def test_summarisation_keeps_tool_results_with_their_calls(backends, owner: Owner) -> None:
    model = ScriptedChatModel()
    sessions = manager(backends, model, budget=300)
    for i in range(12):
        model.replies += [
            AIMessage("", tool_calls=[_call(f"c{i}", "order_status", order_id="A-1")]),
            AIMessage(f"answer {i} " + "crumb " * 20),
        ]
        await sessions.arun(
            owner, "long", [{"role": "user", "content": f"order {i}? " + "please " * 20}]
        )
        state = (await sessions.graph.aget_state(sessions.config(owner, "long"))).values
        window = state["messages"]
        called = {c["id"] for m in window if isinstance(m, AIMessage) for c in m.tool_calls}
        answered = [m.tool_call_id for m in window if m.type == "tool"]
        assert set(answered) == called, "a tool result lost its call, or a call its result"
        assert window[0].type == "human"
    assert model.summaries > 0
    _, total = await sessions.aget_messages(owner, "long")
    assert total == 12 * 4
    for prompt in model.prompts:  # what the provider would be sent: every call answered
        ids = [m.tool_call_id for m in prompt if m.type == "tool"]
        calls = [c["id"] for m in prompt if isinstance(m, AIMessage) for c in m.tool_calls]
        assert ids == calls


def test_bad_tools_setting_names_the_value() -> None:
    with pytest.raises(AppConfigError, match=r"MEMORY_AGENT_TOOLS='tests\.owngraph:NOT_A_TOOL'"):
        graph_factory(tools="tests.owngraph:NOT_A_TOOL")
    with pytest.raises(AppConfigError, match=r"module 'tests\.nowhere' not found"):
        graph_factory(tools="tests.nowhere:TOOLS")
    with pytest.raises(AppConfigError, match=r"has no attribute 'MISSING'"):
        graph_factory(tools="tests.owngraph:MISSING")


def test_graphs_without_the_recording_piece_are_refused() -> None:
    with pytest.raises(AppConfigError, match="no summary, transcript_len, recorded_id") as info:
        graph_factory(graph="tests.owngraph:no_transcript")
    assert "agent.state.State" in str(info.value)
    with pytest.raises(AppConfigError, match="record_messages") as info:
        graph_factory(graph="tests.owngraph:no_recording")
    assert "none of its nodes records the transcript" in str(info.value)
