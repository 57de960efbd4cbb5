"""The built-in agent's graph with a tool step that takes a while, for the kill -9 loop.

The memory tools run in a few milliseconds, so a kill rarely lands between a tool call
being checkpointed and its result. Here the tool step waits first, as a slow tool would:
a kill during that wait leaves the call unanswered in the thread's state.
"""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig
from langgraph.graph import START, StateGraph

from agent.pieces import (
    Context,
    InputState,
    State,
    call_model,
    execute_tools,
    route_model_output,
    route_turn,
    summarize_conversation,
)

#: How long the tool step waits before it executes the calls.
TOOL_SECONDS = 0.3


def make_graph(
    chat_model: BaseChatModel | None = None, tools: Any = ()
) -> StateGraph[Any, Any, Any, Any]:
    """The built-in agent (the same nodes and routes) with a slow tool step."""
    run_tools = execute_tools(tools, name="save_memories")

    async def save_memories(state: State, config: RunnableConfig) -> dict[str, Any]:
        await asyncio.sleep(TOOL_SECONDS)
        return await run_tools.ainvoke(state, config)

    builder = StateGraph(State, context_schema=Context, input_schema=InputState)
    builder.add_node(summarize_conversation(chat_model))
    builder.add_node(call_model(chat_model, tools=tools))
    builder.add_node("save_memories", save_memories)
    builder.add_conditional_edges(START, route_turn)
    builder.add_edge("summarize_conversation", "call_model")
    builder.add_conditional_edges("call_model", route_model_output)
    builder.add_conditional_edges("save_memories", route_turn)
    return builder
