"""The application's tools and graph, loaded from `MEMORY_AGENT_TOOLS` / `MEMORY_AGENT_GRAPH`."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.tools import BaseTool
from langgraph.graph import StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.store.base import BaseStore
from langgraph.types import Checkpointer

from agent.graph import RECORDS_TRANSCRIPT, build_graph
from agent.tools import ToolSpecError, as_tools

#: What the session service reads from a graph's state.
REQUIRED_CHANNELS = ("messages", "summary", "transcript_len", "recorded_id")
#: The node the session service adds messages as and streams reply tokens from.
MODEL_NODE = "call_model"

#: Compiles a graph with the server's persistence.
GraphFactory = Callable[[Checkpointer, BaseStore | None], CompiledStateGraph]


class AppConfigError(ValueError):
    """`MEMORY_AGENT_TOOLS` or `MEMORY_AGENT_GRAPH` names something that cannot be served."""


def load_object(spec: str, setting: str) -> Any:
    """The attribute `spec` (`package.module:attribute`) names.

    Raises:
        AppConfigError: `spec` is malformed, or its module or attribute is missing.
    """
    module_name, sep, attribute = spec.strip().partition(":")
    if not sep or not module_name or not attribute:
        raise AppConfigError(
            f"{setting}={spec!r}: use 'package.module:attribute', e.g. 'myapp.tools:TOOLS'"
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise AppConfigError(
            f"{setting}={spec!r}: module {module_name!r} not found ({exc}); is its "
            "directory on PYTHONPATH?"
        ) from exc
    except Exception as exc:  # an error inside the user's module, reported with its value
        raise AppConfigError(
            f"{setting}={spec!r}: importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    value = module
    for part in attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError as exc:
            raise AppConfigError(
                f"{setting}={spec!r}: module {module_name!r} has no attribute {attribute!r}"
            ) from exc
    return value


def load_tools(spec: str | None) -> list[BaseTool]:
    """The tools `MEMORY_AGENT_TOOLS` names (none when unset).

    Raises:
        AppConfigError: see `load_object`; or the value is not a tool or a list of tools.
    """
    if not spec:
        return []
    try:
        return as_tools(load_object(spec, "MEMORY_AGENT_TOOLS"))
    except ToolSpecError as exc:
        raise AppConfigError(f"MEMORY_AGENT_TOOLS={spec!r}: {exc}") from exc


def check_graph(graph: CompiledStateGraph, origin: str = "the graph") -> None:
    """Refuse a graph the session service cannot keep its guarantees with.

    Sessions read `messages`, `summary`, `transcript_len` and `recorded_id` from the final
    state, add messages as the node `call_model`, and rely on the transcript being recorded
    as messages enter the state, which the nodes of `agent.pieces` do.

    Raises:
        AppConfigError: what is missing, and how to add it.
    """
    missing = [c for c in REQUIRED_CHANNELS if c not in graph.channels]
    if missing:
        raise AppConfigError(
            f"{origin}: its state has no {', '.join(missing)}: the session service records "
            "the transcript through them. Build it on agent.state.State (e.g. "
            "`class MyState(State): ...`, then `StateGraph(MyState, context_schema=Context)`)"
        )
    nodes = getattr(graph, "builder", None)
    specs = nodes.nodes if isinstance(nodes, StateGraph) else {}
    if MODEL_NODE not in specs:
        raise AppConfigError(
            f"{origin}: it has no node named {MODEL_NODE!r}: the session service adds messages "
            "as that node and streams reply tokens from it. Add "
            "`builder.add_node(agent.pieces.call_model(...))`"
        )
    if not any(getattr(spec.runnable, RECORDS_TRANSCRIPT, False) for spec in specs.values()):
        raise AppConfigError(
            f"{origin}: none of its nodes records the transcript, so sessions would lose "
            "messages. Use the nodes of agent.pieces (call_model, execute_tools, "
            "summarize_conversation record what they add), or add "
            "`agent.pieces.record_messages()` after your own nodes that add messages"
        )


def _call_factory(factory: Callable[..., Any], offered: dict[str, Any]) -> Any:
    """Call `factory` with those of `offered` its signature accepts."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return factory()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return factory(**offered)
    return factory(**{k: v for k, v in offered.items() if k in params})


def graph_factory(
    *,
    tools: str | None = None,
    graph: str | None = None,
    chat_model: BaseChatModel | None = None,
) -> GraphFactory:
    """What the server and the CLI serve: the built-in agent with the application's tools,
    or the application's graph; checked now, compiled later with their persistence.

    Args:
        tools: `MEMORY_AGENT_TOOLS`.
        graph: `MEMORY_AGENT_GRAPH`: a `StateGraph` builder, a compiled graph, or a function
            returning either (called with those of `chat_model` and `tools` it accepts).
        chat_model: A model instance for the built-in agent, or the factory's `chat_model`.

    Raises:
        AppConfigError: a setting names something that cannot be served.
    """
    loaded = load_tools(tools)
    if not graph:

        def builtin(checkpointer: Checkpointer, store: BaseStore | None) -> CompiledStateGraph:
            return build_graph(checkpointer, store, chat_model=chat_model, tools=loaded)

        return builtin
    origin = f"MEMORY_AGENT_GRAPH={graph!r}"
    value = load_object(graph, "MEMORY_AGENT_GRAPH")
    if callable(value) and not isinstance(value, StateGraph | CompiledStateGraph):
        try:
            value = _call_factory(value, {"chat_model": chat_model, "tools": loaded})
        except Exception as exc:  # the user's factory failed; say which one
            raise AppConfigError(
                f"{origin}: the factory failed: {type(exc).__name__}: {exc}"
            ) from exc
    if isinstance(value, StateGraph):
        source: StateGraph[Any, Any, Any, Any] = value
    elif isinstance(value, CompiledStateGraph) and isinstance(value.builder, StateGraph):
        source = value.builder
    else:
        raise AppConfigError(
            f"{origin}: {type(value).__name__} is not a StateGraph builder, a compiled "
            "StateGraph, or a function returning one"
        )
    name = value.name if isinstance(value, CompiledStateGraph) else "memory-agent"
    check_graph(source.compile(name=name), origin)

    def compile_app(checkpointer: Checkpointer, store: BaseStore | None) -> CompiledStateGraph:
        return source.compile(checkpointer=checkpointer, store=store, name=name)

    return compile_app
