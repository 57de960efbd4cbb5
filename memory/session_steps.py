"""The pieces of the session service's cores (`memory.sessions`): what a core yields
(`Request`), the run it carries, the conversation checks and helpers they share."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import (
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Sequence,
)
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from langchain_core.messages import AIMessage, AIMessageChunk, AnyMessage, BaseMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.store.base import Op, PutOp

from agent import Context, transcript
from agent.memories import Change
from agent.namespaces import Owner
from memory.errors import InvalidInputError
from memory.stores.sessiondb import RateLimit, Record, SessionDB
from memory.stores.values import StoreValueError, check_put

logger = logging.getLogger("memory_agent.sessions")


#: Messages a session needs before ending it writes its summary into long-term memory.
MIN_MESSAGES_FOR_SUMMARY = 4
#: The lease that elects the one process sweeping idle sessions.
SWEEP_LEASE = "memory-agent/sweeper"
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "can",
        "could",
        "do",
        "does",
        "for",
        "from",
        "have",
        "how",
        "i",
        "i'm",
        "in",
        "is",
        "it",
        "its",
        "me",
        "my",
        "of",
        "on",
        "or",
        "our",
        "please",
        "so",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "this",
        "to",
        "was",
        "we",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "yes",
        "no",
        "not",
        "just",
        "about",
        "any",
        "some",
    ]
)
_PAGE = 500
_RECENT = 20
#: Message roles a client may send, by role or by LangChain message type.
_ROLES = {
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "ai": "assistant",
    "system": "system",
    "tool": "tool",
}


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _utcnow() -> datetime:
    return datetime.now(UTC)


def to_messages(
    items: Sequence[dict[str, Any] | BaseMessage],
    known_calls: Iterable[str] = (),
    answered: Iterable[str] = (),
) -> list[AnyMessage]:
    """Convert `{"role", "content", ...}` dicts (or messages) to LangChain messages.

    Tool calls (LangChain's `{"id", "name", "args"}` or OpenAI's `{"id", "type": "function",
    "function": {"name", "arguments"}}`) and tool results (`tool_call_id`) are kept, so a
    whole tool exchange can be stored; a `metadata` object on a message is kept with it and
    returned with its record. Every message gets an id. The messages must form a valid
    conversation (`check_conversation`; `known_calls` are the calls already in the thread,
    `answered` those of them that have a result).
    """
    out: list[AnyMessage] = []
    for i, item in enumerate(items):
        if isinstance(item, BaseMessage):
            message = item.model_copy()  # type: ignore[assignment]
        else:
            if not isinstance(item, dict):
                raise InvalidInputError(f"messages[{i}] must be an object with role and content")
            given = item.get("role", item.get("type"))
            role = _ROLES.get(given) if isinstance(given, str) else None
            if role is None:
                raise InvalidInputError(
                    f"messages[{i}].role must be user, assistant, system or tool "
                    f"(or type human, ai, system, tool), got {given!r}"
                )
            content = item.get("content", "")
            if not isinstance(content, str | list) or (
                isinstance(content, list) and not all(isinstance(b, str | dict) for b in content)
            ):
                raise InvalidInputError(
                    f"messages[{i}].content must be a string or a list of content blocks"
                )
            if role == "tool" and not item.get("tool_call_id"):
                raise InvalidInputError(f"messages[{i}] is a tool result without tool_call_id")
            meta = item.get("metadata")
            if meta is not None and not isinstance(meta, dict):
                raise InvalidInputError(f"messages[{i}].metadata must be an object")
            record = {**item, "role": role, "content": content}
            if item.get("tool_calls") is not None:
                record["tool_calls"] = _tool_calls(item["tool_calls"], f"messages[{i}]")
            try:
                message = transcript.record_to_message(record)
            except (KeyError, TypeError, ValueError) as exc:
                raise InvalidInputError(f"messages[{i}] is malformed: {exc}") from exc
        if not message.id:
            message.id = str(uuid.uuid4())
        if isinstance(item, dict) and item.get("metadata"):
            message.response_metadata["metadata"] = item["metadata"]
        try:  # reject what a backend cannot store before it reaches the thread's state
            check_put(PutOp(("messages",), str(i), transcript.message_to_record(message, i)))
        except StoreValueError as exc:
            raise InvalidInputError(f"messages[{i}]: {exc}") from exc
        out.append(message)  # type: ignore[arg-type]
    check_conversation(out, known_calls, answered)
    return out


def _tool_calls(calls: Any, where: str) -> list[dict[str, Any]]:
    """Tool calls in LangChain form (`{"id", "name", "args"}`) or OpenAI form
    (`{"id", "type": "function", "function": {"name", "arguments": "<json>"}}`)."""
    if not isinstance(calls, list):
        raise InvalidInputError(f"{where}.tool_calls must be a list")
    out = []
    for j, call in enumerate(calls):
        at = f"{where}.tool_calls[{j}]"
        if not isinstance(call, dict) or not isinstance(call.get("id"), str) or not call["id"]:
            raise InvalidInputError(f"{at} must be an object with a string id")
        function = call.get("function")
        if isinstance(function, dict):
            name, arguments = function.get("name"), function.get("arguments", "{}")
            try:
                args = json.loads(arguments) if isinstance(arguments, str) else arguments
            except ValueError as exc:
                raise InvalidInputError(f"{at}.function.arguments is not JSON: {exc}") from exc
        else:
            name, args = call.get("name"), call.get("args", {})
        if not isinstance(name, str) or not name:
            raise InvalidInputError(f"{at} needs a name (or function.name)")
        if not isinstance(args, dict):
            raise InvalidInputError(f"{at} arguments must be a JSON object")
        out.append({"id": call["id"], "name": name, "args": args})
    return out


def exchanged(window: Sequence[BaseMessage]) -> tuple[list[str], list[str]]:
    """The tool call ids made in `window`, and those of them answered there."""
    calls = [str(c["id"]) for m in window if isinstance(m, AIMessage) for c in m.tool_calls]
    answered = [m.tool_call_id for m in window if isinstance(m, ToolMessage)]
    return calls, answered


def check_conversation(
    messages: Sequence[BaseMessage],
    known_calls: Iterable[str] = (),
    answered: Iterable[str] = (),
) -> None:
    """Every tool result answers a call made before it (earlier in `messages`, or one of
    `known_calls`, the calls already in the thread), no call id is made twice, and no call
    is answered twice (in `messages`, or already: `answered`).

    Raises:
        InvalidInputError: naming the message and the call id.
    """
    calls = set(known_calls)
    done = set(answered)
    for i, message in enumerate(messages):
        if isinstance(message, AIMessage):
            for call in message.tool_calls:
                if call.get("id") and str(call["id"]) in calls:
                    raise InvalidInputError(
                        f"messages[{i}] makes tool call {call['id']!r}, which the thread "
                        "already has: a call id is made once"
                    )
            calls.update(str(c["id"]) for c in message.tool_calls if c.get("id"))
        elif isinstance(message, ToolMessage):
            if message.tool_call_id not in calls:
                raise InvalidInputError(
                    f"messages[{i}] answers tool call {message.tool_call_id!r}, which no "
                    "earlier assistant message made"
                )
            if message.tool_call_id in done:
                raise InvalidInputError(
                    f"messages[{i}] answers tool call {message.tool_call_id!r}, which already "
                    "has a result"
                )
            done.add(message.tool_call_id)


def _token_text(chunk: Any, meta: dict[str, Any]) -> str:
    """The text a streamed chunk adds to the reply; empty for other nodes and tool calls."""
    if meta.get("langgraph_node") != "call_model" or not isinstance(chunk, AIMessageChunk):
        return ""
    return transcript.content_text(chunk.content)


def _topics(texts: Sequence[str], into: dict[str, int], keep: int = 50) -> dict[str, int]:
    counts = Counter(into)
    for text in texts:
        for word in re.findall(r"[a-z][a-z'-]{2,}", text.lower()):
            if word not in _STOPWORDS:
                counts[word] += 1
    return dict(counts.most_common(keep))


@dataclass
class RunResult:
    """What one run produced: the reply and every message it added to the transcript."""

    thread_id: str
    reply: str
    messages: list[dict[str, Any]]
    #: The pauses the run ended at, `{"id", "value"}` each (answer them with `resume`).
    interrupts: list[dict[str, Any]] = field(default_factory=list)


# -- requests a core yields ------------------------------------------------------------


@dataclass(frozen=True)
class _Db:
    """A call of the session database, in its sync and async forms (made by `Db`)."""

    call: Callable[[SessionDB], Any]
    acall: Callable[[SessionDB], Awaitable[Any]]
    #: The thread key and token of a call that claims or releases a lease.
    lease: tuple[str, str] | None = None
    #: Whether the call claims that lease (else it releases it).
    claims: bool = False


class Db:
    """The session database's operations as the requests a core yields, with the same
    signatures as `SessionDB`'s methods."""

    @staticmethod
    def get(owner: Owner, thread_id: str) -> _Db:
        return _Db(lambda d: d.get(owner, thread_id), lambda d: d.aget(owner, thread_id))

    @staticmethod
    def list(owner: Owner, limit: int, offset: int, status: str | None = None) -> _Db:
        return _Db(
            lambda d: d.list(owner, limit, offset, status),
            lambda d: d.alist(owner, limit, offset, status),
        )

    @staticmethod
    def create(owner: Owner, record: Record, cap: int) -> _Db:
        return _Db(lambda d: d.create(owner, record, cap), lambda d: d.acreate(owner, record, cap))

    @staticmethod
    def begin(
        owner: Owner,
        thread_id: str,
        token: str,
        lease_ms: int,
        rate: RateLimit | None = None,
        new: Record | None = None,
        cap: int = 1 << 30,
    ) -> _Db:
        return _Db(
            lambda d: d.begin(owner, thread_id, token, lease_ms, rate, new, cap),
            lambda d: d.abegin(owner, thread_id, token, lease_ms, rate, new, cap),
            lease=(owner.thread_key(thread_id), token),
            claims=True,
        )

    @staticmethod
    def save(owner: Owner, record: Record, token: str | None = None, release: bool = False) -> _Db:
        return _Db(
            lambda d: d.save(owner, record, token, release),
            lambda d: d.asave(owner, record, token, release),
        )

    @staticmethod
    def set_status(owner: Owner, record: Record, expect: str = "active") -> _Db:
        return _Db(
            lambda d: d.set_status(owner, record, expect),
            lambda d: d.aset_status(owner, record, expect),
        )

    @staticmethod
    def remove(owner: Owner, thread_id: str) -> _Db:
        return _Db(lambda d: d.remove(owner, thread_id), lambda d: d.aremove(owner, thread_id))

    @staticmethod
    def idle(before: str, limit: int = 500) -> _Db:
        return _Db(lambda d: d.idle(before, limit), lambda d: d.aidle(before, limit))

    @staticmethod
    def acquire(key: str, token: str, lease_ms: int) -> _Db:
        return _Db(
            lambda d: d.acquire(key, token, lease_ms),
            lambda d: d.aacquire(key, token, lease_ms),
            lease=(key, token),
            claims=True,
        )

    @staticmethod
    def release(key: str, token: str) -> _Db:
        return _Db(
            lambda d: d.release(key, token), lambda d: d.arelease(key, token), lease=(key, token)
        )

    @staticmethod
    def leased(key: str) -> _Db:
        return _Db(lambda d: d.leased(key), lambda d: d.aleased(key))

    @staticmethod
    def append(
        thread_key: str, start: int, records: Sequence[Record], token: str | None = None
    ) -> _Db:
        return _Db(
            lambda d: d.append(thread_key, start, records, token),
            lambda d: d.aappend(thread_key, start, records, token),
        )

    @staticmethod
    def page(thread_key: str, offset: int, limit: int) -> _Db:
        return _Db(
            lambda d: d.page(thread_key, offset, limit),
            lambda d: d.apage(thread_key, offset, limit),
        )

    @staticmethod
    def truncate(thread_key: str, start: int = 0) -> _Db:
        return _Db(
            lambda d: d.truncate(thread_key, start), lambda d: d.atruncate(thread_key, start)
        )


