"""The session service's cores for runs and memories (`memory.sessions`)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import ToolMessage

from agent import transcript
from agent.namespaces import Owner, check_id
from agent.summarize import plan_fold
from memory.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    SessionEndedError,
)
from memory.session_base import SUMMARIZE_NODE, SessionBase
from memory.session_steps import (
    Db,
    RunResult,
    _Compact,
    _GiveBack,
    _Invoke,
    _Renew,
    _Run,
    _Steps,
    _StopRenew,
    _topics,
    _UpdateState,
    check_conversation,
    exchanged,
    to_messages,
)
from memory.stores.outages import as_unavailable
from memory.stores.sessiondb import Claim, LeaseLostError

logger = logging.getLogger("memory_agent.sessions")


class SessionCores(SessionBase):
    """The cores of runs and memories."""

    # -- cores: runs -------------------------------------------------------------------

    def _begin_run(
        self,
        owner: Owner,
        thread_id: str | None,
        messages: Sequence[Any],
        *,
        resuming: bool = False,
        answering: bool = False,
    ) -> _Steps:
        """Validate a run, claim its thread (created if new) and start renewing the lease.

        A run needs at least one message unless it is `resuming` a checkpoint (it then
        continues what the checkpoint has left to do). One `answering` a pause needs a
        thread that exists and waits at one."""
        new = to_messages(messages)
        if not new and not resuming:
            raise InvalidInputError("a run needs at least one message")
        thread_id = check_id("thread_id", thread_id) if thread_id else str(uuid.uuid4())
        if any(isinstance(m, ToolMessage) or getattr(m, "tool_calls", None) for m in new):
            # A run's own tool exchange must not repeat a call or a result of the thread's.
            window = (yield from self._state(owner, thread_id)).get("messages") or []
            check_conversation(new, *exchanged(window))
        key, token = owner.thread_key(thread_id), uuid.uuid4().hex
        fresh = None if answering else self._new_record(owner, thread_id, None)
        claim: Claim = yield Db.begin(
            owner, thread_id, token, self.lease_ms, self.rate, fresh, self._cap()
        )
        if claim.outcome == "full" and (yield from self._expire_idle_of(owner)):
            claim = yield Db.begin(owner, thread_id, token, self.lease_ms, None, fresh, self._cap())
        match claim.outcome:
            case "busy":
                raise ConflictError(f"a run is already active on thread {thread_id!r}")
            case "limited":
                raise self._limited(claim)
            case "missing" if answering:
                raise NotFoundError(f"thread {thread_id!r} not found")
            case "full" | "missing":
                raise self._full()
        record = claim.record
        assert record is not None
        if answering and not record.get("waiting"):
            yield Db.release(key, token)
            raise ConflictError(f"thread {thread_id!r} is not waiting for an answer")
        if record["status"] == "ended" or self.is_idle(record):
            try:
                if self.is_idle(record):
                    yield from self._expire(owner, record)
            finally:
                yield Db.release(key, token)
            raise SessionEndedError(f"thread {thread_id!r} has ended; start a new thread")
        run = _Run(owner, record, key, token, record.get("message_count", 0), new)
        run.renewal = yield _Renew(key, token)
        return run

    def _added(self, run: _Run, values: dict[str, Any], after: int) -> _Steps:
        """The records of the run's input and what followed it: from its final window,
        where they are the last `after` recorded, or, when summarisation folded some
        away, from the transcript."""
        if not run.input:  # a run resumed from a checkpoint: what it recorded past it
            if after <= run.before:
                return []
            records, _ = yield Db.page(run.key, run.before, after - run.before)
            return records
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
        records, _ = yield Db.page(run.key, start, after - start)
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
                window = {m.id for m in values.get("messages") or []}
                # Stopped before its input reached a checkpoint (the first write is in the
                # background): the input goes into the state too, as an append would.
                lost = [m for m in run.input if m.id not in window] if after == run.before else []
                if pending or lost:
                    records = [
                        transcript.message_to_record(m, after + i)
                        for i, m in enumerate([*pending, *lost])
                    ]
                    try:
                        yield Db.append(run.key, after, records, run.token)
                        after += len(records)
                        if lost:
                            config = self.config(run.owner, thread_id)
                            if run.metadata:  # a rollback of the run finds it
                                config["metadata"] = dict(run.metadata)
                            yield _UpdateState(
                                config,
                                {
                                    "messages": lost,
                                    "transcript_len": after,
                                    "recorded_id": lost[-1].id,
                                },
                            )
                    except LeaseLostError:
                        logger.warning("a failed run on %s lost its lease", run.key)
                values = {}
            else:
                after = values.get("transcript_len", run.before)
            added = yield from self._added(run, values, after)
            record = {**self._touched(run.record, added), "waiting": run.waiting}
            if not (yield Db.save(run.owner, record, run.token, True)):
                logger.warning("thread %s changed hands before its run finished", run.key)
        except BaseException:
            yield Db.release(run.key, run.token)
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
        config = self.run_config(owner, run.record["thread_id"], run.token)
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

    def _add_messages(
        self, owner: Owner, thread_id: str, messages: Sequence[Any], as_node: str = "call_model"
    ) -> _Steps:
        record, token = yield from self._claim(owner, thread_id, counted=True)
        key = owner.thread_key(thread_id)
        try:
            if self.is_idle(record):  # an append does not revive a session that expired
                record = yield from self._expire(owner, record)
            if record["status"] == "ended":
                raise SessionEndedError(f"thread {thread_id!r} has ended")
            state = yield from self._state(owner, thread_id)
            window = state.get("messages") or []
            new = to_messages(messages, *exchanged(window))
            total = max(state.get("transcript_len", 0), record.get("message_count", 0))
            records = [transcript.message_to_record(m, total + i) for i, m in enumerate(new)]
            if new:
                yield Db.append(key, total, records, token)
                yield _UpdateState(
                    self.config(owner, thread_id),
                    {
                        "messages": new,
                        "transcript_len": total + len(new),
                        "recorded_id": new[-1].id,
                    },
                    as_node,
                )
                # Written as another node, the thread has that node's next steps to take:
                # a fold would run before them, so it waits for the next run.
                if as_node == "call_model" and self._over_budget(owner, [*window, *new]):
                    yield from self._compact(owner, thread_id, key, token)
            yield Db.save(owner, self._touched(record, records), token, True)
        except BaseException:
            yield Db.release(key, token)
            raise
        return total + len(new)

    def _over_budget(self, owner: Owner, window: Sequence[Any]) -> bool:
        """Whether the built-in graph would fold `window` before its next model call."""
        if SUMMARIZE_NODE not in self.graph.nodes:
            return False  # an application's graph: its own nodes keep its window
        ctx = self.run_context(owner)
        return plan_fold(window, ctx.token_budget, int(ctx.token_budget * ctx.keep_ratio)) > 0

    def _compact(self, owner: Owner, thread_id: str, key: str, token: str) -> _Steps:
        """Fold the window as a run's summarisation would, with no reply after it: appends
        alone keep the window, and the cost of each later write, within the budget."""
        renewal = yield _Renew(key, token)
        try:
            yield _Compact(self.run_config(owner, thread_id, token), self.run_context(owner))
        finally:
            yield _StopRenew(renewal)

    def _update_summary(
        self, owner: Owner, thread_id: str, summary: str | None, as_node: str = "call_model"
    ) -> _Steps:
        """Replace the summary (None: write a checkpoint of no values) as `as_node`."""
        if summary is not None and not isinstance(summary, str):
            raise InvalidInputError("summary must be a string")
        _, token = yield from self._claim(owner, thread_id)
        try:
            values = None if summary is None else {"summary": summary}
            yield _UpdateState(self.config(owner, thread_id), values, as_node)
        finally:
            yield Db.release(owner.thread_key(thread_id), token)
        return summary

    def _summary(self, owner: Owner, thread_id: str) -> _Steps:
        record = yield from self._load(owner, thread_id)
        return (yield from self._state(owner, thread_id)).get("summary", "") or record.get(
            "summary", ""
        )

    def _messages(self, owner: Owner, thread_id: str, limit: int, offset: int) -> _Steps:
        if limit < 0:
            raise InvalidInputError("limit must not be negative")
        yield from self._load(owner, thread_id)
        return (yield Db.page(owner.thread_key(thread_id), offset, limit))

    def _newest(self, owner: Owner, thread_id: str, limit: int, skip: int) -> _Steps:
        # The transcript newest first: position p is seq total-1-p; a negative `skip`
        # counts from the oldest end, as a negative offset does oldest first.
        if limit < 0:
            raise InvalidInputError("limit must not be negative")
        yield from self._load(owner, thread_id)
        key = owner.thread_key(thread_id)
        if limit == 0 or skip < 0:
            total = (yield Db.page(key, 0, 0))[1]
            if limit == 0:
                return [], total
            skip = max(0, total + skip)
        items, total = yield Db.page(key, -(limit + skip), limit)
        return [r for r in reversed(items) if r["seq"] < total - skip], total

    def _recent_context(self, owner: Owner, thread_id: str, max_messages: int) -> _Steps:
        yield from self._load(owner, thread_id)
        records, _ = yield Db.page(owner.thread_key(thread_id), -max_messages, max_messages)
        return transcript.format_context(records)
