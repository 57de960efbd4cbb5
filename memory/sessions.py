"""The sessions API: threads by id, their transcripts, summaries and memories, sync and async.

Every method exists twice with one shared core: `get`/`aget`, `run`/`arun`, ... Each core is
a generator that yields the I/O it needs (store batches, graph state reads and writes, graph
runs, checkpoint deletion); `SessionManager` performs it with the sync or the async APIs of
LangGraph, so the logic is written once. A manager built on async backends must be used
through the `a*` methods, and the LangGraph savers say so loudly when it is not.
"""

from __future__ import annotations

import builtins
import re
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Generator, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from langchain_core.messages import AIMessageChunk, AnyMessage, BaseMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph
from langgraph.store.base import GetOp, Op, PutOp, SearchOp

from agent import RECURSION_LIMIT, Context
from agent.tools import scope_namespace
from memory import namespaces, transcript
from memory.errors import ConflictError, InvalidInputError, NotFoundError
from memory.memories import MemoryTooLargeError, memory_out, memory_value
from memory.namespaces import InvalidIdError, Owner, check_id
from memory.stores.values import StoreValueError, check_put

#: Messages a session needs before ending it writes its summary into long-term memory.
MIN_MESSAGES_FOR_SUMMARY = 4
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


def _now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class RunResult:
    """What one run produced: the reply and every message it added to the transcript."""

    thread_id: str
    reply: str
    messages: list[dict[str, Any]]


@dataclass
class _Batch:
    ops: Sequence[Op]


@dataclass
class _GetState:
    config: RunnableConfig


@dataclass
class _UpdateState:
    config: RunnableConfig
    values: dict[str, Any]


@dataclass
class _Invoke:
    input: dict[str, Any]
    config: RunnableConfig
    context: Context


@dataclass
class _Run:
    owner: Owner
    record: dict[str, Any]
    key: str
    before: int


@dataclass
class _DeleteThread:
    thread_key: str


_Steps = Generator[Any, Any, Any]
Durability = Literal["sync", "async", "exit"]


def to_messages(items: Sequence[dict[str, Any] | BaseMessage]) -> list[AnyMessage]:
    """Convert `{"role", "content", ...}` dicts (or messages) to LangChain messages.

    Tool calls (`{"id", "name", "args"}`) and tool results (`tool_call_id`) are kept, so a
    whole tool exchange can be stored. Every message gets an id.
    """
    out: list[AnyMessage] = []
    for i, item in enumerate(items):
        if isinstance(item, BaseMessage):
            message = item.model_copy()  # type: ignore[assignment]
        else:
            if not isinstance(item, dict):
                raise InvalidInputError(f"messages[{i}] must be an object with role and content")
            role = item.get("role")
            if role not in ("user", "assistant", "system", "tool"):
                raise InvalidInputError(
                    f"messages[{i}].role must be user, assistant, system or tool, got {role!r}"
                )
            content = item.get("content", "")
            if not isinstance(content, str | list):
                raise InvalidInputError(f"messages[{i}].content must be a string")
            if role == "tool" and not item.get("tool_call_id"):
                raise InvalidInputError(f"messages[{i}] is a tool result without tool_call_id")
            record = {**item, "content": content}
            try:
                message = transcript.record_to_message(record)
            except (KeyError, TypeError, ValueError) as exc:
                raise InvalidInputError(f"messages[{i}] is malformed: {exc}") from exc
        if not message.id:
            message.id = str(uuid.uuid4())
        try:  # reject what a backend cannot store before it reaches the thread's state
            check_put(PutOp(("messages",), str(i), transcript.message_to_record(message, i)))
        except StoreValueError as exc:
            raise InvalidInputError(f"messages[{i}]: {exc}") from exc
        out.append(message)  # type: ignore[arg-type]
    return out


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