@dataclass(frozen=True)
class _Batch:
    ops: Sequence[Op]


@dataclass(frozen=True)
class _Update:
    """Apply a change to one store item atomically (`agent.memories.update_item`)."""

    namespace: tuple[str, ...]
    key: str
    change: Change


@dataclass(frozen=True)
class _GetState:
    config: RunnableConfig


@dataclass(frozen=True)
class _UpdateState:
    """A checkpoint written as `as_node` wrote `values` (None: a checkpoint of no writes)."""

    config: RunnableConfig
    values: dict[str, Any] | None
    as_node: str = "call_model"


@dataclass(frozen=True)
class _Compact:
    """Run the graph's summarisation node alone on the thread (the window is over its
    budget after an append), then end the turn there, so no model reply follows."""

    config: RunnableConfig
    context: Any


@dataclass(frozen=True)
class _History:
    """The thread's checkpoints, newest first (`StateSnapshot`s)."""

    config: RunnableConfig


@dataclass(frozen=True)
class _Copy:
    """Copy a checkpoint as the thread's head (a rollback)."""

    config: RunnableConfig


@dataclass(frozen=True)
class _Invoke:
    input: dict[str, Any]
    config: RunnableConfig
    context: Context


@dataclass(frozen=True)
class _DeleteThread:
    thread_key: str


