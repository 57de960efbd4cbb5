"""The stock equivalent of the agent: same graph shape, full message list, no summarisation."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from langchain_core.messages import AIMessage, AnyMessage, SystemMessage, ToolMessage
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Checkpointer
from typing_extensions import TypedDict

from agent import prompts
from agent.model import load_chat_model
from agent.tools import MEMORY_TOOLS


class StockState(TypedDict):
    """The whole conversation, re-stored by every checkpoint as stock LangGraph does."""

    messages: Annotated[list[AnyMessage], add_messages]


_SYSTEM = prompts.SYSTEM_PROMPT.format(
    user_memories=prompts.NONE, session_memories=prompts.NONE, summary=prompts.NONE
)


def summarize_conversation(state: StockState) -> dict[str, Any]:
    """No summarisation: the node exists only to keep the graph shape."""
    return {}


def route_turn(state: StockState) -> Literal["summarize_conversation", "call_model"]:
    """The agent's entry route; with no summarisation there is never anything to fold."""
    return "call_model"


def call_model(state: StockState) -> dict[str, Any]:
    """Send the whole conversation to the model."""
    model = load_chat_model("offline").bind_tools(MEMORY_TOOLS)
    return {"messages": [model.invoke([SystemMessage(_SYSTEM), *state["messages"]])]}


def save_memories(state: StockState) -> dict[str, Any]:
    """Acknowledge tool calls (the stock graph has no store)."""
    last = state["messages"][-1]
    calls = last.tool_calls if isinstance(last, AIMessage) else []
    return {"messages": [ToolMessage("saved", tool_call_id=c["id"]) for c in calls]}


def route_model_output(state: StockState) -> Literal["save_memories", "__end__"]:
    """Execute tool calls, or end the turn."""
    last = state["messages"][-1]
    if isinstance(last, AIMessage) and last.tool_calls:
        return "save_memories"
    return END


def build_stock_graph(checkpointer: Checkpointer = None) -> CompiledStateGraph:
    """Compile the stock graph with a stock saver (or none)."""
    builder = StateGraph(StockState)
    builder.add_node("summarize_conversation", summarize_conversation)
    builder.add_node("call_model", call_model)
    builder.add_node("save_memories", save_memories)
    builder.add_conditional_edges(START, route_turn)
    builder.add_edge("summarize_conversation", "call_model")
    builder.add_conditional_edges("call_model", route_model_output)
    builder.add_conditional_edges("save_memories", route_turn)
    return builder.compile(checkpointer=checkpointer, name="stock")


def stock_saver(saver: BaseCheckpointSaver) -> BaseCheckpointSaver:
    """The upstream saver class over the connection the factory opened for `saver`.

    The factory's savers are the project's (retention, keyed blob reads on Postgres, fewer
    round trips on Redis); the stock side of the comparison runs LangGraph's own classes.
    """
    from langgraph.checkpoint.postgres import PostgresSaver
    from langgraph.checkpoint.redis import RedisSaver

    from memory.stores.retention import RetentionSaver

    if isinstance(saver, RetentionSaver):
        saver = saver.inner
    if isinstance(saver, PostgresSaver):
        return PostgresSaver(saver.conn)
    if isinstance(saver, RedisSaver):
        stock = RedisSaver(redis_client=saver._redis)
        stock.setup()
        return stock
    return saver


async def astock_saver(saver: BaseCheckpointSaver) -> BaseCheckpointSaver:
    """`stock_saver` for the async savers."""
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from langgraph.checkpoint.redis.aio import AsyncRedisSaver

    from memory.stores.retention import RetentionSaver

    if isinstance(saver, RetentionSaver):
        saver = saver.inner
    if isinstance(saver, AsyncPostgresSaver):
        return AsyncPostgresSaver(saver.conn)
    if isinstance(saver, AsyncRedisSaver):
        stock = AsyncRedisSaver(redis_client=saver._redis)
        await stock.asetup()
        return stock
    return saver
