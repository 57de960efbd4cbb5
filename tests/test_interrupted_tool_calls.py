"""Regression: a tool call cut off by a crash never reaches the model unanswered."""

from __future__ import annotations

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.store.memory import InMemoryStore

from agent import build_graph
from tests.scripted import ScriptedChatModel


def test_a_tool_call_left_by_a_killed_run_is_closed_before_the_next_model_call() -> None:
    model = ScriptedChatModel(replies=[AIMessage("first"), AIMessage("second")])
    graph = build_graph(InMemorySaver(), InMemoryStore(), chat_model=model)
    config = {"configurable": {"thread_id": "t"}}
    graph.invoke({"messages": [HumanMessage("hello", id="h1")]}, config)
    # What a process killed after the model's reply and before the tool step leaves behind.
    cut = AIMessage(
        "saving that",
        id="cut",
        tool_calls=[{"id": "c1", "name": "save_memory", "args": {"key": "k", "value": "v"}}],
    )
    graph.update_state(config, {"messages": [cut]}, as_node="call_model")
    assert graph.get_state(config).next == ("save_memories",)

    graph.invoke({"messages": [HumanMessage("are you there?", id="h2")]}, config)

    prompt = model.prompts[-1]
    answered = {m.tool_call_id for m in prompt if isinstance(m, ToolMessage)}
    for message in prompt:
        if isinstance(message, AIMessage):
            assert all(c["id"] in answered for c in message.tool_calls)
    repaired = next(m for m in prompt if m.id == "cut")
    assert "interrupted" in repaired.content and "save_memory" in repaired.content
    state = graph.get_state(config).values["messages"]
    assert next(m for m in state if m.id == "cut").tool_calls == []
    assert state[-1].content == "second"
