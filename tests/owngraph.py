"""An application's tools and graphs for the tests to name in MEMORY_AGENT_TOOLS/GRAPH."""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from langchain_core.tools import tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.types import interrupt

from agent.pieces import (
    Context,
    State,
    call_model,
    execute_tools,
    record_messages,
    route_model_output,
    route_turn,
    summarize_conversation,
)

ORDERS = {"A-1": "two croissants, ready at 9:00"}


def order_status(order_id: str) -> str:
    """Look up an order by its id and say what is in it and when it is ready."""
    return ORDERS.get(order_id, f"no order {order_id}")


@tool
def broken_oven(temperature: int) -> str:
    """Set the oven's temperature."""
    raise RuntimeError(f"the oven is on fire at {temperature}")


async def slow_supplier(item: str) -> str:
    """Ask the supplier whether an item is in stock (slow)."""
    await asyncio.sleep(5)
    return f"{item}: in stock"


TOOLS = [order_status, broken_oven, slow_supplier]
NOT_A_TOOL = 42


class BakeryState(State):
    """The pieces' state with a field of the application's own."""

    visits: int


def make_graph(chat_model: BaseChatModel | None = None, tools: Any = ()) -> StateGraph:
    """A graph of the application's own, from the pieces, with its own tool node name."""
    mine = [*TOOLS, *tools]
    builder = StateGraph(BakeryState, context_schema=Context)
    builder.add_node(summarize_conversation(chat_model))
    builder.add_node(call_model(chat_model, tools=mine, system_prompt="Bakery. {summary}"))
    builder.add_node(execute_tools(mine, name="tools"))
    builder.add_conditional_edges(START, route_turn)
    builder.add_edge("summarize_conversation", "call_model")
    builder.add_conditional_edges(
        "call_model", route_model_output, {"save_memories": "tools", "__end__": END}
    )
    builder.add_conditional_edges("tools", route_turn)
    return builder


#: The same graph compiled, without persistence (what `langgraph.json` could point at).
graph = make_graph().compile()


def _reply(state: MessagesState) -> dict[str, Any]:
    return {"messages": [AIMessage("hello")]}


#: A graph whose state has no transcript fields.
no_transcript = StateGraph(MessagesState)
no_transcript.add_node("call_model", _reply)
no_transcript.add_edge(START, "call_model")


#: A graph on the pieces' state whose own model node never records the transcript.
no_recording = StateGraph(State, context_schema=Context)
no_recording.add_node("call_model", _reply)
no_recording.add_edge(START, "call_model")


def _review(state: State) -> dict[str, Any]:
    """Ask a person twice before the reply stands; what they said is added as a message."""
    first = interrupt({"question": "Send this reply?", "reply": state["messages"][-1].content})
    second = interrupt({"question": "Sure?"})
    return {"messages": [AIMessage(f"reviewed: {first} / {second}")]}


def make_reviewed_graph(chat_model: BaseChatModel | None = None, tools: Any = ()) -> StateGraph:
    """The pieces' model node, then a review node that interrupts twice in one run."""
    builder = StateGraph(State, context_schema=Context)
    builder.add_node(summarize_conversation(chat_model))
    builder.add_node(call_model(chat_model, tools=[*tools]))
    builder.add_node(execute_tools([*tools], name="save_memories"))
    builder.add_node("review", _review)
    builder.add_node(record_messages())
    builder.add_conditional_edges(START, route_turn)
    builder.add_edge("summarize_conversation", "call_model")
    builder.add_conditional_edges(
        "call_model", route_model_output, {"save_memories": "save_memories", "__end__": "review"}
    )
    builder.add_conditional_edges("save_memories", route_turn)
    builder.add_edge("review", "record_messages")
    builder.add_edge("record_messages", END)
    return builder
