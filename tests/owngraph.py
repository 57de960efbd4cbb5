"""An application's tools and graphs for the tests to name in MEMORY_AGENT_TOOLS/GRAPH."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, TypedDict

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage, ToolCall
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.tools import tool
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import interrupt

from agent.graph import make_builder
from agent.offline import OfflineChatModel
from agent.offline import _chunks as offline_chunks
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
from agent.transcript import content_text

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


class _CheckState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    checks: int


def _inspect(state: _CheckState) -> dict[str, Any]:
    get_stream_writer()({"checked": len(state["messages"])})
    return {"checks": 1}


#: A subgraph that looks at the reply, says so on the custom stream and keeps a count of
#: its own (not in the parent's state).
_checker = StateGraph(_CheckState)
_checker.add_node("inspect", _inspect)
_checker.add_edge(START, "inspect")
checker = _checker.compile()


def make_checked_graph(chat_model: BaseChatModel | None = None, tools: Any = ()) -> StateGraph:
    """The pieces' model node, then a node that is a graph of its own (a subgraph)."""
    builder = StateGraph(State, context_schema=Context)
    builder.add_node(summarize_conversation(chat_model))
    builder.add_node(call_model(chat_model, tools=[*tools]))
    builder.add_node(execute_tools([*tools], name="save_memories"))
    builder.add_node("check", checker)
    builder.add_node(record_messages())
    builder.add_conditional_edges(START, route_turn)
    builder.add_edge("summarize_conversation", "call_model")
    builder.add_conditional_edges(
        "call_model", route_model_output, {"save_memories": "save_memories", "__end__": "check"}
    )
    builder.add_conditional_edges("save_memories", route_turn)
    builder.add_edge("check", "record_messages")
    builder.add_edge("record_messages", END)
    return builder


#: "where is order A-1?": the order desk's model looks the order up.
_ORDER_ASKED = re.compile(r"\border ([A-Z]-\d+)")


class OrderDeskModel(OfflineChatModel):
    """The offline model, which also calls `order_status` for a message naming an order."""

    def _order_call(self, messages: list[BaseMessage]) -> AIMessage | None:
        last = messages[-1] if messages else None
        found = (
            _ORDER_ASKED.search(content_text(last.content))
            if isinstance(last, HumanMessage)
            else None
        )
        if found is None:
            return None
        call = ToolCall(
            name="order_status",
            args={"order_id": found.group(1)},
            id=f"call_{uuid.uuid4().hex[:12]}",
            type="tool_call",
        )
        return AIMessage("", tool_calls=[call], id=f"order-desk-{uuid.uuid4()}")

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        call = self._order_call(messages)
        if call is None:
            return await super()._agenerate(messages, stop, run_manager, **kwargs)
        return ChatResult(generations=[ChatGeneration(message=call)])

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        call = self._order_call(messages)
        if call is None:
            async for chunk in super()._astream(messages, stop, run_manager, **kwargs):
                yield chunk
            return
        for piece in offline_chunks(call):
            yield ChatGenerationChunk(message=piece)


def make_order_desk() -> StateGraph:
    """The built-in agent with `order_status`, its replies paced over 0.6 s, for a browser
    to watch stream (`MEMORY_AGENT_GRAPH=tests.owngraph:make_order_desk`)."""
    return make_builder(OrderDeskModel(pace_seconds=0.6), tools=[order_status])
