"""The session service's base (`memory.sessions.SessionManager`): its settings, the
drivers that perform what a core yields with the sync or the async APIs, the helpers, and
the cores that read, expire and change sessions."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Self, assert_never

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph
from langgraph.store.base import GetOp, Item, Op, PutOp, SearchOp
from langgraph.types import Command

from agent import RECURSION_LIMIT, Context, namespaces, transcript
from agent.graph import LEASE_KEY
from agent.memories import (
    Change,
    MemoryTooLargeError,
    PatchFailedError,
    PreconditionFailedError,
    aupdate_item,
    check_version,
    memory_out,
    memory_value,
    patched_value,
    update_item,
)
from agent.namespaces import InvalidIdError, Owner, check_id
from agent.tools import scope_namespace
from agent.transcript import TRANSCRIPT_KEY
from memory.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PatchError,
    PreconditionError,
    RateLimitedError,
)
from memory.metrics import MEMORY_WRITES, RATE_LIMITED
from memory.session_steps import (
    _PAGE,
    _RECENT,
    MIN_MESSAGES_FOR_SUMMARY,
    SWEEP_LEASE,
    Db,
    Durability,
    Request,
    _Batch,
    _Compact,
    _Copy,
    _CopyCheckpoints,
    _Db,
    _DeleteThread,
    _GetState,
    _give_back_from_thread,
    _GiveBack,
    _History,
    _Invoke,
    _KeepLatest,
    _Renew,
    _renew_forever,
    _Steps,
    _StopRenew,
    _ThreadRenewal,
    _Update,
    _UpdateState,
    _utcnow,
)
from memory.settings import Settings
from memory.stores import retention
from memory.stores.atomic import UpdateConflictError
from memory.stores.factory import SessionTranscript, sessions_db
from memory.stores.outages import (
    DEFAULT_TIMEOUT_SECONDS,
    LOST,
    Breaker,
    as_unavailable,
    retry_in_background,
    within,
)
from memory.stores.sessiondb import Claim, RateLimit, SessionDB
from memory.stores.values import StoreValueError

#: The built-in graph's summarisation node, which an append over the budget runs alone.
SUMMARIZE_NODE = "summarize_conversation"


class SessionBase:
    """What every part of `SessionManager` stands on (see its docstring)."""

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
        #: The session database's breaker (Postgres, Redis), shared with the graph's store
        #: calls: while that database is down, the service's calls fail at once too.
        self.breaker: Breaker | None = self.db.breaker
        #: Where the runs this service makes record their transcripts.
        self.transcript = SessionTranscript(self.db)
        self.clock = clock
        self._sweeper = uuid.uuid4().hex

    @classmethod
    def from_settings(cls, graph: CompiledStateGraph, settings: Settings, **overrides: Any) -> Self:
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
            case _Db(call):
                return call(self.db)
            case _Batch(ops):
                return self.store.batch(ops)
            case _Update(namespace, key, change):
                return update_item(self.store, namespace, key, change)
            case _GetState(config):
                return self.graph.get_state(config)
            case _UpdateState(config, values, as_node):
                return self.graph.update_state(config, values, as_node=as_node)
            case _Compact(config, context):
                self.graph.invoke(
                    Command(goto=SUMMARIZE_NODE),
                    config,
                    context=context,
                    interrupt_after=[SUMMARIZE_NODE],
                    durability=self.durability,
                )
                return self.graph.update_state(config, None, as_node="call_model")
            case _History(config):
                return list(self.graph.get_state_history(config))
            case _Copy(config):
                return self.graph.update_state(config, None, as_node="__copy__")
            case _Invoke(graph_input, config, context):
                return self.graph.invoke(  # type: ignore[call-overload]
                    graph_input, config, context=context, durability=self.durability
                )
            case _DeleteThread(thread_key):
                return self.checkpointer.delete_thread(thread_key)  # type: ignore[union-attr]
            case _KeepLatest(thread_key):
                assert isinstance(self.checkpointer, BaseCheckpointSaver)
                return retention.keep_latest(self.checkpointer, [thread_key], 1)
            case _CopyCheckpoints(source, target):
                assert isinstance(self.checkpointer, BaseCheckpointSaver)
                return _copy_checkpoints(self.checkpointer, source, target)
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
            case _Db(_, acall):
                return await acall(self.db)
            case _Batch(ops):
                return await self.store.abatch(ops)
            case _Update(namespace, key, change):
                return await aupdate_item(self.store, namespace, key, change)
            case _GetState(config):
                return await self.graph.aget_state(config)
            case _UpdateState(config, values, as_node):
                return await self.graph.aupdate_state(config, values, as_node=as_node)
            case _Compact(config, context):
                await self.graph.ainvoke(
                    Command(goto=SUMMARIZE_NODE),
                    config,
                    context=context,
                    interrupt_after=[SUMMARIZE_NODE],
                    durability=self.durability,
                )
                return await self.graph.aupdate_state(config, None, as_node="call_model")
            case _History(config):
                return [s async for s in self.graph.aget_state_history(config)]
            case _Copy(config):
                return await self.graph.aupdate_state(config, None, as_node="__copy__")
            case _Invoke(graph_input, config, context):
                return await self.graph.ainvoke(  # type: ignore[call-overload]
                    graph_input, config, context=context, durability=self.durability
                )
            case _DeleteThread(thread_key):
                return await self.checkpointer.adelete_thread(thread_key)  # type: ignore[union-attr]
            case _KeepLatest(thread_key):
                assert isinstance(self.checkpointer, BaseCheckpointSaver)
                return await retention.akeep_latest(self.checkpointer, [thread_key], 1)
            case _CopyCheckpoints(source, target):
                assert isinstance(self.checkpointer, BaseCheckpointSaver)
                return await _acopy_checkpoints(self.checkpointer, source, target)
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
                if isinstance(request, _Invoke | _Compact | _Renew | _StopRenew | _GiveBack):
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
        return request.lease if isinstance(request, _Db) else None

    def _give_back(self, request: Request) -> Callable[[Any], Any] | None:
        """For a claim abandoned at its deadline: release the lease if the database granted
        it after all (or may have: its answer was lost), so the thread is not held until the
        lease runs out; and a release abandoned at its deadline is tried again."""
        lease = self._lease_of(request)
        if lease is None:
            return None
        claims = isinstance(request, _Db) and request.claims

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
        """The LangGraph config of an owner's thread (with a run's lease token), to read
        its state; `run_config` to run the graph."""
        configurable: dict[str, Any] = {"thread_id": owner.thread_key(thread_id)}
        if token is not None:
            configurable[LEASE_KEY] = token
        return {"configurable": configurable, "recursion_limit": RECURSION_LIMIT}

    def run_config(self, owner: Owner, thread_id: str, token: str | None = None) -> RunnableConfig:
        """`config`, which also gives the graph this service's session database as its
        transcript sink: what every run this service makes is given."""
        config = self.config(owner, thread_id, token)
        config["configurable"][TRANSCRIPT_KEY] = self.transcript
        return config

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
        record = yield Db.get(owner, thread_id)
        if record is None:
            raise NotFoundError(f"thread {thread_id!r} not found")
        if self.is_idle(record):
            record = yield from self._expire_if_free(owner, record)
        return record

    def _expire_if_free(self, owner: Owner, record: dict[str, Any]) -> _Steps:
        """Expire an idle session unless a run holds it (a busy session never expires)."""
        thread_id = record["thread_id"]
        key, token = owner.thread_key(thread_id), uuid.uuid4().hex
        if not (yield Db.acquire(key, token, self.lease_ms)):
            return record
        try:
            fresh = yield Db.get(owner, thread_id)
            if fresh is None:
                return record
            if self.is_idle(fresh):
                fresh = yield from self._expire(owner, fresh)
            return fresh
        finally:
            yield Db.release(key, token)

    def _ended(self, owner: Owner, record: dict[str, Any], summary: str) -> _Steps:
        """The ended record; a long enough session leaves its summary in long-term memory."""
        thread_id = record["thread_id"]
        ended = {**record, "status": "ended", "ended_at": self.clock().isoformat()}
        if record.get("message_count", 0) >= self.min_messages_for_summary:
            recent, _ = yield Db.page(owner.thread_key(thread_id), -_RECENT, _RECENT)
            text = transcript.session_digest(recent, summary)
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
        if not (yield Db.set_status(owner, ended, "active")):
            return (yield Db.get(owner, thread_id)) or record
        yield _DeleteThread(owner.thread_key(thread_id))
        return ended

    def _limited(self, claim: Claim) -> RateLimitedError:
        """The 429 for a claim the owner's rate limit refused."""
        RATE_LIMITED.inc()
        retry = max(1, int(claim.retry_after + 0.999))
        limit = self.rate.limit if self.rate else 0
        return RateLimitedError(
            f"rate limit of {limit} runs and appends per 60 s reached; retry in {retry} s",
            retry_after=retry,
        )

    def _claim(self, owner: Owner, thread_id: str, *, counted: bool = False) -> _Steps:
        """Take a thread's lease for a transition other than a run: `(record, token)`.

        A `counted` transition (an append of messages) is admitted by the owner's rate
        limit as a run is, in the same claim."""
        check_id("thread_id", thread_id)
        key, token = owner.thread_key(thread_id), uuid.uuid4().hex
        if counted and self.rate is not None:
            claim: Claim = yield Db.begin(owner, thread_id, token, self.lease_ms, self.rate)
            match claim.outcome:
                case "busy":
                    raise ConflictError(
                        f"a run is active on thread {thread_id!r}; retry when it ends"
                    )
                case "limited":
                    raise self._limited(claim)
                case "missing" | "full":
                    raise NotFoundError(f"thread {thread_id!r} not found")
            assert claim.record is not None
            return claim.record, token
        if not (yield Db.acquire(key, token, self.lease_ms)):
            if (yield Db.get(owner, thread_id)) is None:
                raise NotFoundError(f"thread {thread_id!r} not found")
            raise ConflictError(f"a run is active on thread {thread_id!r}; retry when it ends")
        try:
            record = yield Db.get(owner, thread_id)
        except BaseException:
            yield Db.release(key, token)
            raise
        if record is None:
            yield Db.release(key, token)
            raise NotFoundError(f"thread {thread_id!r} not found")
        return record, token

    # -- cores: sessions -------------------------------------------------------------

    def _expire_idle_of(self, owner: Owner) -> _Steps:
        """Expire the owner's idle sessions (before refusing a new one at the cap)."""
        if self.idle_timeout is None:
            return 0
        records, _ = yield Db.list(owner, self._cap() + 1, 0, "active")
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
        outcome = yield Db.create(owner, record, self._cap())
        if outcome == "full" and (yield from self._expire_idle_of(owner)):
            outcome = yield Db.create(owner, record, self._cap())
        if outcome == "exists":
            raise ConflictError(f"thread {thread_id!r} already exists")
        if outcome == "full":
            raise self._full()
        return record

    def _get_or_create(
        self, owner: Owner, thread_id: str | None, metadata: dict[str, Any] | None = None
    ) -> _Steps:
        if thread_id:
            try:
                return (yield from self._load(owner, thread_id)), False
            except NotFoundError:
                pass
        try:
            return (yield from self._create(owner, thread_id, metadata)), True
        except ConflictError as conflict:
            if not thread_id:
                raise
            try:
                return (yield from self._load(owner, thread_id)), False  # created meanwhile
            except NotFoundError:
                raise conflict from None  # the cap of open sessions, not the id

    def _list(self, owner: Owner, limit: int, offset: int, status: str | None) -> _Steps:
        if status is not None:
            # Idle sessions are ended first, so a filtered page and its total agree with
            # the statuses it shows (an idle session is neither listed nor counted as active).
            yield from self._expire_idle_of(owner)
        records, total = yield Db.list(owner, limit, offset, status)
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
            if not (yield Db.set_status(owner, ended, "active")):
                return (yield Db.get(owner, thread_id)) or ended
            return ended
        finally:
            yield Db.release(owner.thread_key(thread_id), token)

    def _undo(self, owner: Owner, thread_id: str, count: int) -> _Steps:
        """Remove the thread's last `count` messages: whole turns only, so the first one
        removed must be a user message (a tool call is never parted from its result).
        The window goes back to the checkpoint that ended before that message (copied as
        the head) and the transcript, with its counts, to that length."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise InvalidInputError("messages must be a positive integer")
        _record, token = yield from self._claim(owner, thread_id)
        key = owner.thread_key(thread_id)
        try:
            _, total = yield Db.page(key, 0, 0)
            if count > total:
                raise InvalidInputError(f"the thread has {total} messages; cannot undo {count}")
            length = total - count
            start = max(0, length - _PAGE)
            before, _ = yield Db.page(key, start, length - start + 1)
            if before[-1]["role"] != "user":
                users = [start + i for i, r in enumerate(before[:-1]) if r["role"] == "user"]
                hint = (
                    f"; undo {total - users[-1]} to go back to the user message at seq {users[-1]}"
                    if users
                    else ""
                )
                raise InvalidInputError(
                    f"undo removes whole turns: message {length} is a {before[-1]['role']} "
                    f"message, not a user message{hint}"
                )
            if length == 0:
                yield _DeleteThread(key)
            else:
                history = yield _History(self.config(owner, thread_id))
                match = [
                    snap
                    for snap in history
                    if (snap.values or {}).get("transcript_len") == length and not snap.next
                ]
                if not match:
                    raise ConflictError(
                        f"the checkpoint before message {length} is no longer kept; "
                        "cannot undo that far"
                    )
                yield _Copy(match[0].config)
            yield Db.truncate(key, length)
            return {"thread_id": thread_id, "removed": count, "messages": length}
        finally:
            yield Db.release(key, token)

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
        yield Db.remove(owner, thread_id)

    def _delete(self, owner: Owner, thread_id: str) -> _Steps:
        record, token = yield from self._claim(owner, thread_id)
        try:
            yield from self._remove(owner, thread_id)
        finally:
            yield Db.release(owner.thread_key(thread_id), token)
        return record

    def _copy_thread(self, owner: Owner, thread_id: str, target_id: str | None) -> _Steps:
        """A new thread of the owner with the source's record (counts, metadata), whole
        transcript, checkpoints and session memories, under both threads' leases."""
        record, token = yield from self._claim(owner, thread_id)
        key = owner.thread_key(thread_id)
        try:
            target_id = check_id("thread_id", target_id) if target_id else str(uuid.uuid4())
            now = self.clock().isoformat()
            copy = {**record, "thread_id": target_id, "created_at": now, "last_active_at": now}
            outcome = yield Db.create(owner, copy, self._cap())
            if outcome == "full" and (yield from self._expire_idle_of(owner)):
                outcome = yield Db.create(owner, copy, self._cap())
            if outcome == "exists":
                raise ConflictError(f"thread {target_id!r} already exists")
            if outcome == "full":
                raise self._full()
            target, target_token = owner.thread_key(target_id), uuid.uuid4().hex
            if not (yield Db.acquire(target, target_token, self.lease_ms)):
                raise ConflictError(f"thread {target_id!r} is busy")
            try:
                copied = 0
                while True:
                    rows, _ = yield Db.page(key, copied, _PAGE)
                    if not rows:
                        break
                    yield Db.append(target, copied, rows, target_token)
                    copied += len(rows)
                yield _CopyCheckpoints(key, target)
                source_ns = namespaces.session_memories(owner.tenant, owner.user, key)
                target_ns = namespaces.session_memories(owner.tenant, owner.user, target)
                items: list[Any] = []
                while True:
                    (page,) = yield _Batch([SearchOp(source_ns, limit=_PAGE, offset=len(items))])
                    items.extend(page)
                    if len(page) < _PAGE:
                        break
                if items:
                    yield _Batch([PutOp(target_ns, i.key, i.value) for i in items])
            finally:
                yield Db.release(target, target_token)
        finally:
            yield Db.release(key, token)
        return copy

    def _keep_latest(self, owner: Owner, thread_id: str) -> _Steps:
        record, token = yield from self._claim(owner, thread_id)
        try:
            yield _KeepLatest(owner.thread_key(thread_id))
        finally:
            yield Db.release(owner.thread_key(thread_id), token)
        return record

    def _all(self, owner: Owner) -> _Steps:
        records: list[dict[str, Any]] = []
        while True:
            page, _ = yield Db.list(owner, _PAGE, len(records), None)
            records += page
            if len(page) < _PAGE:
                return records

    def _erase(self, owner: Owner) -> _Steps:
        records = yield from self._all(owner)
        held: list[tuple[str, str]] = []
        try:
            for record in records:
                key, token = owner.thread_key(record["thread_id"]), uuid.uuid4().hex
                if not (yield Db.acquire(key, token, self.lease_ms)):
                    raise ConflictError(
                        f"a run is active on thread {record['thread_id']!r}; retry when it ends"
                    )
                held.append((key, token))
            for record in records:
                yield from self._remove(owner, record["thread_id"])
        finally:
            for key, token in held:
                yield Db.release(key, token)
        memories = yield from self._clear_memories(owner, None)
        return {"threads": len(records), "memories": memories}

    def _sweep(self, hold: float) -> _Steps:
        if self.idle_timeout is None:
            return 0
        hold_ms = max(1, int(hold * 1000))
        if not (yield Db.acquire(SWEEP_LEASE, self._sweeper, hold_ms)):
            return 0  # another process sweeps this round
        cutoff = (self.clock() - self.idle_timeout).isoformat()
        expired = 0
        while True:
            page = yield Db.idle(cutoff, _PAGE)
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
        running = yield Db.leased(owner.thread_key(thread_id))
        return record, summary or record.get("summary", ""), running

    def _snapshot(self, owner: Owner, thread_id: str) -> _Steps:
        record = yield from self._load(owner, thread_id)
        return record, (yield _GetState(self.config(owner, thread_id)))

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

    def _save_memory(
        self,
        owner: Owner,
        key: str,
        value: Any,
        thread_id: str | None,
        expected_version: str | None = None,
    ) -> _Steps:
        try:
            check_id("memory key", key)
            stored = memory_value(value)
        except (InvalidIdError, MemoryTooLargeError) as exc:
            raise InvalidInputError(str(exc)) from exc
        ns = yield from self._memory_ns(owner, thread_id)

        def change(item: Item | None) -> dict[str, Any]:
            check_version(item, expected_version)
            return stored

        item = yield from self._changed(ns, key, change)
        MEMORY_WRITES.labels("api", "save").inc()
        return memory_out(item, "session" if thread_id else "user")

    def _changed(self, ns: tuple[str, ...], key: str, change: Change) -> _Steps:
        """Apply `change` to a memory atomically, translating what the change refuses."""
        try:
            return (yield _Update(ns, key, change))
        except PreconditionFailedError as exc:
            raise PreconditionError(str(exc)) from exc
        except PatchFailedError as exc:
            raise PatchError(str(exc), exc.index) from exc
        except MemoryTooLargeError as exc:
            raise InvalidInputError(str(exc)) from exc
        except UpdateConflictError as exc:
            raise ConflictError(str(exc)) from exc

    def _patch_memory(
        self,
        owner: Owner,
        key: str,
        patch: Any,
        thread_id: str | None,
        expected_version: str | None = None,
    ) -> _Steps:
        check_id("memory key", key)
        ns = yield from self._memory_ns(owner, thread_id)

        def change(item: Item | None) -> dict[str, Any]:
            if item is None:
                raise NotFoundError(f"memory {key!r} not found")
            check_version(item, expected_version)
            current = item.value.get("value", item.value.get("content"))
            return memory_value(patched_value(current, patch))

        item = yield from self._changed(ns, key, change)
        MEMORY_WRITES.labels("api", "patch").inc()
        return memory_out(item, "session" if thread_id else "user")

    def _get_memory(self, owner: Owner, key: str, thread_id: str | None) -> _Steps:
        check_id("memory key", key)
        ns = yield from self._memory_ns(owner, thread_id)
        (item,) = yield _Batch([GetOp(ns, key)])
        if item is None:
            raise NotFoundError(f"memory {key!r} not found")
        return memory_out(item, "session" if thread_id else "user")

    def _delete_memory(
        self, owner: Owner, key: str, thread_id: str | None, expected_version: str | None = None
    ) -> _Steps:
        check_id("memory key", key)
        ns = yield from self._memory_ns(owner, thread_id)

        def change(item: Item | None) -> None:
            if item is None:
                raise NotFoundError(f"memory {key!r} not found")
            check_version(item, expected_version)

        yield from self._changed(ns, key, change)
        MEMORY_WRITES.labels("api", "delete").inc()

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
            MEMORY_WRITES.labels("api", "delete").inc(len(ops))
        return len(ops)


