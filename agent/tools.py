"""The memory tools the model may call, how the tool node executes them, and the
application's tools as LangChain tools."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, Literal

from langchain_core.messages import ToolCall, ToolMessage
from langchain_core.tools import BaseTool, tool
from langgraph.store.base import Op, PutOp
from pydantic import BaseModel, Field, ValidationError

from agent import namespaces
from agent.memories import MemoryTooLargeError, memory_value

Scope = Literal["user", "session"]


class save_memory(BaseModel):
    """Save or update a fact worth remembering.

    Use scope "user" for lasting facts about the user (name, allergies, preferences) and
    scope "session" for facts that belong to this conversation only (a cart, a choice
    for this session). Saving under an existing key replaces that fact.
    """

    key: str = Field(
        description="Short stable id for the fact, e.g. 'name', 'allergy-penicillin'.",
        pattern=namespaces.ID_PATTERN,
    )
    content: str = Field(description="The fact, as a short sentence.", min_length=1)
    scope: Scope = Field(default="user", description="'user' or 'session'.")


class delete_memory(BaseModel):
    """Forget a fact that is wrong or that the user asked to forget."""

    key: str = Field(description="The key the fact was saved under.")
    scope: Scope = Field(default="user", description="'user' or 'session'.")


MEMORY_TOOLS: list[type[BaseModel]] = [save_memory, delete_memory]
MEMORY_TOOL_NAMES = ("save_memory", "delete_memory")


class ToolSpecError(ValueError):
    """Something given as an application tool is not one, or two tools share a name."""


def as_tools(value: Any) -> list[BaseTool]:
    """A tool or a list of tools as LangChain tools.

    Plain functions (sync or async) are converted with `langchain_core.tools.tool`: the
    name is the function's, the docstring tells the model what the tool does, and the type
    hints become its arguments.

    Raises:
        ToolSpecError: an item is neither a tool nor a documented function, or a name is
            used twice (the memory tools' names included).
    """
    items = list(value) if isinstance(value, list | tuple) else [value]
    tools: list[BaseTool] = []
    for item in items:
        if isinstance(item, BaseTool):
            tools.append(item)
        elif inspect.isfunction(item):
            if not inspect.getdoc(item):
                raise ToolSpecError(
                    f"function {item.__name__!r} needs a docstring: it tells the model what "
                    "the tool does"
                )
            tools.append(tool(item))
        else:
            raise ToolSpecError(
                f"{item!r} is not a tool: give a LangChain BaseTool, a function, or a list of them"
            )
    names = [*MEMORY_TOOL_NAMES, *(t.name for t in tools)]
    for name in names:
        if names.count(name) > 1:
            raise ToolSpecError(f"two tools are named {name!r}; tool names must be unique")
    return tools


def scope_namespace(scope: str, tenant: str, user: str, thread_key: str) -> tuple[str, ...]:
    """The store namespace of a memory scope."""
    if scope == "session":
        return namespaces.session_memories(tenant, user, thread_key)
    return namespaces.user_memories(tenant, user)


def plan_tool_calls(
    calls: Sequence[ToolCall], tenant: str, user: str, thread_key: str
) -> tuple[list[Op], list[ToolMessage]]:
    """Turn the model's memory tool calls into store operations and their answers.

    Every call gets exactly one tool message, in order, including calls with bad
    arguments or unknown names (answered with an error the model can read), so a tool
    call is never left without its result.
    """
    ops: list[Op] = []
    answers: list[ToolMessage] = []
    for call in calls:
        name, call_id = call["name"], call["id"] or ""
        try:
            if name == "save_memory":
                args = save_memory.model_validate(call["args"])
                ns = scope_namespace(args.scope, tenant, user, thread_key)
                ops.append(PutOp(ns, args.key, memory_value(args.content)))
                text = f"saved {args.scope} memory {args.key!r}: {args.content}"
            elif name == "delete_memory":
                dargs = delete_memory.model_validate(call["args"])
                ns = scope_namespace(dargs.scope, tenant, user, thread_key)
                ops.append(PutOp(ns, dargs.key, None))
                text = f"deleted {dargs.scope} memory {dargs.key!r}"
            else:
                raise ValueError(f"unknown tool {name!r}; use save_memory or delete_memory")
            answers.append(ToolMessage(content=text, tool_call_id=call_id, name=name))
        except (ValidationError, ValueError, MemoryTooLargeError) as exc:
            detail = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
            answers.append(
                ToolMessage(
                    content=f"error: {detail}", tool_call_id=call_id, name=name, status="error"
                )
            )
    return ops, answers
