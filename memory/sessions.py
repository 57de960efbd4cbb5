"""The session service: every lifecycle transition of a session and the reads around it.

`SessionManager` owns who may run on a thread and when a session ends. It keeps its
guarantees when several processes share one database, because every transition is atomic
in the session database beside the store (`memory.stores.sessiondb`):

- create inserts a session only if it is absent and its owner is under the cap;
- a run claims its thread with a lease (renewed while the run lives; a holder killed
  mid-run frees the thread when the lease runs out), counts against the owner's rate
  limit in the database, and its transcript writes are fenced by the lease;
- end, expire, delete, erase, adding messages and editing the summary take the same
  lease, so none of them interleaves with a run; end and expire are a compare-and-set on
  the session's status;
- the idle sweeper runs in one process at a time (a lease of its own).

A plain turn costs the saver calls of the graph's own steps plus four calls besides: the
claim (lease, rate limit and record, in one), the memory search, the transcript append
and the record update that releases the lease. Nothing reads what the turn already holds.

Every method exists twice over one core: `get`/`aget`, `run`/`arun`, ... Each core is a
generator that yields the I/O it needs (`Request`); `SessionManager` performs it with the
sync or the async APIs. An exception raised by a request is thrown back into the core, so
its cleanup (releasing the lease) runs; the core then raises it to the caller.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import logging
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Sequence,
)
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, assert_never

from langchain_core.messages import AIMessage, AIMessageChunk, AnyMessage, BaseMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph
from langgraph.store.base import GetOp, Op, PutOp, SearchOp

from agent import RECURSION_LIMIT, Context
from agent.graph import LEASE_KEY
from agent.tools import scope_namespace
from memory import namespaces, transcript
from memory.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    RateLimitedError,
    SessionEndedError,
)
from memory.memories import MemoryTooLargeError, memory_out, memory_value
from memory.namespaces import InvalidIdError, Owner, check_id
from memory.settings import Settings
from memory.stores.factory import sessions_db
from memory.stores.outages import (
    DEFAULT_TIMEOUT_SECONDS,
    LOST,
    Breaker,
    as_unavailable,
    retry_in_background,
    within,
)
from memory.stores.sessiondb import Claim, LeaseLostError, RateLimit, SessionDB
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
    items: Sequence[dict[str, Any] | BaseMessage], known_calls: Iterable[str] = ()
) -> list[AnyMessage]:
    """Convert `{"role", "content", ...}` dicts (or messages) to LangChain messages.

    Tool calls (LangChain's `{"id", "name", "args"}` or OpenAI's `{"id", "type": "function",
    "function": {"name", "arguments"}}`) and tool results (`tool_call_id`) are kept, so a
    whole tool exchange can be stored; a `metadata` object on a message is kept with it and
    returned with its record. Every message gets an id. The messages must form a valid
    conversation (`check_conversation`; `known_calls` are the calls already in the thread).
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
    check_conversation(out, known_calls)
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


def check_conversation(messages: Sequence[BaseMessage], known_calls: Iterable[str] = ()) -> None:
    """Every tool result answers a call made before it (earlier in `messages`, or one of
    `known_calls`, the calls already in the thread), and no call id is answered twice.

    Raises:
        InvalidInputError: naming the tool result.
    """
    calls = set(known_calls)
    answered: set[str] = set()
    for i, message in enumerate(messages):
        if isinstance(message, AIMessage):
            calls.update(str(c["id"]) for c in message.tool_calls if c.get("id"))
        elif isinstance(message, ToolMessage):
            if message.tool_call_id not in calls:
                raise InvalidInputError(
                    f"messages[{i}] answers tool call {message.tool_call_id!r}, which no "
                    "earlier assistant message made"
                )
            if message.tool_call_id in answered:
                raise InvalidInputError(
                    f"messages[{i}] answers tool call {message.tool_call_id!r} a second time"
                )
            answered.add(message.tool_call_id)


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


# -- requests a core yields ------------------------------------------------------------


@dataclass(frozen=True)
class _Db:
    """A call of the session database: `method` or its async twin `a<method>`."""

    method: str
    args: tuple[Any, ...]


@dataclass(frozen=True)
class _Batch:
    ops: Sequence[Op]


@dataclass(frozen=True)
class _GetState:
    config: RunnableConfig


@dataclass(frozen=True)
class _UpdateState:
    config: RunnableConfig
    values: dict[str, Any]


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
    | _GetState
    | _UpdateState
    | _Copy
    | _Invoke
    | _DeleteThread
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


