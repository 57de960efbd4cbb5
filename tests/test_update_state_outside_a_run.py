"""Regression: `update_state` runs the entry router outside a run, where no runtime exists."""

from __future__ import annotations

from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.store.memory import InMemoryStore

from agent import build_graph


def test_update_state_as_the_entry_node_routes_without_a_runtime() -> None:
    graph = build_graph(InMemorySaver(), InMemoryStore())
    config = {"configurable": {"thread_id": "t"}}
    graph.invoke({"messages": [HumanMessage("hi")]}, config)
    graph.update_state(config, {"messages": [HumanMessage("edited")]}, as_node="__start__")
    snapshot = graph.get_state(config)
    assert snapshot.next == ("call_model",)
    assert snapshot.values["messages"][-1].content == "edited"