@dataclass(frozen=True)
class _CopyCheckpoints:
    """Copy every checkpoint of a thread, with its pending writes, to another thread."""

    source_key: str
    target_key: str


@dataclass(frozen=True)
class _KeepLatest:
    """Delete all but the thread's latest checkpoint."""

    thread_key: str


@dataclass(frozen=True)
class _Renew:
    """Start renewing a lease in the background; answers a handle for `_StopRenew`."""

    key: str
    token: str


@dataclass(frozen=True)
class _StopRenew:
    handle: Any


@dataclass(frozen=True)
class _GiveBack:
    """Release a lease in the background once the database answers again (an outage cut
    the run that held it); answers at once."""

    key: str
    token: str


Request = (
    _Db
    | _Batch
    | _Update
    | _GetState
    | _UpdateState
    | _Compact
    | _History
    | _Copy
    | _Invoke
    | _DeleteThread
    | _KeepLatest
    | _CopyCheckpoints
    | _Renew
    | _StopRenew
    | _GiveBack
)
_Steps = Generator[Request, Any, Any]
Durability = Literal["sync", "async", "exit"]


@dataclass
class _Run:
    """A claimed run: its thread, lease token, record and input."""

    owner: Owner
    record: dict[str, Any]
    key: str
    token: str
    before: int
    input: list[AnyMessage]
    renewal: Any = None
    #: The graph paused (an interrupt): the thread waits for an answer.
    waiting: bool = False
    #: The metadata of the run's checkpoints (its run id), for what is written for it.
    metadata: dict[str, Any] | None = None