class SessionManager:
    """Sessions, transcripts, summaries and memories over a compiled agent graph.

    Args:
        graph: The agent compiled with a checkpointer and a store.
        context: Defaults for each run's context (model, token budget); the owner is
            filled in per call.
        min_messages_for_summary: Messages a session needs before `end` saves its summary
            into the user's long-term memory.
        durability: When checkpoints are written: `async` (each step, in the background),
            `sync`, or `exit` (once per run: fastest; a crashed turn restarts).
    """

    def __init__(
        self,
        graph: CompiledStateGraph,
        *,
        context: Context | None = None,
        min_messages_for_summary: int = MIN_MESSAGES_FOR_SUMMARY,
        durability: Durability = "async",
    ) -> None:
        if graph.store is None or graph.checkpointer is None:
            raise ValueError(
                "SessionManager needs a graph compiled with a checkpointer and a store"
            )
        self.graph = graph
        self.durability = durability
        self.store = graph.store
        self.checkpointer = graph.checkpointer
        self.context = context or Context()
        self.min_messages_for_summary = min_messages_for_summary
        self._active: set[str] = set()

    # -- drivers ---------------------------------------------------------------

    def _perform(self, request: Any) -> Any:
        if isinstance(request, _Batch):
            return self.store.batch(request.ops)
        if isinstance(request, _GetState):
            return self.graph.get_state(request.config)
        if isinstance(request, _UpdateState):
            return self.graph.update_state(request.config, request.values, as_node="call_model")
        if isinstance(request, _Invoke):
            return self.graph.invoke(  # type: ignore[call-overload]
                request.input, request.config, context=request.context, durability=self.durability
            )
        return self.checkpointer.delete_thread(request.thread_key)  # type: ignore[union-attr]

    async def _aperform(self, request: Any) -> Any:
        if isinstance(request, _Batch):
            return await self.store.abatch(request.ops)
        if isinstance(request, _GetState):
            return await self.graph.aget_state(request.config)
        if isinstance(request, _UpdateState):
            return await self.graph.aupdate_state(
                request.config, request.values, as_node="call_model"
            )
        if isinstance(request, _Invoke):
            return await self.graph.ainvoke(  # type: ignore[call-overload]
                request.input, request.config, context=request.context, durability=self.durability
            )
        return await self.checkpointer.adelete_thread(request.thread_key)  # type: ignore[union-attr]

    def _drive(self, steps: _Steps) -> Any:
        # Failures are thrown back into the core, so its `finally` blocks run.
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
            except Exception as exc:
                value, resume = exc, steps.throw

    async def _adrive(self, steps: _Steps) -> Any:
        resume: Any = steps.send
        value: Any = None
        while True:
            try:
                request = resume(value)
            except StopIteration as done:
                return done.value
            try:
                value, resume = await self._aperform(request), steps.send
            except StoreValueError as exc:
                value, resume = InvalidInputError(str(exc)), steps.throw
            except Exception as exc:
                value, resume = exc, steps.throw

    # -- helpers -----------------------------------------------------------------

    @staticmethod
    def config(owner: Owner, thread_id: str) -> RunnableConfig:
        """The LangGraph config of an owner's thread."""
        return {
            "configurable": {"thread_id": owner.thread_key(thread_id)},
            "recursion_limit": RECURSION_LIMIT,
        }

    def run_context(self, owner: Owner) -> Context:
        """This manager's default context, acting for `owner`."""
        base = self.context
        return Context(
            user_id=owner.user,
            tenant_id=owner.tenant,
            model=base.model,
            token_budget=base.token_budget,
            keep_ratio=base.keep_ratio,
            summary_max_tokens=base.summary_max_tokens,
            memory_search_limit=base.memory_search_limit,
            system_prompt=base.system_prompt,
        )

    def _load(self, owner: Owner, thread_id: str) -> _Steps:
        check_id("thread_id", thread_id)
        (item,) = yield _Batch([GetOp(namespaces.sessions(owner.tenant, owner.user), thread_id)])
        if item is None:
            raise NotFoundError(f"thread {thread_id!r} not found")
        return dict(item.value)

    def _save(self, owner: Owner, record: dict[str, Any]) -> _Steps:
        ns = namespaces.sessions(owner.tenant, owner.user)
        yield _Batch([PutOp(ns, record["thread_id"], record, index=False)])
        return record

    def _create(
        self, owner: Owner, thread_id: str | None, metadata: dict[str, Any] | None
    ) -> _Steps:
        thread_id = check_id("thread_id", thread_id) if thread_id else str(uuid.uuid4())
        ns = namespaces.sessions(owner.tenant, owner.user)
        (existing,) = yield _Batch([GetOp(ns, thread_id)])
        if existing is not None:
            raise ConflictError(f"thread {thread_id!r} already exists")
        now = _now()
        record = {
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
        return (yield from self._save(owner, record))

    def _get_or_create(self, owner: Owner, thread_id: str | None) -> _Steps:
        if thread_id:
            try:
                return (yield from self._load(owner, thread_id)), False
            except NotFoundError:
                pass
        return (yield from self._create(owner, thread_id, None)), True

    def _list(self, owner: Owner, limit: int, offset: int) -> _Steps:
        # One user's registry entries: a scan of this user's sessions only, never of others'.
        ns = namespaces.sessions(owner.tenant, owner.user)
        records: list[dict[str, Any]] = []
        while True:
            (page,) = yield _Batch([SearchOp(ns, limit=_PAGE, offset=len(records))])
            records.extend(item.value for item in page)
            if len(page) < _PAGE:
                break
        records.sort(key=lambda r: (r["last_active_at"], r["thread_id"]), reverse=True)
        return records[offset : offset + limit], len(records)

    def _state(self, owner: Owner, thread_id: str) -> _Steps:
        snapshot = yield _GetState(self.config(owner, thread_id))
        return snapshot.values or {}

    def _begin_run(self, owner: Owner, thread_id: str | None, messages: Sequence[Any]) -> _Steps:
        """Validate a run, resume or create its thread and mark it active: `(run, input)`."""
        new = to_messages(messages)
        if not new:
            raise InvalidInputError("a run needs at least one message")
        record, _ = yield from self._get_or_create(owner, thread_id)
        thread_id = record["thread_id"]
        if record["status"] == "ended":
            raise ConflictError(f"thread {thread_id!r} has ended; start a new thread")
        key = owner.thread_key(thread_id)
        if key in self._active:
            raise ConflictError(f"a run is already active on thread {thread_id!r}")
        state = yield from self._state(owner, thread_id)
        # A failed run records its input in `_finish_run` ahead of the state's count.
        before = max(state.get("transcript_len", 0), record.get("message_count", 0))
        self._active.add(key)
        return _Run(owner, record, key, before), {"messages": new}

    def _finish_run(self, run: _Run) -> _Steps:
        """Release the thread and record what the run added, however the run ended."""
        self._active.discard(run.key)
        config = self.config(run.owner, run.record["thread_id"])
        values = (yield _GetState(config)).values
        after = values.get("transcript_len", run.before)
        pending = transcript.unrecorded(values)
        if pending:
            # The run failed before its messages were recorded (a model error, say): record
            # them at the places the next run will write them again, so no turn is lost.
            yield from self._append(run.key, after, pending)
            after += len(pending)
        found = yield _Batch(transcript.page_ops(run.key, run.before, after - run.before, after))
        records = transcript.page_records(found, run.before, after - run.before)
        yield from self._touch(run.owner, run.record, records, after)
        reply = next(
            (
                transcript.content_text(r["content"])
                for r in reversed(records)
                if r["role"] == "assistant"
            ),
            "",
        )
        return RunResult(thread_id=run.record["thread_id"], reply=reply, messages=records)

    def _run_steps(self, owner: Owner, thread_id: str | None, messages: Sequence[Any]) -> _Steps:
        run, graph_input = yield from self._begin_run(owner, thread_id, messages)
        try:
            yield _Invoke(
                graph_input, self.config(owner, run.record["thread_id"]), self.run_context(owner)
            )
        finally:
            result = yield from self._finish_run(run)
        return result

    def _touch(
        self, owner: Owner, record: dict[str, Any], added: Sequence[dict[str, Any]], total: int
    ) -> _Steps:
        counts = Counter(record.get("counts", {}))
        counts.update(r["role"] for r in added)
        record["counts"] = dict(counts)
        record["message_count"] = total
        record["last_active_at"] = _now()
        record["topics"] = _topics(
            [transcript.content_text(r["content"]) for r in added if r["role"] == "user"],
            record.get("topics", {}),
        )
        yield from self._save(owner, record)

    def _add_messages(self, owner: Owner, thread_id: str, messages: Sequence[Any]) -> _Steps:
        new = to_messages(messages)
        record = yield from self._load(owner, thread_id)
        if record["status"] == "ended":
            raise ConflictError(f"thread {thread_id!r} has ended")
        key = owner.thread_key(thread_id)
        total = (yield from self._state(owner, thread_id)).get("transcript_len", 0)
        if new:
            yield from self._append(key, total, new)
            yield _UpdateState(
                self.config(owner, thread_id),
                {"messages": new, "transcript_len": total + len(new), "recorded_id": new[-1].id},
            )
        records = [transcript.message_to_record(m, total + i) for i, m in enumerate(new)]
        yield from self._touch(owner, record, records, total + len(new))
        return total + len(new)

    def _append(self, key: str, start: int, messages: Sequence[BaseMessage]) -> _Steps:
        """Write `messages` into the transcript of thread `key` from position `start`."""
        prepare = transcript.prepare_ops(key, start)
        found = (yield _Batch(prepare)) if prepare else []
        yield _Batch(transcript.record_ops(key, start, messages, found))

    def _transcript_len(self, owner: Owner, record: dict[str, Any]) -> _Steps:
        # The record's count survives the checkpoints (an expired session has none left);
        # the state's is ahead of it while a run is being recorded.
        state = yield from self._state(owner, record["thread_id"])
        return max(state.get("transcript_len", 0), record.get("message_count", 0))

    def _messages(self, owner: Owner, thread_id: str, limit: int, offset: int) -> _Steps:
        record = yield from self._load(owner, thread_id)
        if limit < 0 or offset < 0:
            raise InvalidInputError("limit and offset must not be negative")
        total = yield from self._transcript_len(owner, record)
        found = yield _Batch(transcript.page_ops(owner.thread_key(thread_id), offset, limit, total))
        return transcript.page_records(found, offset, limit), total

    def _recent_context(self, owner: Owner, thread_id: str, max_messages: int) -> _Steps:
        record = yield from self._load(owner, thread_id)
        total = yield from self._transcript_len(owner, record)
        start = max(0, total - max_messages)
        found = yield _Batch(
            transcript.page_ops(owner.thread_key(thread_id), start, max_messages, total)
        )
        return transcript.format_context(transcript.page_records(found, start, max_messages))

    def _summary(self, owner: Owner, thread_id: str) -> _Steps:
        yield from self._load(owner, thread_id)
        return (yield from self._state(owner, thread_id)).get("summary", "")

    def _update_summary(self, owner: Owner, thread_id: str, summary: str) -> _Steps:
        yield from self._load(owner, thread_id)
        if not isinstance(summary, str):
            raise InvalidInputError("summary must be a string")
        yield _UpdateState(self.config(owner, thread_id), {"summary": summary})
        return summary

    def _end(self, owner: Owner, thread_id: str) -> _Steps:
        record = yield from self._load(owner, thread_id)
        if record["status"] == "ended":
            return record
        state = yield from self._state(owner, thread_id)
        if record["message_count"] >= self.min_messages_for_summary:
            total = state.get("transcript_len", 0)
            start = max(0, total - 20)
            found = yield _Batch(transcript.page_ops(owner.thread_key(thread_id), start, 20, total))
            recent = transcript.format_context(transcript.page_records(found, start, 20))
            summary = state.get("summary", "")
            text = (f"{summary}\n{recent}" if summary else recent)[-3000:]
            value = memory_value(
                f"Summary of session {thread_id} ({record['created_at'][:10]}): {text}"
            )
            ns = namespaces.user_memories(owner.tenant, owner.user)
            yield _Batch([PutOp(ns, f"session-summary-{thread_id}"[:128], value)])
            record["summary_saved"] = True
        record["status"] = "ended"
        record["ended_at"] = _now()
        return (yield from self._save(owner, record))

    def _delete(self, owner: Owner, thread_id: str) -> _Steps:
        record = yield from self._load(owner, thread_id)
        key = owner.thread_key(thread_id)
        if key in self._active:
            raise ConflictError(f"a run is active on thread {thread_id!r}; retry when it ends")
        total = yield from self._transcript_len(owner, record)
        session_ns = namespaces.session_memories(owner.tenant, owner.user, key)
        ops: list[Op] = list(transcript.delete_ops(key, total))
        ops += yield from self._delete_all_in(session_ns)
        ops.append(PutOp(namespaces.sessions(owner.tenant, owner.user), thread_id, None))
        yield _DeleteThread(key)
        yield _Batch(ops)
        return record

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
        """Create a session; a random UUID id unless `thread_id` is given."""
        return self._drive(self._create(owner, thread_id, metadata))

    def get(self, owner: Owner, thread_id: str) -> dict[str, Any]:
        """The session record; `NotFoundError` if absent or someone else's."""
        return self._drive(self._load(owner, thread_id))

    def get_or_create(
        self, owner: Owner, thread_id: str | None = None
    ) -> tuple[dict[str, Any], bool]:
        """Resume a session or create it: `(record, created)`."""
        return self._drive(self._get_or_create(owner, thread_id))

    def list(
        self, owner: Owner, limit: int = 20, offset: int = 0
    ) -> tuple[builtins.list[dict[str, Any]], int]:
        """The owner's sessions, newest activity first, and their total."""
        return self._drive(self._list(owner, limit, offset))

    def end(self, owner: Owner, thread_id: str) -> dict[str, Any]:
        """End a session; long enough ones leave their summary in long-term memory."""
        return self._drive(self._end(owner, thread_id))

    def delete(self, owner: Owner, thread_id: str) -> dict[str, Any]:
        """Delete a session's checkpoints, transcript, session memories and record."""
        return self._drive(self._delete(owner, thread_id))

    def run(self, owner: Owner, thread_id: str | None, messages: Sequence[Any]) -> RunResult:
        """Send messages to the agent on a thread (created if new) and return its reply."""
        return self._drive(self._run_steps(owner, thread_id, messages))

    def add_messages(self, owner: Owner, thread_id: str, messages: Sequence[Any]) -> int:
        """Append messages without running the model; returns the new total."""
        return self._drive(self._add_messages(owner, thread_id, messages))

    def get_messages(
        self, owner: Owner, thread_id: str, limit: int = 20, offset: int = 0
    ) -> tuple[builtins.list[dict[str, Any]], int]:
        """A page of the full transcript, oldest first, and the total."""
        return self._drive(self._messages(owner, thread_id, limit, offset))

    def recent_context(self, owner: Owner, thread_id: str, max_messages: int = 20) -> str:
        """The last messages formatted for a prompt, one `role: text` line each."""
        return self._drive(self._recent_context(owner, thread_id, max_messages))

    def get_summary(self, owner: Owner, thread_id: str) -> str:
        """The running summary of a thread."""
        return self._drive(self._summary(owner, thread_id))

    def update_summary(self, owner: Owner, thread_id: str, summary: str) -> str:
        """Replace the running summary of a thread."""
        return self._drive(self._update_summary(owner, thread_id, summary))

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
        self, owner: Owner, limit: int = 20, offset: int = 0
    ) -> tuple[builtins.list[dict[str, Any]], int]:
        """Async `list`."""
        return await self._adrive(self._list(owner, limit, offset))

    async def aend(self, owner: Owner, thread_id: str) -> dict[str, Any]:
        """Async `end`."""
        return await self._adrive(self._end(owner, thread_id))

    async def adelete(self, owner: Owner, thread_id: str) -> dict[str, Any]:
        """Async `delete`."""
        return await self._adrive(self._delete(owner, thread_id))

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

    async def arecent_context(self, owner: Owner, thread_id: str, max_messages: int = 20) -> str:
        """Async `recent_context`."""
        return await self._adrive(self._recent_context(owner, thread_id, max_messages))

    async def aget_summary(self, owner: Owner, thread_id: str) -> str:
        """Async `get_summary`."""
        return await self._adrive(self._summary(owner, thread_id))

    async def aupdate_summary(self, owner: Owner, thread_id: str, summary: str) -> str:
        """Async `update_summary`."""
        return await self._adrive(self._update_summary(owner, thread_id, summary))

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
        """Run like `arun`, yielding `("token", text)` as the model writes, then `("done", RunResult)`.

        A consumer that stops early does not lose the turn: the session record is updated
        with whatever the run stored.
        """
        run, graph_input = await self._adrive(self._begin_run(owner, thread_id, messages))
        config = self.config(owner, run.record["thread_id"])
        try:
            async for chunk, meta in self.graph.astream(  # type: ignore[call-overload]
                graph_input,
                config,
                context=self.run_context(owner),
                stream_mode="messages",
                durability=self.durability,
            ):
                text = _token_text(chunk, meta)
                if text:
                    yield "token", text
        finally:
            result = await self._adrive(self._finish_run(run))
        yield "done", result

    def stream(
        self, owner: Owner, thread_id: str | None, messages: Sequence[Any]
    ) -> Iterator[tuple[str, Any]]:
        """Sync `astream`: `("token", text)` events, then `("done", RunResult)`."""
        run, graph_input = self._drive(self._begin_run(owner, thread_id, messages))
        config = self.config(owner, run.record["thread_id"])
        try:
            for chunk, meta in self.graph.stream(  # type: ignore[call-overload]
                graph_input,
                config,
                context=self.run_context(owner),
                stream_mode="messages",
                durability=self.durability,
            ):
                text = _token_text(chunk, meta)
                if text:
                    yield "token", text
        finally:
            result = self._drive(self._finish_run(run))
        yield "done", result
