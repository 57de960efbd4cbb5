"""The offline model: a deterministic chat model that needs no network and no key.

It is not a language model. It recognises a few kinds of statements and questions and
drives the real machinery with them: "my name is Sam", "I'm allergic to penicillin",
"I prefer express shipping", "remember that ...", "add ... to my cart" become memory tool
calls; "what is my name?" and "what do you remember about me?" are answered from the
memories retrieved into its system prompt; summarisation requests get an extractive
summary. Replies stream token by token, at once or (with `pace_seconds`, chosen by
`MEMORY_AGENT_MODEL=offline:slow-<seconds>`) spread evenly over that many seconds, which
stands in for a real model's latency in load tests. Set `MEMORY_AGENT_MODEL` to use a
real model.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolCall,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field

from agent.prompts import NONE, SUMMARY_PROMPT
from agent.transcript import attachment_kinds, content_text

OFFLINE_NOTICE = (
    "offline model in use: deterministic replies, no LLM. "
    "Set MEMORY_AGENT_MODEL=provider:model (e.g. openai:gpt-4o-mini) for a real one."
)
_SUMMARY_HEAD = SUMMARY_PROMPT.split("{", 1)[0]
_USER_SECTION = "## What you remember about the user"
_SESSION_SECTION = "## Notes for this session"
_QUESTION = re.compile(r"^(what|who|where|when|which|how|do|does|did|am|is|are|can|could)\b", re.I)


def slug(text: str, limit: int = 48) -> str:
    """A memory key made from free text: lowercase words joined by '-'."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    return "-".join(words)[:limit].strip("-") or "fact"


def _clean(text: str) -> str:
    return text.strip().strip(".!,;: ").strip()


def _sentences(text: str) -> list[str]:
    parts = re.split(r"(?<=[.!?;])\s+|\n+|,?\s+and\s+(?=(?:i|my|i'm)\b)", text, flags=re.I)
    return [s.strip() for s in parts if s and s.strip()]


def _parse_memories(system: str, section: str) -> list[tuple[str, str]]:
    """`(key, content)` pairs listed under `section` in the system prompt."""
    if section not in system:
        return []
    body = system.split(section, 1)[1].split("\n## ", 1)[0]
    pairs = []
    for line in body.splitlines():
        m = re.match(r"^- \[([^\]]+)\] (.*)$", line.strip())
        if m:
            pairs.append((m.group(1), m.group(2)))
    return pairs


def _statement_calls(sentence: str) -> list[dict[str, Any]]:
    """Memory tool arguments for one statement, or [] when it states nothing to keep."""
    s = _clean(sentence)
    if not s or sentence.strip().endswith("?") or _QUESTION.match(s):
        return []
    m = re.match(r"^(?:please\s+)?(?:remember|note)(?:\s+that)?\s+(?P<fact>.+)$", s, re.I)
    if m:
        inner = _statement_calls(m.group("fact"))
        fact = _clean(m.group("fact"))
        return inner or [{"key": slug(fact), "content": fact[:1].upper() + fact[1:] + "."}]
    m = re.search(
        r"\b(?i:my name is|call me|i'm called|i am called)\s+(?P<n>[\w'-]+(?: [A-Z][\w'-]*)*)", s
    )
    if m:
        name = m.group("n")
        return [{"key": "name", "content": f"The user's name is {name}."}]
    m = re.search(r"\bi(?:'m| am)\s+allergic\s+to\s+(?P<x>.+)$", s, re.I)
    if m:
        x = _clean(m.group("x"))
        return [{"key": f"allergy-{slug(x)}", "content": f"Allergic to {x}."}]
    m = re.search(r"\badd\s+(?P<x>.+?)\s+to\s+(?:my|the)\s+(?:cart|basket)\b", s, re.I)
    if m:
        x = _clean(m.group("x"))
        return [{"key": f"cart-{slug(x)}", "content": f"In the cart: {x}.", "scope": "session"}]
    m = re.search(r"\bi\s+(?:prefer|like|love|always want)\s+(?P<x>.+)$", s, re.I)
    if m:
        x = _clean(m.group("x"))
        return [{"key": f"preference-{slug(x)}", "content": f"Prefers {x}."}]
    m = re.search(r"\bi\s+live\s+in\s+(?P<x>.+)$", s, re.I)
    if m:
        return [{"key": "home", "content": f"Lives in {_clean(m.group('x'))}."}]
    m = re.search(r"\bmy\s+(?P<a>[a-z][a-z ]{0,30}?)\s+is\s+(?P<v>.+)$", s, re.I)
    if m:
        attr, value = _clean(m.group("a")), _clean(m.group("v"))
        return [{"key": slug(attr), "content": f"The user's {attr} is {value}."}]
    return []