def _copied(saver_tuples: list[Any], target: str) -> Iterator[tuple[Any, ...]]:
    """For each checkpoint tuple, oldest first: the `put` arguments that write it to
    `target`, and its pending writes grouped by task."""
    for found in reversed(saver_tuples):
        configurable = found.config["configurable"]
        ns = configurable.get("checkpoint_ns", "")
        parent = (found.parent_config or {}).get("configurable", {}).get("checkpoint_id")
        put_config: RunnableConfig = {
            "configurable": {"thread_id": target, "checkpoint_ns": ns, "checkpoint_id": parent}
        }
        checkpoint = found.checkpoint
        writes_config: RunnableConfig = {
            "configurable": {
                "thread_id": target,
                "checkpoint_ns": ns,
                "checkpoint_id": checkpoint["id"],
            }
        }
        by_task: dict[str, list[tuple[str, Any]]] = {}
        for task_id, channel, value in found.pending_writes or ():
            by_task.setdefault(task_id, []).append((channel, value))
        yield put_config, checkpoint, found.metadata, writes_config, by_task


def _copy_checkpoints(saver: BaseCheckpointSaver, source: str, target: str) -> None:
    tuples = list(saver.list({"configurable": {"thread_id": source}}))
    for put_config, checkpoint, metadata, writes_config, by_task in _copied(tuples, target):
        saver.put(put_config, checkpoint, metadata, dict(checkpoint["channel_versions"]))
        for task_id, writes in by_task.items():
            saver.put_writes(writes_config, writes, task_id)


async def _acopy_checkpoints(saver: BaseCheckpointSaver, source: str, target: str) -> None:
    tuples = [t async for t in saver.alist({"configurable": {"thread_id": source}})]
    for put_config, checkpoint, metadata, writes_config, by_task in _copied(tuples, target):
        await saver.aput(put_config, checkpoint, metadata, dict(checkpoint["channel_versions"]))
        for task_id, writes in by_task.items():
            await saver.aput_writes(writes_config, writes, task_id)
