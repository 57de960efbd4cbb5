"""The agent's pieces, to build a graph of your own that memory-agent can serve.

A graph built from them keeps every session guarantee (ownership, one run per thread,
a bounded window, a complete transcript) when served by `memory-agent serve` with
`MEMORY_AGENT_GRAPH=package.module:attribute`. What it needs:

- **State**: `agent.state.State` or a subclass (`class MyState(State): cart: list[str]`).
  It holds `messages` (the working window), `summary`, `transcript_len` and `recorded_id`
  (the transcript's length and its newest recorded message) and `remaining_steps`.
- **Context**: `context_schema=Context` (or a subclass); the session service passes the
  user, the tenant, the model and the token budget in it.
- **A node named `call_model`**: the session service adds messages as that node and
  streams reply tokens from it. `call_model(...)` below is one.
- **Recording**: every message must be recorded in the transcript as it enters the state.
  The nodes made here record what they add; after a node of your own that adds messages,
  add `record_messages()`. The server refuses a graph with no recording node at start.

The nodes (each a factory returning a node named as shown; pass `name=` to rename):

- `summarize_conversation(chat_model=None)`: folds the oldest messages into `summary`
  when the window is over `Context.token_budget`, never between a tool call and its results.
- `call_model(chat_model=None, tools=(), system_prompt=None)`: assembles the prompt
  (`{user_memories}`, `{session_memories}` and `{summary}` filled in the system prompt),
  offers the memory tools and `tools`, and calls the model.
- `execute_tools(tools=())`: runs the last reply's tool calls: memory tools into their
  namespaces, the application's tools with a per-call timeout, failures as error results.
- `record_messages()`: records whatever entered the state since the last recording.

Routers: `route_turn` (START and after tools: `summarize_conversation` when over budget,
else `call_model`) and `route_model_output` (`save_memories` when the reply calls tools,
else `__end__`; map it to your tool node's name).

Example::

    from langgraph.graph import END, START, StateGraph
    from agent.pieces import (
        Context, State, call_model, execute_tools, route_model_output, route_turn,
        summarize_conversation,
    )

    builder = StateGraph(State, context_schema=Context)
    builder.add_node(summarize_conversation())
    builder.add_node(call_model(tools=[lookup], system_prompt=PROMPT))
    builder.add_node(execute_tools([lookup]))
    builder.add_conditional_edges(START, route_turn)
    builder.add_edge("summarize_conversation", "call_model")
    builder.add_conditional_edges(
        "call_model", route_model_output, {"save_memories": "execute_tools", "__end__": END}
    )
    builder.add_conditional_edges("execute_tools", route_turn)
"""

from agent.context import Context
from agent.graph import (
    call_model,
    execute_tools,
    record_messages,
    route_model_output,
    route_turn,
    summarize_conversation,
)
from agent.loading import AppConfigError, check_graph
from agent.namespaces import session_memories, user_memories
from agent.prompts import SYSTEM_PROMPT
from agent.state import InputState, State
from agent.tools import MEMORY_TOOLS, as_tools, delete_memory, save_memory, scope_namespace

__all__ = [
    "MEMORY_TOOLS",
    "SYSTEM_PROMPT",
    "AppConfigError",
    "Context",
    "InputState",
    "State",
    "as_tools",
    "call_model",
    "check_graph",
    "delete_memory",
    "execute_tools",
    "record_messages",
    "route_model_output",
    "route_turn",
    "save_memory",
    "scope_namespace",
    "session_memories",
    "summarize_conversation",
    "user_memories",
]
