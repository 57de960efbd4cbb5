"""The memory tools the model may call, and how the memory-store node executes them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from langchain_core.messages import ToolCall, ToolMessage
from langgraph.store.base import Op, PutOp
from pydantic import BaseModel, Field, ValidationError

from memory import namespaces
from memory.memories import MemoryTooLargeError, memory_value

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
