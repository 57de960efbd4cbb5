"""The offline model: statements become memory tool calls, questions read the prompt."""

from __future__ import annotations

import asyncio
import time

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from agent.model import ModelConfigError, is_offline, load_chat_model
from agent.offline import OfflineChatModel
from agent.tools import MEMORY_TOOLS

SYSTEM = """You are...

## What you remember about the user
- [name] The user's name is Sam.
- [allergy-penicillin] Allergic to penicillin.

## Notes for this session
- [cart-blue-mug] In the cart: blue mug.

## Summary of the earlier conversation
(none)
"""


def reply(text: str, system: str = SYSTEM) -> AIMessage:
    model = OfflineChatModel().bind_tools(MEMORY_TOOLS)
    return model.invoke([SystemMessage(system), HumanMessage(text)])


def test_statements_become_parallel_save_calls() -> None:
    message = reply(
        "Hi! My name is Ana and I prefer express shipping. Remember that I work nights."
    )
    args = [c["args"] for c in message.tool_calls]
    assert [c["name"] for c in message.tool_calls] == ["save_memory"] * 3
    assert args[0] == {"key": "name", "content": "The user's name is Ana."}
    assert args[1]["key"] == "preference-express-shipping"
    assert args[2]["content"] == "I work nights."


def test_cart_items_are_session_scoped() -> None:
    (call,) = reply("Please add two croissants to my cart").tool_calls
    assert call["args"]["scope"] == "session" and call["args"]["key"] == "cart-two-croissants"


def test_questions_are_answered_from_memories() -> None:
    assert reply("What is my name?").content == "Your name is Sam."
    assert "penicillin" in reply("What do you remember about me?").content
    assert reply("What's in my cart?").content == "Your cart has: blue mug."
    assert not reply("What is my name?").tool_calls


def test_forget_deletes_the_matching_memory() -> None:
    (call,) = reply("Forget that I'm allergic to penicillin").tool_calls
    assert call["name"] == "delete_memory"
    assert call["args"] == {"key": "allergy-penicillin", "scope": "user"}


def test_tool_results_are_acknowledged() -> None:
    model = OfflineChatModel().bind_tools(MEMORY_TOOLS)
    calls = [{"id": "c1", "name": "save_memory", "args": {"key": "name", "content": "x"}}]
    out = model.invoke(
        [
            SystemMessage(SYSTEM),
            HumanMessage("My name is Jo"),
            AIMessage("", tool_calls=calls),
            ToolMessage("saved user memory 'name': The user's name is Jo.", tool_call_id="c1"),
        ]
    )
    assert out.content == "Noted: The user's name is Jo."


def test_deterministic_and_streamed() -> None:
    model = OfflineChatModel()
    messages = [SystemMessage(SYSTEM), HumanMessage("tell me a joke")]
    chunks = [c.content for c in model.stream(messages)]
    assert len(chunks) > 3
    assert "".join(chunks) == model.invoke(messages).content == model.invoke(messages).content
    assert "(offline model)" in "".join(chunks)


def test_context_explicit_beats_environment(fresh_env) -> None:
    from agent import Context

    fresh_env.setenv("MEMORY_AGENT_MODEL", "openai:gpt-4o-mini")
    fresh_env.setenv("MEMORY_AGENT_TOKEN_BUDGET", "900")
    assert Context().model == "openai:gpt-4o-mini"
    assert Context().token_budget == 900
    assert Context(model="offline").model == "offline"


def test_slow_spec_paces_the_same_reply() -> None:
    pace = 0.2
    fast, slow = load_chat_model("offline"), load_chat_model(f"offline:slow-{pace}")
    assert isinstance(slow, OfflineChatModel) and slow.pace_seconds == pace
    assert is_offline(f"offline:slow-{pace}")
    messages = [SystemMessage(SYSTEM), HumanMessage("tell me a joke")]
    expected = [c.content for c in fast.stream(messages)]

    begin = time.perf_counter()
    assert [c.content for c in slow.stream(messages)] == expected
    assert time.perf_counter() - begin >= 0.8 * pace

    async def astream() -> list[str]:
        return [c.content async for c in slow.astream(messages)]

    begin = time.perf_counter()
    assert asyncio.run(astream()) == expected
    assert time.perf_counter() - begin >= 0.8 * pace

    begin = time.perf_counter()
    assert asyncio.run(slow.ainvoke(messages)).content == "".join(expected)
    assert time.perf_counter() - begin >= 0.8 * pace


def test_bad_slow_specs_are_rejected() -> None:
    for spec in ("offline:slow-abc", "offline:slow--1", "offline:slow-nan", "offline:fast"):
        with pytest.raises(ModelConfigError, match="offline:slow-"):
            load_chat_model(spec)