class _ThreadRenewal:
    """Renews a lease from a thread while a sync run lives."""

    def __init__(self, db: SessionDB, key: str, token: str, lease_ms: int) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, args=(db, key, token, lease_ms), daemon=True, name="lease"
        )
        self._thread.start()

    def _loop(self, db: SessionDB, key: str, token: str, lease_ms: int) -> None:
        while not self._stop.wait(lease_ms / 3000):
            try:
                if not db.renew(key, token, lease_ms):
                    logger.warning("lost the lease on thread %s", key)
                    return
            except Exception:  # a failed renewal is retried; the lease may still hold
                logger.warning("renewing the lease on thread %s failed", key, exc_info=True)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _give_back_from_thread(db: SessionDB, key: str, token: str, lease_ms: int) -> None:
    """`_GiveBack` for the sync API: a thread retries the release while the lease lasts."""

    def attempts() -> None:
        give_up = time.monotonic() + lease_ms / 1000
        delay = 0.2
        while time.monotonic() + delay <= give_up:
            try:
                db.release(key, token)
                return
            except Exception:  # still out: try again
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    threading.Thread(target=attempts, daemon=True, name="give back").start()


async def _renew_forever(db: SessionDB, key: str, token: str, lease_ms: int) -> None:
    while True:
        await asyncio.sleep(lease_ms / 3000)
        try:
            if not await db.arenew(key, token, lease_ms):
                logger.warning("lost the lease on thread %s", key)
                return
        except Exception:  # a failed renewal is retried; the lease may still hold
            logger.warning("renewing the lease on thread %s failed", key, exc_info=True)