_FORGET_STOP = frozenset({"that", "about", "the", "and", "you", "what", "from", "cart", "basket"})


def _forget_calls(
    text: str, user: list[tuple[str, str]], session: list[tuple[str, str]]
) -> list[dict[str, Any]] | None:
    """Delete calls for "forget X" / "remove X from my cart"; None when not a forget request."""
    m = re.search(
        r"\b(?:forget|delete|remove)\s+(?:that\s+|about\s+)?(?P<x>.+)$", _clean(text), re.I
    )
    if not m:
        return None
    target = m.group("x").lower()
    target = re.sub(r"\s+from\s+(?:my|the)\s+(?:cart|basket)$", "", target)
    # Word stems of three letters or more: "allergic" finds the "allergy-..." fact.
    words = [w[:5] for w in re.findall(r"[a-z0-9]{3,}", target) if w not in _FORGET_STOP]
    calls = []
    for scope, pairs in (("user", user), ("session", session)):
        for key, content in pairs:
            haystack = f"{key} {content}".lower()
            if words and all(w in haystack for w in words):
                calls.append({"key": key, "scope": scope})
    return calls


def _answer(text: str, user: list[tuple[str, str]], session: list[tuple[str, str]]) -> str:
    """Answer a message from the memories in the prompt, deterministically."""
    lowered = text.lower()
    if re.search(r"\bwhat(?:'s| is)\s+my\s+name\b|\bwho am i\b", lowered):
        for key, content in user:
            if key == "name":
                name = content.removeprefix("The user's name is ").rstrip(".")
                return f"Your name is {name}."
        return 'I don\'t know your name yet. Tell me with "my name is ...".'
    if re.search(r"\b(?:remember|know)\b.*\babout me\b", lowered):
        if not user:
            return "I don't remember anything about you yet."
        return "Here is what I remember about you: " + " ".join(c for _, c in user)
    if re.search(r"\b(?:cart|basket)\b", lowered) and "?" in text:
        items = [
            c.removeprefix("In the cart: ").rstrip(".") for k, c in session if k.startswith("cart-")
        ]
        return ("Your cart has: " + ", ".join(items) + ".") if items else "Your cart is empty."
    m = re.search(r"\bmy\s+(?P<a>[a-z][a-z ]{0,30}?)\s*\?", lowered) or re.search(
        r"\b(allerg\w*|prefer\w*)", lowered
    )
    if m:
        words = [w[:6] for w in re.findall(r"[a-z0-9]+", m.group(1)) if w not in {"what", "is"}]
        hits = [
            c for k, c in user + session if words and all(w in f"{k} {c}".lower() for w in words)
        ]
        if hits:
            return "From what you told me: " + " ".join(hits)
        return "I don't have anything about that in my memory."
    echo = text if len(text) <= 200 else text[:197] + "..."
    return f'(offline model) You said: "{echo}". I can remember facts you tell me.'


def _summarise(request: str) -> str:
    """An extractive summary: the old summary plus one shortened line per user message."""
    existing, _, conversation = request.partition("\n\nConversation:\n")
    existing = existing.removeprefix("Existing summary:\n").strip()
    lines = [] if existing in ("", NONE) else [existing]
    for line in conversation.splitlines():
        role, _, said = line.partition(": ")
        if role == "user" and said:
            lines.append(f"- user said: {said[:160]}")
        elif role == "assistant" and said and "[calls" not in said:
            lines.append(f"- assistant: {said[:80]}")
    return "\n".join(lines) or NONE