class SessionManager:
    """Sessions, runs, transcripts, summaries and memories over a compiled agent graph.

    Args:
        graph: The agent compiled with a checkpointer and a store.
        context: Defaults for each run's context (model, token budget); the owner is
            filled in per call.
        min_messages_for_summary: Messages a session needs before ending it saves its
            summary into the user's long-term memory.
        durability: When checkpoints are written: `async` (each step, in the background),
            `sync`, or `exit` (once per run: fastest; a crashed turn restarts).
        db: The session database; by default the one beside the graph's store.
        idle_timeout: Inactivity after which a session counts as ended (None: never).
        max_open_sessions: Open sessions an owner may have (None: no cap).
        runs_per_minute: Runs an owner may start per rolling minute (None: no limit).
        lease_seconds: How long a run's claim outlives a process that died holding it.
        backend_timeout: Seconds a database call of the service may take before it counts
            as an outage (`UnavailableError`); None waits as long as the driver does.
        clock: The current UTC time; tests pass their own to move time forward.
    """

    def __init__(
        self,
        graph: CompiledStateGraph,
        *,
        context: Context | None = None,
        min_messages_for_summary: int = MIN_MESSAGES_FOR_SUMMARY,
        durability: Durability = "async",
        db: SessionDB | None = None,
        idle_timeout: timedelta | None = None,
        max_open_sessions: int | None = None,
        runs_per_minute: int | None = None,
        lease_seconds: float = 30.0,
        backend_timeout: float | None = DEFAULT_TIMEOUT_SECONDS,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        if graph.store is None or graph.checkpointer is None:
            raise ValueError(
                "SessionManager needs a graph compiled with a checkpointer and a store"
            )
        self.graph = graph
        self.durability = durability
        self.store = graph.store
        self.checkpointer = graph.checkpointer
        self.db = db or sessions_db(graph.store)
        self.context = context or Context()
        self.min_messages_for_summary = min_messages_for_summary
        self.idle_timeout = idle_timeout
        self.max_open_sessions = max_open_sessions
        self.rate = RateLimit(runs_per_minute, 60_000) if runs_per_minute else None
        self.lease_ms = max(1, int(lease_seconds * 1000))
        self.backend_timeout = backend_timeout
        #: The store's database breaker (Postgres, Redis), shared with the graph's calls:
        #: while that database is down, the service's calls fail at once too.
        self.breaker: Breaker | None = getattr(self.store, "breaker", None)
        self.clock = clock
        self._sweeper = uuid.uuid4().hex

    @classmethod
    def from_settings(
        cls, graph: CompiledStateGraph, settings: Settings, **overrides: Any
    ) -> SessionManager:
        """A manager with the deployment's limits, lifecycle and run defaults."""
        options: dict[str, Any] = {
            "context": Context.from_settings(settings),
            "min_messages_for_summary": settings.min_messages_for_summary,
            "durability": settings.durability,
            "idle_timeout": timedelta(hours=settings.idle_timeout_hours),
            "max_open_sessions": settings.max_open_sessions,
            "runs_per_minute": settings.runs_per_minute,
            "lease_seconds": settings.lease_seconds,
            "backend_timeout": settings.backend_timeout_seconds,
        }
        return cls(graph, **{**options, **overrides})

    # -- drivers -------------------------------------------------------------------

    def _perform(self, request: Request) -> Any:
        match request:
            case _Db(method, args):
                return getattr(self.db, method)(*args)
            case _Batch(ops):
                return self.store.batch(ops)
            case _GetState(config):
                return self.graph.get_state(config)
            case _UpdateState(config, values):
                return self.graph.update_state(config, values, as_node="call_model")
            case _Copy(config):
                return self.graph.update_state(config, None, as_node="__copy__")
            case _Invoke(graph_input, config, context):
                return self.graph.invoke(  # type: ignore[call-overload]
                    graph_input, config, context=context, durability=self.durability
                )
            case _DeleteThread(thread_key):
                return self.checkpointer.delete_thread(thread_key)  # type: ignore[union-attr]
            case _Renew(key, token):
                return _ThreadRenewal(self.db, key, token, self.lease_ms)
            case _StopRenew(handle):
                return handle.stop()
            case _GiveBack(key, token):
                return _give_back_from_thread(self.db, key, token, self.lease_ms)
            case _:
                assert_never(request)

    async def _aperform(self, request: Request) -> Any:
        match request:
            case _Db(method, args):
                return await getattr(self.db, f"a{method}")(*args)
            case _Batch(ops):
                return await self.store.abatch(ops)
            case _GetState(config):
                return await self.graph.aget_state(config)
            case _UpdateState(config, values):
                return await self.graph.aupdate_state(config, values, as_node="call_model")
            case _Copy(config):
                return await self.graph.aupdate_state(config, None, as_node="__copy__")
            case _Invoke(graph_input, config, context):
                return await self.graph.ainvoke(  # type: ignore[call-overload]
                    graph_input, config, context=context, durability=self.durability
                )
            case _DeleteThread(thread_key):
                return await self.checkpointer.adelete_thread(thread_key)  # type: ignore[union-attr]
            case _Renew(key, token):
                return asyncio.get_running_loop().create_task(
                    _renew_forever(self.db, key, token, self.lease_ms), name=f"lease {key}"
                )
            case _StopRenew(handle):
                handle.cancel()
                return None
            case _GiveBack(key, token):
                return self._release_later(key, token)
            case _:
                assert_never(request)

    def _drive(self, steps: _Steps) -> Any:
        resume: Any = steps.send
        value: Any = None
        while True:
            try:
                request = resume(value)
            except StopIteration as done:
                return done.value
            try:
                value, resume = self._perform(request), steps.send
            except StoreValueError as exc:
                value, resume = InvalidInputError(str(exc)), steps.throw
            except BaseException as exc:  # thrown into the core, whose cleanup re-raises it
                value, resume = as_unavailable(exc) or exc, steps.throw

    async def _adrive(self, steps: _Steps) -> Any:
        resume: Any = steps.send
        value: Any = None
        while True:
            try:
                request = resume(value)
            except StopIteration as done:
                return done.value
            try:
                if isinstance(request, _Invoke | _Renew | _StopRenew | _GiveBack):
                    value = await self._aperform(request)
                elif self.breaker is not None:  # a database call: within the deadline
                    value = await self.breaker.call(
                        self._aperform(request), self._give_back(request), self.backend_timeout
                    )
                else:
                    value = await within(
                        self._aperform(request), self.backend_timeout, self._give_back(request)
                    )
                resume = steps.send
            except StoreValueError as exc:
                value, resume = InvalidInputError(str(exc)), steps.throw
            except BaseException as exc:  # thrown into the core, whose cleanup re-raises it
                outage = as_unavailable(exc)
                lease = self._lease_of(request)
                if outage is not None and lease is not None and not isinstance(exc, TimeoutError):
                    # Not sent, or cut: a release must still happen (a late answer to a
                    # call past its deadline goes to `_give_back` instead).
                    self._release_later(*lease)
                value, resume = outage or exc, steps.throw

    @staticmethod
    def _lease_of(request: Request) -> tuple[str, str] | None:
        """The thread key and token of a request that claims or releases a lease."""
        if not isinstance(request, _Db) or request.method not in ("begin", "acquire", "release"):
            return None
        if request.method == "begin":
            owner, thread_id, token = request.args[:3]
            return owner.thread_key(thread_id), token
        key, token = request.args[:2]
        return key, token

    def _give_back(self, request: Request) -> Callable[[Any], Any] | None:
        """For a claim abandoned at its deadline: release the lease if the database granted
        it after all (or may have: its answer was lost), so the thread is not held until the
        lease runs out; and a release abandoned at its deadline is tried again."""
        lease = self._lease_of(request)
        if lease is None:
            return None
        claims = isinstance(request, _Db) and request.method != "release"

        def settle(result: Any) -> None:
            granted = result is True or (isinstance(result, Claim) and result.claimed)
            if result is LOST or (claims and granted):
                self._release_later(*lease)

        return settle

    def _release_later(self, key: str, token: str) -> None:
        """Give the lease back once the database answers (it runs out by itself anyway)."""
        retry_in_background(
            lambda: self.db.arelease(key, token), self.lease_ms / 1000, self.backend_timeout
        )

    # -- helpers -------------------------------------------------------------------

    @staticmethod
    def config(owner: Owner, thread_id: str, token: str | None = None) -> RunnableConfig:
        """The LangGraph config of an owner's thread (with a run's lease token)."""
        configurable: dict[str, Any] = {"thread_id": owner.thread_key(thread_id)}
        if token is not None:
            configurable[LEASE_KEY] = token
        return {"configurable": configurable, "recursion_limit": RECURSION_LIMIT}

    def run_context(self, owner: Owner) -> Context:
        """This manager's default context, acting for `owner`."""
        return replace(self.context, user_id=owner.user, tenant_id=owner.tenant)

    def is_idle(self, record: dict[str, Any]) -> bool:
        """Whether an active session has been idle for longer than the timeout."""
        if self.idle_timeout is None or record.get("status") != "active":
            return False
        last = datetime.fromisoformat(record["last_active_at"])
        return self.clock() - last > self.idle_timeout

    def _new_record(
        self, owner: Owner, thread_id: str, metadata: dict[str, Any] | None
    ) -> dict[str, Any]:
        now = self.clock().isoformat()
        return {
            "thread_id": thread_id,
            "tenant": owner.tenant,
            "user": owner.user,
            "status": "active",
            "created_at": now,
            "last_active_at": now,
            "ended_at": None,
            "message_count": 0,
            "counts": {},
            "topics": {},
            "metadata": metadata or {},
        }

    def _cap(self) -> int:
        return self.max_open_sessions if self.max_open_sessions is not None else 1 << 30

    def _full(self) -> ConflictError:
        return ConflictError(
            f"{self._cap()} open sessions is the limit; end one (POST /threads/{{id}}/end) "
            "or delete one before starting another"
        )

    # -- cores: reading and expiring -------------------------------------------------

    def _state(self, owner: Owner, thread_id: str) -> _Steps:
        snapshot = yield _GetState(self.config(owner, thread_id))
        return snapshot.values or {}

    def _load(self, owner: Owner, thread_id: str) -> _Steps:
        """The session record, expired first if it has been idle too long."""
        check_id("thread_id", thread_id)
        record = yield _Db("get", (owner, thread_id))
        if record is None:
            raise NotFoundError(f"thread {thread_id!r} not found")
        if self.is_idle(record):
            record = yield from self._expire_if_free(owner, record)
        return record

    def _expire_if_free(self, owner: Owner, record: dict[str, Any]) -> _Steps:
        """Expire an idle session unless a run holds it (a busy session never expires)."""
        thread_id = record["thread_id"]
        key, token = owner.thread_key(thread_id), uuid.uuid4().hex
        if not (yield _Db("acquire", (key, token, self.lease_ms))):
            return record
        try:
            fresh = yield _Db("get", (owner, thread_id))
            if fresh is None:
                return record
            if self.is_idle(fresh):
                fresh = yield from self._expire(owner, fresh)
            return fresh
        finally:
            yield _Db("release", (key, token))

    def _ended(self, owner: Owner, record: dict[str, Any], summary: str) -> _Steps:
        """The ended record; a long enough session leaves its summary in long-term memory."""
        thread_id = record["thread_id"]
        ended = {**record, "status": "ended", "ended_at": self.clock().isoformat()}
        if record.get("message_count", 0) >= self.min_messages_for_summary:
            recent, _ = yield _Db("page", (owner.thread_key(thread_id), -_RECENT, _RECENT))
            lines = transcript.format_context(recent)
            text = (f"{summary}\n{lines}" if summary else lines)[-3000:]
            value = memory_value(
                f"Summary of session {thread_id} ({record['created_at'][:10]}): {text}"
            )
            ns = namespaces.user_memories(owner.tenant, owner.user)
            yield _Batch([PutOp(ns, f"session-summary-{thread_id}"[:128], value)])
            ended["summary_saved"] = True
        if summary:
            ended["summary"] = summary
        return ended

    def _expire(self, owner: Owner, record: dict[str, Any]) -> _Steps:
        """End an idle session and delete its checkpoints (the caller holds its lease)."""
        thread_id = record["thread_id"]
        summary = (yield from self._state(owner, thread_id)).get("summary", "")
        ended = yield from self._ended(owner, record, summary or record.get("summary", ""))
        ended.update(
            end_reason="idle", checkpoints_expired=True, expired_at=self.clock().isoformat()
        )
        if not (yield _Db("set_status", (owner, ended, "active"))):
            return (yield _Db("get", (owner, thread_id))) or record
        yield _DeleteThread(owner.thread_key(thread_id))
        return ended

    def _claim(self, owner: Owner, thread_id: str) -> _Steps:
        """Take a thread's lease for a transition other than a run: `(record, token)`."""
        check_id("thread_id", thread_id)
        key, token = owner.thread_key(thread_id), uuid.uuid4().hex
        if not (yield _Db("acquire", (key, token, self.lease_ms))):
            if (yield _Db("get", (owner, thread_id))) is None:
                raise NotFoundError(f"thread {thread_id!r} not found")
            raise ConflictError(f"a run is active on thread {thread_id!r}; retry when it ends")
        try:
            record = yield _Db("get", (owner, thread_id))
        except BaseException:
            yield _Db("release", (key, token))
            raise
        if record is None:
            yield _Db("release", (key, token))
            raise NotFoundError(f"thread {thread_id!r} not found")
        return record, token

    # -- cores: sessions -------------------------------------------------------------

    def _expire_idle_of(self, owner: Owner) -> _Steps:
        """Expire the owner's idle sessions (before refusing a new one at the cap)."""
        if self.idle_timeout is None:
            return 0
        records, _ = yield _Db("list", (owner, self._cap() + 1, 0, "active"))
        expired = 0
        for record in records:
            if self.is_idle(record):
                refreshed = yield from self._expire_if_free(owner, record)
                expired += refreshed.get("status") == "ended"
        return expired

    def _create(
        self, owner: Owner, thread_id: str | None, metadata: dict[str, Any] | None
    ) -> _Steps:
        thread_id = check_id("thread_id", thread_id) if thread_id else str(uuid.uuid4())
        record = self._new_record(owner, thread_id, metadata)
        outcome = yield _Db("create", (owner, record, self._cap()))
        if outcome == "full" and (yield from self._expire_idle_of(owner)):
            outcome = yield _Db("create", (owner, record, self._cap()))
        if outcome == "exists":
            raise ConflictError(f"thread {thread_id!r} already exists")
        if outcome == "full":
            raise self._full()
        return record

    def _get_or_create(self, owner: Owner, thread_id: str | None) -> _Steps:
        if thread_id:
            try:
                return (yield from self._load(owner, thread_id)), False
            except NotFoundError:
                pass
        try:
            return (yield from self._create(owner, thread_id, None)), True
        except ConflictError:
            if not thread_id:
                raise
            return (yield from self._load(owner, thread_id)), False  # created meanwhile

    def _list(self, owner: Owner, limit: int, offset: int, status: str | None) -> _Steps:
        if status is not None:
            # Idle sessions are ended first, so a filtered page and its total agree with
            # the statuses it shows (an idle session is neither listed nor counted as active).
            yield from self._expire_idle_of(owner)
        records, total = yield _Db("list", (owner, limit, offset, status))
        out = []
        for record in records:
            if self.is_idle(record):
                record = yield from self._expire_if_free(owner, record)
            out.append(record)
        return out, total

    def _end(self, owner: Owner, thread_id: str) -> _Steps:
        record, token = yield from self._claim(owner, thread_id)
        try:
            if record["status"] == "ended":
                return record
            if self.is_idle(record):
                return (yield from self._expire(owner, record))
            summary = (yield from self._state(owner, thread_id)).get("summary", "")
            ended = yield from self._ended(owner, record, summary)
            if not (yield _Db("set_status", (owner, ended, "active"))):
                return (yield _Db("get", (owner, thread_id))) or ended
            return ended
        finally:
            yield _Db("release", (owner.thread_key(thread_id), token))

    def _remove(self, owner: Owner, thread_id: str) -> _Steps:
        """Delete a thread's checkpoints, session memories, transcript and record (the
        caller holds its lease)."""
        key = owner.thread_key(thread_id)
        yield _DeleteThread(key)
        ops = yield from self._delete_all_in(
            namespaces.session_memories(owner.tenant, owner.user, key)
        )
        if ops:
            yield _Batch(ops)
        yield _Db("remove", (owner, thread_id))

    def _delete(self, owner: Owner, thread_id: str) -> _Steps:
        record, token = yield from self._claim(owner, thread_id)
        try:
            yield from self._remove(owner, thread_id)
        finally:
            yield _Db("release", (owner.thread_key(thread_id), token))
        return record

    def _all(self, owner: Owner) -> _Steps:
        records: list[dict[str, Any]] = []
        while True:
            page, _ = yield _Db("list", (owner, _PAGE, len(records), None))
            records += page
            if len(page) < _PAGE:
                return records

    def _erase(self, owner: Owner) -> _Steps:
        records = yield from self._all(owner)
        held: list[tuple[str, str]] = []
        try:
            for record in records:
                key, token = owner.thread_key(record["thread_id"]), uuid.uuid4().hex
                if not (yield _Db("acquire", (key, token, self.lease_ms))):
                    raise ConflictError(
                        f"a run is active on thread {record['thread_id']!r}; retry when it ends"
                    )
                held.append((key, token))
            for record in records:
                yield from self._remove(owner, record["thread_id"])
        finally:
            for key, token in held:
                yield _Db("release", (key, token))
        memories = yield from self._clear_memories(owner, None)
        return {"threads": len(records), "memories": memories}

    def _sweep(self, hold: float) -> _Steps:
        if self.idle_timeout is None:
            return 0
        hold_ms = max(1, int(hold * 1000))
        if not (yield _Db("acquire", (SWEEP_LEASE, self._sweeper, hold_ms))):
            return 0  # another process sweeps this round
        cutoff = (self.clock() - self.idle_timeout).isoformat()
        expired = 0
        while True:
            page = yield _Db("idle", (cutoff, _PAGE))
            progressed = 0
            for record in page:
                try:
                    owner = Owner(tenant=record["tenant"], user=record["user"])
                except (InvalidIdError, KeyError):
                    continue  # a record written by hand: nothing to expire
                refreshed = yield from self._expire_if_free(owner, record)
                progressed += refreshed.get("status") == "ended"
            expired += progressed
            if len(page) < _PAGE or not progressed:
                return expired

    def _detail(self, owner: Owner, thread_id: str) -> _Steps:
        record = yield from self._load(owner, thread_id)
        summary = (yield from self._state(owner, thread_id)).get("summary", "")
        running = yield _Db("leased", (owner.thread_key(thread_id),))
        return record, summary or record.get("summary", ""), running

    def _snapshot(self, owner: Owner, thread_id: str) -> _Steps:
        record = yield from self._load(owner, thread_id)
        return record, (yield _GetState(self.config(owner, thread_id)))

    # -- cores: runs -------------------------------------------------------------------

    def _begin_run(self, owner: Owner, thread_id: str | None, messages: Sequence[Any]) -> _Steps:
        """Validate a run, claim its thread (created if new) and start renewing the lease."""
        new = to_messages(messages)
        if not new:
            raise InvalidInputError("a run needs at least one message")
        thread_id = check_id("thread_id", thread_id) if thread_id else str(uuid.uuid4())
        key, token = owner.thread_key(thread_id), uuid.uuid4().hex
        fresh = self._new_record(owner, thread_id, None)
        claim: Claim = yield _Db(
            "begin", (owner, thread_id, token, self.lease_ms, self.rate, fresh, self._cap())
        )
        if claim.outcome == "full" and (yield from self._expire_idle_of(owner)):
            claim = yield _Db(
                "begin", (owner, thread_id, token, self.lease_ms, None, fresh, self._cap())
            )
        match claim.outcome:
            case "busy":
                raise ConflictError(f"a run is already active on thread {thread_id!r}")
            case "limited":
                retry = max(1, int(claim.retry_after + 0.999))
                limit = self.rate.limit if self.rate else 0
                raise RateLimitedError(
                    f"rate limit of {limit} runs per 60 s reached; retry in {retry} s",
                    retry_after=retry,
                )
            case "full" | "missing":
                raise self._full()
        record = claim.record
        assert record is not None
        if record["status"] == "ended" or self.is_idle(record):
            try:
                if self.is_idle(record):
                    yield from self._expire(owner, record)
            finally:
                yield _Db("release", (key, token))
            raise SessionEndedError(f"thread {thread_id!r} has ended; start a new thread")
        run = _Run(owner, record, key, token, record.get("message_count", 0), new)
        run.renewal = yield _Renew(key, token)
        return run

    def _added(self, run: _Run, values: dict[str, Any], after: int) -> _Steps:
        """The records of the run's input and what followed it: from its final window,
        where they are the last `after` recorded, or, when summarisation folded some
        away, from the transcript."""
        window = values.get("messages") or []
        first = run.input[0].id
        for index in range(len(window) - 1, -1, -1):
            if window[index].id == first:
                mine = window[index:]
                start = after - len(mine)
                if start >= 0:
                    return [transcript.message_to_record(m, start + i) for i, m in enumerate(mine)]
                break
        # `before` counted the transcript at the claim, which may hold what a killed
        # run wrote past its state; this run wrote over that from its state's length.
        start = min(run.before, after - 1)
        if start < 0:
            return []
        records, _ = yield _Db("page", (run.key, start, after - start))
        return records

    def _finish_run(
        self, run: _Run, values: dict[str, Any] | None, failure: BaseException | None = None
    ) -> _Steps:
        """Record what the run added in the session and release the thread (`values`:
        the final state; None when the run failed with `failure`)."""
        yield _StopRenew(run.renewal)
        if failure is not None and as_unavailable(failure) is not None:
            # The database is out: each call of the cleanup would wait out the deadline
            # in turn. The lease is given back as soon as it answers again, and the
            # input, never acknowledged, is recorded by the next run if its checkpoint
            # was saved.
            yield _GiveBack(run.key, run.token)
            return None
        thread_id = run.record["thread_id"]
        try:
            if values is None:
                # The run failed (a model error, say) before its input was recorded:
                # record it where the next run will write it again, so no turn is lost.
                values = yield from self._state(run.owner, thread_id)
                after = values.get("transcript_len", run.before)
                pending = transcript.unrecorded(values)
                if pending:
                    records = [
                        transcript.message_to_record(m, after + i) for i, m in enumerate(pending)
                    ]
                    try:
                        yield _Db("append", (run.key, after, records, run.token))
                        after += len(pending)
                    except LeaseLostError:
                        logger.warning("a failed run on %s lost its lease", run.key)
                values = {}
            else:
                after = values.get("transcript_len", run.before)
            added = yield from self._added(run, values, after)
            record = self._touched(run.record, added)
            if not (yield _Db("save", (run.owner, record, run.token, True))):
                logger.warning("thread %s changed hands before its run finished", run.key)
        except BaseException:
            yield _Db("release", (run.key, run.token))
            raise
        reply = next(
            (
                transcript.content_text(r["content"])
                for r in reversed(added)
                if r["role"] == "assistant"
            ),
            "",
        )
        return RunResult(thread_id=thread_id, reply=reply, messages=added)

    def _run_steps(self, owner: Owner, thread_id: str | None, messages: Sequence[Any]) -> _Steps:
        run = yield from self._begin_run(owner, thread_id, messages)
        config = self.config(owner, run.record["thread_id"], run.token)
        try:
            values = yield _Invoke({"messages": run.input}, config, self.run_context(owner))
        except BaseException as exc:
            yield from self._finish_run(run, None, exc)
            raise
        return (yield from self._finish_run(run, values))

    def _touched(self, record: dict[str, Any], added: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """The record after a run or an append: active now, with the topics of `added`.

        Its counts are the transcript's own, kept by the session database with each
        transcript write (a run killed between its writes and this update leaves them
        right), so they are not touched here.
        """
        return {
            **record,
            "last_active_at": self.clock().isoformat(),
            "topics": _topics(
                [transcript.content_text(r["content"]) for r in added if r["role"] == "user"],
                record.get("topics", {}),
            ),
        }

    def _add_messages(self, owner: Owner, thread_id: str, messages: Sequence[Any]) -> _Steps:
        record, token = yield from self._claim(owner, thread_id)
        key = owner.thread_key(thread_id)
        try:
            if self.is_idle(record):  # an append does not revive a session that expired
                record = yield from self._expire(owner, record)
            if record["status"] == "ended":
                raise SessionEndedError(f"thread {thread_id!r} has ended")
            state = yield from self._state(owner, thread_id)
            window = state.get("messages") or []
            new = to_messages(
                messages,
                known_calls=[
                    str(c["id"]) for m in window if isinstance(m, AIMessage) for c in m.tool_calls
                ],
            )
            total = max(state.get("transcript_len", 0), record.get("message_count", 0))
            records = [transcript.message_to_record(m, total + i) for i, m in enumerate(new)]
            if new:
                yield _Db("append", (key, total, records, token))
                yield _UpdateState(
                    self.config(owner, thread_id),
                    {
                        "messages": new,
                        "transcript_len": total + len(new),
                        "recorded_id": new[-1].id,
                    },
                )
            yield _Db("save", (owner, self._touched(record, records), token, True))
        except BaseException:
            yield _Db("release", (key, token))
            raise
        return total + len(new)

    def _update_summary(self, owner: Owner, thread_id: str, summary: str) -> _Steps:
        if not isinstance(summary, str):
            raise InvalidInputError("summary must be a string")
        _, token = yield from self._claim(owner, thread_id)
        try:
            yield _UpdateState(self.config(owner, thread_id), {"summary": summary})
        finally:
            yield _Db("release", (owner.thread_key(thread_id), token))
        return summary

    def _summary(self, owner: Owner, thread_id: str) -> _Steps:
        record = yield from self._load(owner, thread_id)
        return (yield from self._state(owner, thread_id)).get("summary", "") or record.get(
            "summary", ""
        )

    def _messages(self, owner: Owner, thread_id: str, limit: int, offset: int) -> _Steps:
        if limit < 0 or offset < 0:
            raise InvalidInputError("limit and offset must not be negative")
        yield from self._load(owner, thread_id)
        return (yield _Db("page", (owner.thread_key(thread_id), offset, limit)))

    def _newest(self, owner: Owner, thread_id: str, limit: int, skip: int) -> _Steps:
        if limit < 0 or skip < 0:
            raise InvalidInputError("limit and offset must not be negative")
        yield from self._load(owner, thread_id)
        if limit == 0:
            return [], (yield _Db("page", (owner.thread_key(thread_id), 0, 0)))[1]
        items, total = yield _Db("page", (owner.thread_key(thread_id), -(limit + skip), limit))
        return [r for r in items if r["seq"] < total - skip], total

    def _recent_context(self, owner: Owner, thread_id: str, max_messages: int) -> _Steps:
        yield from self._load(owner, thread_id)
        records, _ = yield _Db("page", (owner.thread_key(thread_id), -max_messages, max_messages))
        return transcript.format_context(records)

    # -- cores: memories -------------------------------------------------------------

    def _delete_all_in(self, ns: tuple[str, ...]) -> _Steps:
        ops: list[Op] = []
        while True:
            (page,) = yield _Batch([SearchOp(ns, limit=_PAGE, offset=len(ops))])
            ops.extend(PutOp(item.namespace, item.key, None) for item in page)
            if len(page) < _PAGE:
                return ops

    def _memory_ns(self, owner: Owner, thread_id: str | None) -> _Steps:
        if thread_id is None:
            return namespaces.user_memories(owner.tenant, owner.user)
        yield from self._load(owner, thread_id)
        return scope_namespace("session", owner.tenant, owner.user, owner.thread_key(thread_id))

    def _save_memory(self, owner: Owner, key: str, value: Any, thread_id: str | None) -> _Steps:
        try:
            check_id("memory key", key)
            stored = memory_value(value)
        except (InvalidIdError, MemoryTooLargeError) as exc:
            raise InvalidInputError(str(exc)) from exc
        ns = yield from self._memory_ns(owner, thread_id)
        yield _Batch([PutOp(ns, key, stored)])
        (item,) = yield _Batch([GetOp(ns, key)])
        return memory_out(item, "session" if thread_id else "user")

    def _get_memory(self, owner: Owner, key: str, thread_id: str | None) -> _Steps:
        check_id("memory key", key)
        ns = yield from self._memory_ns(owner, thread_id)
        (item,) = yield _Batch([GetOp(ns, key)])
        if item is None:
            raise NotFoundError(f"memory {key!r} not found")
        return memory_out(item, "session" if thread_id else "user")

    def _delete_memory(self, owner: Owner, key: str, thread_id: str | None) -> _Steps:
        yield from self._get_memory(owner, key, thread_id)
        ns = yield from self._memory_ns(owner, thread_id)
        yield _Batch([PutOp(ns, key, None)])

    def _list_memories(
        self, owner: Owner, query: str | None, limit: int, thread_id: str | None
    ) -> _Steps:
        ns = yield from self._memory_ns(owner, thread_id)
        (items,) = yield _Batch([SearchOp(ns, query=query or None, limit=limit)])
        return [memory_out(i, "session" if thread_id else "user") for i in items]

    def _clear_memories(self, owner: Owner, thread_id: str | None) -> _Steps:
        ns = yield from self._memory_ns(owner, thread_id)
        ops = yield from self._delete_all_in(ns)
        if ops:
            yield _Batch(ops)
        return len(ops)

    # -- public API: sync ----------------------------------------------------------

    def create(
        self, owner: Owner, thread_id: str | None = None, metadata: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Create a session (a random UUID id unless `thread_id` is given) within the cap."""
        return self._drive(self._create(owner, thread_id, metadata))

    def get(self, owner: Owner, thread_id: str) -> dict[str, Any]:
        """The session record (expired first if idle); `NotFoundError` if absent or
        someone else's."""
        return self._drive(self._load(owner, thread_id))

    def get_or_create(
        self, owner: Owner, thread_id: str | None = None
    ) -> tuple[dict[str, Any], bool]:
        """Resume a session or create it: `(record, created)`."""
        return self._drive(self._get_or_create(owner, thread_id))

    def list(
        self, owner: Owner, limit: int = 20, offset: int = 0, status: str | None = None
    ) -> tuple[builtins.list[dict[str, Any]], int]:
        """The owner's sessions (optionally only `active` or `ended` ones), newest activity
        first, and their total."""
        return self._drive(self._list(owner, limit, offset, status))

    def detail(self, owner: Owner, thread_id: str) -> tuple[dict[str, Any], str, bool]:
        """The session record, its running summary and whether a run holds it."""
        return self._drive(self._detail(owner, thread_id))

    def end(self, owner: Owner, thread_id: str) -> dict[str, Any]:
        """End a session; long enough ones leave their summary in long-term memory.

        Raises:
            ConflictError: a run is active on the thread.
        """
        return self._drive(self._end(owner, thread_id))

    def delete(self, owner: Owner, thread_id: str) -> dict[str, Any]:
        """Delete a session's checkpoints, transcript, session memories and record.

        Raises:
            ConflictError: a run is active on the thread.
        """
        return self._drive(self._delete(owner, thread_id))

    def erase(self, owner: Owner) -> dict[str, int]:
        """Delete every thread, transcript and memory of the owner; counts of what went."""
        return self._drive(self._erase(owner))

    def sweep(self, hold: float = 60.0) -> int:
        """Expire every idle session (in one process at a time: the caller that wins the
        sweep lease keeps it for `hold` seconds); returns how many."""
        return self._drive(self._sweep(hold))

    def run(self, owner: Owner, thread_id: str | None, messages: Sequence[Any]) -> RunResult:
        """Send messages to the agent on a thread (created if new) and return its reply.

        Raises:
            ConflictError: another run holds the thread, or the session has ended.
            RateLimitedError: the owner's rate limit is reached.
        """
        return self._drive(self._run_steps(owner, thread_id, messages))

    def add_messages(self, owner: Owner, thread_id: str, messages: Sequence[Any]) -> int:
        """Append messages without running the model; returns the new total."""
        return self._drive(self._add_messages(owner, thread_id, messages))

    def get_messages(
        self, owner: Owner, thread_id: str, limit: int = 20, offset: int = 0
    ) -> tuple[builtins.list[dict[str, Any]], int]:
        """A page of the full transcript, oldest first, and the total."""
        return self._drive(self._messages(owner, thread_id, limit, offset))

    def get_newest_messages(
        self, owner: Owner, thread_id: str, limit: int = 20, skip: int = 0
    ) -> tuple[builtins.list[dict[str, Any]], int]:
        """The newest `limit` messages (after skipping the newest `skip`), oldest first, and
        the total: "the last N messages" without knowing the total first."""
        return self._drive(self._newest(owner, thread_id, limit, skip))

    def recent_context(self, owner: Owner, thread_id: str, max_messages: int = 20) -> str:
        """The last messages formatted for a prompt, one `role: text` line each."""
        return self._drive(self._recent_context(owner, thread_id, max_messages))

    def get_summary(self, owner: Owner, thread_id: str) -> str:
        """The running summary of a thread."""
        return self._drive(self._summary(owner, thread_id))

    def update_summary(self, owner: Owner, thread_id: str, summary: str) -> str:
        """Replace the running summary of a thread."""
        return self._drive(self._update_summary(owner, thread_id, summary))

    def get_state(self, owner: Owner, thread_id: str) -> tuple[dict[str, Any], Any]:
        """The session record and the thread's latest `StateSnapshot`."""
        return self._drive(self._snapshot(owner, thread_id))

    def save_memory(
        self, owner: Owner, key: str, value: Any, thread_id: str | None = None
    ) -> dict[str, Any]:
        """Save a user memory, or a session memory when `thread_id` is given."""
        return self._drive(self._save_memory(owner, key, value, thread_id))

    def get_memory(self, owner: Owner, key: str, thread_id: str | None = None) -> dict[str, Any]:
        """One memory; `NotFoundError` if absent."""
        return self._drive(self._get_memory(owner, key, thread_id))

    def delete_memory(self, owner: Owner, key: str, thread_id: str | None = None) -> None:
        """Delete one memory; `NotFoundError` if absent."""
        return self._drive(self._delete_memory(owner, key, thread_id))

    def list_memories(
        self, owner: Owner, query: str | None = None, limit: int = 20, thread_id: str | None = None
    ) -> builtins.list[dict[str, Any]]:
        """Memories, most relevant first when `query` is given."""
        return self._drive(self._list_memories(owner, query, limit, thread_id))

    def clear_memories(self, owner: Owner, thread_id: str | None = None) -> int:
        """Delete all of the owner's user memories (or one session's); returns how many."""
        return self._drive(self._clear_memories(owner, thread_id))

    # -- public API: async ---------------------------------------------------------

    async def acreate(
        self, owner: Owner, thread_id: str | None = None, metadata: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Async `create`."""
        return await self._adrive(self._create(owner, thread_id, metadata))

    async def aget(self, owner: Owner, thread_id: str) -> dict[str, Any]:
        """Async `get`."""
        return await self._adrive(self._load(owner, thread_id))

    async def aget_or_create(
        self, owner: Owner, thread_id: str | None = None
    ) -> tuple[dict[str, Any], bool]:
        """Async `get_or_create`."""
        return await self._adrive(self._get_or_create(owner, thread_id))

    async def alist(
        self, owner: Owner, limit: int = 20, offset: int = 0, status: str | None = None
    ) -> tuple[builtins.list[dict[str, Any]], int]:
        """Async `list`."""
        return await self._adrive(self._list(owner, limit, offset, status))

    async def adetail(self, owner: Owner, thread_id: str) -> tuple[dict[str, Any], str, bool]:
        """Async `detail`."""
        return await self._adrive(self._detail(owner, thread_id))

    async def aend(self, owner: Owner, thread_id: str) -> dict[str, Any]:
        """Async `end`."""
        return await self._adrive(self._end(owner, thread_id))

    async def adelete(self, owner: Owner, thread_id: str) -> dict[str, Any]:
        """Async `delete`."""
        return await self._adrive(self._delete(owner, thread_id))

    async def aerase(self, owner: Owner) -> dict[str, int]:
        """Async `erase`."""
        return await self._adrive(self._erase(owner))

    async def asweep(self, hold: float = 60.0) -> int:
        """Async `sweep`."""
        return await self._adrive(self._sweep(hold))

    async def arun(self, owner: Owner, thread_id: str | None, messages: Sequence[Any]) -> RunResult:
        """Async `run`."""
        return await self._adrive(self._run_steps(owner, thread_id, messages))

    async def aadd_messages(self, owner: Owner, thread_id: str, messages: Sequence[Any]) -> int:
        """Async `add_messages`."""
        return await self._adrive(self._add_messages(owner, thread_id, messages))

    async def aget_messages(
        self, owner: Owner, thread_id: str, limit: int = 20, offset: int = 0
    ) -> tuple[builtins.list[dict[str, Any]], int]:
        """Async `get_messages`."""
        return await self._adrive(self._messages(owner, thread_id, limit, offset))

    async def aget_newest_messages(
        self, owner: Owner, thread_id: str, limit: int = 20, skip: int = 0
    ) -> tuple[builtins.list[dict[str, Any]], int]:
        """Async `get_newest_messages`."""
        return await self._adrive(self._newest(owner, thread_id, limit, skip))

    async def arecent_context(self, owner: Owner, thread_id: str, max_messages: int = 20) -> str:
        """Async `recent_context`."""
        return await self._adrive(self._recent_context(owner, thread_id, max_messages))

    async def aget_summary(self, owner: Owner, thread_id: str) -> str:
        """Async `get_summary`."""
        return await self._adrive(self._summary(owner, thread_id))

    async def aupdate_summary(self, owner: Owner, thread_id: str, summary: str) -> str:
        """Async `update_summary`."""
        return await self._adrive(self._update_summary(owner, thread_id, summary))

    async def aget_state(self, owner: Owner, thread_id: str) -> tuple[dict[str, Any], Any]:
        """Async `get_state`."""
        return await self._adrive(self._snapshot(owner, thread_id))

    async def ahistory(self, owner: Owner, thread_id: str) -> AsyncGenerator[Any, None]:
        """The thread's retained checkpoints (`StateSnapshot`s), newest first."""
        await self._adrive(self._load(owner, thread_id))
        async for snapshot in self.graph.aget_state_history(self.config(owner, thread_id)):
            yield snapshot

    def history(self, owner: Owner, thread_id: str) -> Iterator[Any]:
        """Sync `ahistory`."""
        self._drive(self._load(owner, thread_id))
        yield from self.graph.get_state_history(self.config(owner, thread_id))

    async def asave_memory(
        self, owner: Owner, key: str, value: Any, thread_id: str | None = None
    ) -> dict[str, Any]:
        """Async `save_memory`."""
        return await self._adrive(self._save_memory(owner, key, value, thread_id))

    async def aget_memory(
        self, owner: Owner, key: str, thread_id: str | None = None
    ) -> dict[str, Any]:
        """Async `get_memory`."""
        return await self._adrive(self._get_memory(owner, key, thread_id))

    async def adelete_memory(self, owner: Owner, key: str, thread_id: str | None = None) -> None:
        """Async `delete_memory`."""
        return await self._adrive(self._delete_memory(owner, key, thread_id))

    async def alist_memories(
        self, owner: Owner, query: str | None = None, limit: int = 20, thread_id: str | None = None
    ) -> builtins.list[dict[str, Any]]:
        """Async `list_memories`."""
        return await self._adrive(self._list_memories(owner, query, limit, thread_id))

    async def aclear_memories(self, owner: Owner, thread_id: str | None = None) -> int:
        """Async `clear_memories`."""
        return await self._adrive(self._clear_memories(owner, thread_id))

    # -- streaming ---------------------------------------------------------------

    async def astream(
        self, owner: Owner, thread_id: str | None, messages: Sequence[Any]
    ) -> AsyncIterator[tuple[str, Any]]:
        """Run like `arun`, yielding `("thread", thread_id)` once the thread is claimed,
        `("token", text)` as the model writes, then `("done", RunResult)`.

        A consumer that stops early does not lose the turn: the session record is updated
        with whatever the run stored, and the thread is released.
        """
        run = await self._adrive(self._begin_run(owner, thread_id, messages))
        config = self.config(owner, run.record["thread_id"], run.token)
        values: dict[str, Any] | None = None
        try:
            yield "thread", run.record["thread_id"]
            async for mode, payload in self.graph.astream(  # type: ignore[call-overload]
                {"messages": run.input},
                config,
                context=self.run_context(owner),
                stream_mode=["messages", "values"],
                durability=self.durability,
            ):
                if mode == "values":
                    values = payload
                elif text := _token_text(*payload):
                    yield "token", text
        except BaseException as exc:
            await self._adrive(self._finish_run(run, None, exc))
            raise
        result = await self._adrive(self._finish_run(run, values))
        yield "done", result

    def stream(
        self, owner: Owner, thread_id: str | None, messages: Sequence[Any]
    ) -> Iterator[tuple[str, Any]]:
        """Sync `astream`: `("thread", thread_id)`, `("token", text)` events, then
        `("done", RunResult)`."""
        run = self._drive(self._begin_run(owner, thread_id, messages))
        config = self.config(owner, run.record["thread_id"], run.token)
        values: dict[str, Any] | None = None
        try:
            yield "thread", run.record["thread_id"]
            for mode, payload in self.graph.stream(  # type: ignore[call-overload]
                {"messages": run.input},
                config,
                context=self.run_context(owner),
                stream_mode=["messages", "values"],
                durability=self.durability,
            ):
                if mode == "values":
                    values = payload
                elif text := _token_text(*payload):
                    yield "token", text
        except BaseException as exc:
            self._drive(self._finish_run(run, None, exc))
            raise
        yield "done", self._drive(self._finish_run(run, values))

    # == LangGraph server API ===========================================================
    # What the `/langgraph` routes (the LangGraph server API for langgraph-sdk clients,
    # RemoteGraph and useStream chat UIs) need beyond the methods above. Every method
    # reuses the cores above, so leases, limits, expiry and ownership apply unchanged.

    def _tail(self, key: str, values: dict[str, Any] | None, recent: int) -> _Steps:
        """The last `recent` transcript messages as of `values` (a state; None: now)."""
        if recent <= 0:
            return []
        if values is None:
            records, _ = yield _Db("page", (key, -recent, recent))
        else:
            total = values.get("transcript_len", 0)
            count = min(recent, total)
            records = (yield _Db("page", (key, total - count, count)))[0] if count else []
        return [transcript.record_to_message(r) for r in records]

    def _client_values(
        self, owner: Owner, thread_id: str, values: dict[str, Any], recent: int
    ) -> _Steps:
        recorded = yield from self._tail(owner.thread_key(thread_id), values, recent)
        return client_values(recorded, transcript.unrecorded(values), values, recent)

    def _view(self, owner: Owner, thread_id: str, checkpoint_id: str | None, recent: int) -> _Steps:
        record = yield from self._load(owner, thread_id)
        config = self.config(owner, thread_id)
        if checkpoint_id is not None:
            config["configurable"]["checkpoint_id"] = checkpoint_id
        snapshot = yield _GetState(config)
        if checkpoint_id is not None and snapshot.created_at is None:
            raise NotFoundError(f"checkpoint {checkpoint_id!r} not found on thread {thread_id!r}")
        values = yield from self._client_values(owner, thread_id, snapshot.values or {}, recent)
        return record, snapshot, values

    def _set_metadata(self, owner: Owner, thread_id: str, metadata: dict[str, Any]) -> _Steps:
        record, token = yield from self._claim(owner, thread_id)
        try:
            updated = {**record, "metadata": {**(record.get("metadata") or {}), **metadata}}
            if not (yield _Db("save", (owner, updated, token, False))):
                raise ConflictError(f"thread {thread_id!r} changed meanwhile; retry")
        finally:
            yield _Db("release", (owner.thread_key(thread_id), token))
        return updated

    def _running(self, owner: Owner, thread_id: str) -> _Steps:
        return (yield _Db("leased", (owner.thread_key(thread_id),)))

    def graph_context(self, owner: Owner, overrides: dict[str, Any] | None = None) -> Context:
        """The run context with a client's `overrides` of its tuning fields; the owner
        always comes from `owner`, whatever the overrides say.

        Raises:
            InvalidInputError: an override names no field of `Context`.
        """
        tuning = dict(overrides or {})
        tuning.pop("user_id", None)
        tuning.pop("tenant_id", None)
        known = {f.name for f in fields(Context)}
        if unknown := sorted(set(tuning) - known):
            raise InvalidInputError(f"context has unknown fields: {', '.join(unknown)}")
        return replace(self.run_context(owner), **tuning)

    def view_state(
        self, owner: Owner, thread_id: str, checkpoint_id: str | None = None, recent: int = 50
    ) -> tuple[dict[str, Any], Any, dict[str, Any]]:
        """The session record, the `StateSnapshot` (latest, or at `checkpoint_id`) and the
        values a LangGraph client sees: the last `recent` messages of the transcript as of
        that checkpoint, the summary and the transcript length.

        Raises:
            NotFoundError: no such thread for this owner, or no such checkpoint.
        """
        return self._drive(self._view(owner, thread_id, checkpoint_id, recent))

    async def aview_state(
        self, owner: Owner, thread_id: str, checkpoint_id: str | None = None, recent: int = 50
    ) -> tuple[dict[str, Any], Any, dict[str, Any]]:
        """Async `view_state`."""
        return await self._adrive(self._view(owner, thread_id, checkpoint_id, recent))

    def client_values(
        self, owner: Owner, thread_id: str, values: dict[str, Any], recent: int = 50
    ) -> dict[str, Any]:
        """The values a LangGraph client sees for a state of the owner's thread (one of
        `history`'s snapshots): see `view_state`."""
        return self._drive(self._client_values(owner, thread_id, values, recent))

    async def aclient_values(
        self, owner: Owner, thread_id: str, values: dict[str, Any], recent: int = 50
    ) -> dict[str, Any]:
        """Async `client_values`."""
        return await self._adrive(self._client_values(owner, thread_id, values, recent))

    def set_metadata(
        self, owner: Owner, thread_id: str, metadata: dict[str, Any]
    ) -> dict[str, Any]:
        """Merge `metadata` into the session's metadata (under the thread's lease).

        Raises:
            ConflictError: a run is active on the thread.
        """
        return self._drive(self._set_metadata(owner, thread_id, metadata))

    async def aset_metadata(
        self, owner: Owner, thread_id: str, metadata: dict[str, Any]
    ) -> dict[str, Any]:
        """Async `set_metadata`."""
        return await self._adrive(self._set_metadata(owner, thread_id, metadata))

    def list_all(self, owner: Owner) -> builtins.list[dict[str, Any]]:
        """Every session record of the owner, newest activity first."""
        return self._drive(self._all(owner))

    async def alist_all(self, owner: Owner) -> builtins.list[dict[str, Any]]:
        """Async `list_all`."""
        return await self._adrive(self._all(owner))

    def running(self, owner: Owner, thread_id: str) -> bool:
        """Whether a run holds the owner's thread now."""
        return self._drive(self._running(owner, thread_id))

    async def arunning(self, owner: Owner, thread_id: str) -> bool:
        """Async `running`."""
        return await self._adrive(self._running(owner, thread_id))

    async def arollback(self, owner: Owner, thread_id: str, run_id: str) -> bool:
        """Remove what run `run_id` did on the owner's thread (it has stopped): the state
        goes back to the newest checkpoint no step of the run wrote (copied as the head,
        so later runs continue from it) and the transcript back to that checkpoint's
        length. Answers whether the run had written anything.

        Raises:
            NotFoundError: no such thread for this owner.
            ConflictError: a run holds the thread.
        """
        _record, token = await self._adrive(self._claim(owner, thread_id))
        key = owner.thread_key(thread_id)
        try:
            before = None
            wrote = False
            async for snapshot in self.graph.aget_state_history(self.config(owner, thread_id)):
                if (snapshot.metadata or {}).get("run_id") != run_id:
                    before = snapshot
                    break
                wrote = True
            if not wrote:
                return False
            if before is None:  # the run was the thread's first
                await self._adrive(self._rewind(key, None, 0))
            else:
                length = (before.values or {}).get("transcript_len", 0)
                await self._adrive(self._rewind(key, before.config, length))
            return True
        finally:
            await self._adrive(self._release(key, token))

    def _rewind(self, key: str, config: RunnableConfig | None, length: int) -> _Steps:
        if config is None:
            yield _DeleteThread(key)
        else:
            yield _Copy(config)
        yield _Db("truncate", (key, length))

    def _release(self, key: str, token: str) -> _Steps:
        yield _Db("release", (key, token))

    async def astream_graph(
        self,
        owner: Owner,
        thread_id: str | None,
        messages: Sequence[Any],
        *,
        stream_mode: Sequence[str] = ("values",),
        context: dict[str, Any] | None = None,
        recent: int = 50,
        run_id: str | None = None,
    ) -> AsyncIterator[tuple[str, Any]]:
        """Run like `arun`, yielding the graph's own stream parts for LangGraph clients.

        With `run_id`, the checkpoints carry it in their metadata, and the same run started
        again (taken over after its process died) resumes from its last checkpoint instead
        of starting over: the messages must then carry the ids they had the first time.

        Yields `("thread", record)` once the thread is claimed, then `(mode, payload)` for
        each part of the graph's `stream_mode` (`messages` payloads are `(chunk,
        metadata)`; `values` payloads are what `view_state` shows: the recent transcript
        followed by this run's messages, so summarisation never takes messages off a
        client's screen), then `("done", (RunResult, last values payload))`.
        """
        graph_context = self.graph_context(owner, context)
        run = await self._adrive(self._begin_run(owner, thread_id, messages))
        config = self.config(owner, run.record["thread_id"], run.token)
        if run_id is not None:
            config["metadata"] = {"run_id": run_id}
        modes = list(dict.fromkeys([*stream_mode, "values"]))
        values: dict[str, Any] | None = None
        view: dict[str, Any] = {}
        try:
            yield "thread", run.record
            earlier = await self._adrive(self._tail(run.key, None, recent))
            async for mode, payload in self.graph.astream(  # type: ignore[call-overload]
                {"messages": run.input},
                config,
                context=graph_context,
                stream_mode=modes,
                durability=self.durability,
            ):
                if mode == "values":
                    values = payload
                    window = payload.get("messages") or []
                    view = client_values(earlier, _run_part(window, run.input), payload, recent)
                    if "values" in stream_mode:
                        yield "values", view
                else:
                    yield mode, payload
        except BaseException as exc:
            await self._adrive(self._finish_run(run, None, exc))
            raise
        result = await self._adrive(self._finish_run(run, values))
        yield "done", (result, view)


# -- LangGraph server API: pure helpers ----------------------------------------------


def client_values(
    recorded: Sequence[BaseMessage],
    later: Sequence[BaseMessage],
    values: dict[str, Any],
    recent: int,
) -> dict[str, Any]:
    """The state values a LangGraph client sees.

    Args:
        recorded: The recent transcript, oldest first.
        later: Messages after it (not yet recorded, or added by the run in progress);
            those already in `recorded` are skipped.
        values: The graph state, for its summary and transcript length.
        recent: How many messages to show at most.
    """
    seen = {m.id for m in recorded}
    messages = [*recorded, *(m for m in later if m.id not in seen)]
    return {
        "messages": messages[-recent:] if recent > 0 else [],
        "summary": values.get("summary") or "",
        "transcript_len": values.get("transcript_len", 0),
    }


def _run_part(window: Sequence[BaseMessage], new: Sequence[BaseMessage]) -> list[BaseMessage]:
    """The messages of a run's working window from its first input on (the run's own)."""
    ids = {m.id for m in new}
    for index, message in enumerate(window):
        if message.id in ids:
            return list(window[index:])
    # Summarisation folded the input away, and with it everything before it: what remains
    # of the window came after the input.
    return [*new, *window]