def _reply(messages: Sequence[BaseMessage], tools_bound: bool) -> AIMessage:
    system = next((content_text(m.content) for m in messages if isinstance(m, SystemMessage)), "")
    msg_id = f"offline-{uuid.uuid4()}"
    if system.startswith(_SUMMARY_HEAD):
        request = content_text(messages[-1].content) if messages else ""
        return AIMessage(content=_summarise(request), id=msg_id)
    last = messages[-1] if messages else None
    if isinstance(last, ToolMessage):
        answers = []
        for m in reversed(messages):
            if not isinstance(m, ToolMessage):
                break
            text = content_text(m.content)
            answers.append(text if m.status == "error" else text.split(": ", 1)[-1])
        verb = "Noted" if all(not a.startswith("error") for a in answers) else "Done, with problems"
        return AIMessage(content=f"{verb}: " + " ".join(reversed(answers)), id=msg_id)
    text = content_text(last.content).strip() if isinstance(last, HumanMessage) else ""
    user = _parse_memories(system, _USER_SECTION)
    session = _parse_memories(system, _SESSION_SECTION)
    if tools_bound and text:
        forget = _forget_calls(text, user, session)
        if forget:
            return _tool_message(msg_id, [("delete_memory", a) for a in forget])
        if forget is None:
            calls = [c for s in _sentences(text) for c in _statement_calls(s)]
            if calls:
                return _tool_message(msg_id, [("save_memory", a) for a in calls])
        else:
            return AIMessage(content="I have nothing like that to forget.", id=msg_id)
    kinds = attachment_kinds(last.content) if isinstance(last, HumanMessage) else []
    if kinds:  # it reads text only, and says so rather than pretend
        said = f"(offline model) I cannot see the {' or '.join(kinds)} you sent: I read only text."
        answer = _answer(text, user, session).removeprefix("(offline model) ") if text else ""
        return AIMessage(content=f"{said} {answer}".strip(), id=msg_id)
    return AIMessage(content=_answer(text, user, session) if text else "Hello!", id=msg_id)


def _tool_message(msg_id: str, calls: list[tuple[str, dict[str, Any]]]) -> AIMessage:
    tool_calls = [
        ToolCall(name=name, args=args, id=f"call_{uuid.uuid4().hex[:12]}", type="tool_call")
        for name, args in calls
    ]
    return AIMessage(content="", tool_calls=tool_calls, id=msg_id)


def _chunks(message: AIMessage) -> Iterator[AIMessageChunk]:
    if message.tool_calls:
        yield AIMessageChunk(
            content="",
            id=message.id,
            tool_call_chunks=[
                {
                    "name": c["name"],
                    "args": _json(c["args"]),
                    "id": c["id"],
                    "index": i,
                    "type": "tool_call_chunk",
                }
                for i, c in enumerate(message.tool_calls)
            ],
        )
        return
    for token in re.findall(r"\s*\S+", content_text(message.content)) or [""]:
        yield AIMessageChunk(content=token, id=message.id)


def _json(args: dict[str, Any]) -> str:
    import json

    return json.dumps(args, ensure_ascii=False)


class OfflineChatModel(BaseChatModel):
    """Deterministic stand-in for a chat model; see the module docstring."""

    pace_seconds: float = Field(default=0.0, ge=0)
    """Seconds each reply takes, spread evenly over its chunks (0: no delay)."""

    @property
    def _llm_type(self) -> str:
        return "memory-agent-offline"

    def bind_tools(
        self, tools: Sequence[Any], **kwargs: Any
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tool schemas; the offline model only ever calls the memory tools."""
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        reply = _reply(messages, bool(kwargs.get("tools")))
        if self.pace_seconds > 0:
            time.sleep(self.pace_seconds)
        return ChatResult(generations=[ChatGeneration(message=reply)])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        reply = _reply(messages, bool(kwargs.get("tools")))
        if self.pace_seconds > 0:
            await asyncio.sleep(self.pace_seconds)
        return ChatResult(generations=[ChatGeneration(message=reply)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        chunks = list(_chunks(_reply(messages, bool(kwargs.get("tools")))))
        step = self.pace_seconds / len(chunks)
        for chunk in chunks:
            if step > 0:
                time.sleep(step)
            generation = ChatGenerationChunk(message=chunk)
            if run_manager:
                run_manager.on_llm_new_token(content_text(chunk.content), chunk=generation)
            yield generation

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        chunks = list(_chunks(_reply(messages, bool(kwargs.get("tools")))))
        step = self.pace_seconds / len(chunks)
        for chunk in chunks:
            if step > 0:
                await asyncio.sleep(step)
            generation = ChatGenerationChunk(message=chunk)
            if run_manager:
                await run_manager.on_llm_new_token(content_text(chunk.content), chunk=generation)
            yield generation
