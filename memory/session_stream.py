"""The session service's streams (`memory.sessions`): native token streams and the
LangGraph server API's graph streams, and the pure helpers of the latter."""

from __future__ import annotations

import builtins
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Iterator,
    Sequence,
)
from dataclasses import fields, replace
from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.runnables import RunnableConfig
from langgraph.types import Command

from agent import Context, transcript
from agent.namespaces import Owner
from memory.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
)
from memory.metrics import RunTally
from memory.session_cores import SessionCores
from memory.session_steps import (
    Db,
    _Copy,
    _DeleteThread,
    _GetState,
    _Run,
    _Steps,
    _token_text,
)


class SessionStreaming(SessionCores):
    """The streaming runs."""

    # -- streaming ---------------------------------------------------------------

    async def astream(
        self,
        owner: Owner,
        thread_id: str | None,
        messages: Sequence[Any],
        *,
        run_id: str | None = None,
        resume: Any = None,
    ) -> AsyncIterator[tuple[str, Any]]:
        """Run like `arun`, yielding `("thread", thread_id)` once the thread is claimed,
        `("token", text)` as the model writes, then `("done", RunResult)`: the run of
        `astream_graph`, read as text.

        A consumer that stops early does not lose the turn: the session record is updated
        with whatever the run stored, and the thread is released. With `run_id`, the
        checkpoints carry it, as `astream_graph`'s do (a rollback finds what it wrote, and
        the same run started again resumes from its last checkpoint).
        """
        parts = self.astream_graph(
            owner,
            thread_id,
            messages,
            stream_mode=("messages",),
            views=False,
            run_id=run_id,
            command=None if resume is None else {"resume": resume},
            answering=resume is not None,
        )
        try:
            async for kind, payload in parts:
                if kind == "thread":
                    yield "thread", payload["thread_id"]
                elif kind == "done":
                    result, values = payload
                    paused = [{"id": i.id, "value": i.value} for i in values.get(INTERRUPT) or []]
                    yield "done", replace(result, interrupts=paused) if paused else result
                elif kind == "messages" and (text := _token_text(*payload)):
                    yield "token", text
        finally:
            await parts.aclose()

    def stream(
        self, owner: Owner, thread_id: str | None, messages: Sequence[Any]
    ) -> Iterator[tuple[str, Any]]:
        """Sync `astream`: `("thread", thread_id)`, `("token", text)` events, then
        `("done", RunResult)`."""
        run = self._drive(self._begin_run(owner, thread_id, messages))
        config = self.run_config(owner, run.record["thread_id"], run.token)
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
            records, _ = yield Db.page(key, -recent, recent)
        else:
            total = values.get("transcript_len", 0)
            count = min(recent, total)
            records = (yield Db.page(key, total - count, count))[0] if count else []
            marker = values.get("recorded_id")
            if count and marker is not None and (not records or records[-1].get("id") != marker):
                # A checkpoint of an earlier branch (the thread was forked before it): the
                # transcript holds the later branch there; the checkpoint's own window
                # shows what it recorded.
                window = values.get("messages") or []
                ids = [m.id for m in window]
                return list(window[: ids.index(marker) + 1]) if marker in ids else []
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
            if not (yield Db.save(owner, updated, token, False)):
                raise ConflictError(f"thread {thread_id!r} changed meanwhile; retry")
        finally:
            yield Db.release(owner.thread_key(thread_id), token)
        return updated

    def _running(self, owner: Owner, thread_id: str) -> _Steps:
        return (yield Db.leased(owner.thread_key(thread_id)))

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
        yield Db.truncate(key, length)

    def _release(self, key: str, token: str) -> _Steps:
        yield Db.release(key, token)

    def _fork(
        self, run: _Run, config: RunnableConfig, checkpoint_id: str, run_id: str | None
    ) -> _Steps:
        """Point the claimed `run` at `checkpoint_id` of its thread.

        The thread's latest checkpoint changes nothing. An earlier one is a fork: the
        transcript goes back to that checkpoint's length (the branch the thread continues
        on reads back complete and in order; the messages after it stay readable in the
        earlier branch's checkpoints while they are kept), and the run's checkpoints
        follow that one, as LangGraph's own forks do. A run taken over after its process
        died continues from its own latest checkpoint instead of forking again.

        Raises:
            NotFoundError: the thread has no such checkpoint (any more).
        """
        head = yield _GetState(config)
        if run_id is not None and (head.metadata or {}).get("run_id") == run_id:
            return
        if head.config["configurable"].get("checkpoint_id") == checkpoint_id:
            return
        at_config = RunnableConfig(
            configurable={**config["configurable"], "checkpoint_id": checkpoint_id}
        )
        at = yield _GetState(at_config)
        if at.created_at is None:
            thread_id = run.record["thread_id"]
            raise NotFoundError(f"checkpoint {checkpoint_id!r} not found on thread {thread_id!r}")
        length = (at.values or {}).get("transcript_len", 0)
        yield Db.truncate(run.key, length)
        run.before = length
        config["configurable"]["checkpoint_id"] = checkpoint_id

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
        checkpoint_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        graph_config: dict[str, Any] | None = None,
        command: dict[str, Any] | None = None,
        interrupt_before: Sequence[str] | str | None = None,
        interrupt_after: Sequence[str] | str | None = None,
        views: bool = True,
        answering: bool = False,
        subgraphs: bool = False,
    ) -> AsyncGenerator[tuple[str, Any], None]:
        """Run like `arun`, yielding the graph's own stream parts for LangGraph clients.

        With `run_id`, the checkpoints carry it in their metadata, and the same run started
        again (taken over after its process died) resumes from its last checkpoint instead
        of starting over: the messages must then carry the ids they had the first time.

        Yields `("thread", record)` once the thread is claimed, then `(mode, payload)` for
        each part of the graph's `stream_mode` (`messages` payloads are `(chunk,
        metadata)`; `values` payloads are what `view_state` shows: the recent transcript
        followed by this run's messages, so summarisation never takes messages off a
        client's screen), then `("done", (RunResult, last values payload))`. With `views`
        false (a caller that reads no state) the values are not made and the payload is
        empty.

        With `checkpoint_id`, the run starts from that checkpoint of the thread: the
        latest one is the plain case; an earlier one forks the thread there (see
        `_fork`). `messages` may then be empty: the run continues what the checkpoint had
        left to do (a regenerated reply). `metadata` goes into the metadata of every
        checkpoint the run writes, beside `run_id`. `graph_config` is the caller's part
        of the run's config (`recursion_limit`, `tags`, `run_name`, `configurable` keys
        beside the service's own, which it cannot replace).

        A graph may pause (`interrupt()`, or `interrupt_before` / `interrupt_after` nodes):
        the run then ends with the thread waiting, the pause is yielded as an `updates`
        part `{"__interrupt__": [...]}` (a `values` part when `updates` was not asked
        for, as LangGraph's server sends it) and the final values carry `__interrupt__`.
        `command` (`resume`, `update`, `goto`) answers it: the run continues from where the
        thread waits, with no new messages. `answering` makes such a run refuse a thread
        that does not exist (`NotFoundError`) or waits at no pause (`ConflictError`).

        With `subgraphs`, the parts of the graph's subgraphs come too, each named
        `mode|namespace` (the namespace's entries joined by `|`), their payloads as the
        subgraph streamed them.
        """
        graph_context = self.graph_context(owner, context)
        run = await self._adrive(
            self._begin_run(
                owner,
                thread_id,
                messages,
                resuming=checkpoint_id is not None or command is not None,
                answering=answering,
            )
        )
        config = self.run_config(owner, run.record["thread_id"], run.token)
        if run_id is not None or metadata:
            ids = {"run_id": run_id} if run_id is not None else {}
            config["metadata"] = {**(metadata or {}), **ids}
            run.metadata = config["metadata"]
        for key, value in (graph_config or {}).items():
            if key == "configurable":
                config["configurable"] = {**value, **config["configurable"]}
            elif key in ("recursion_limit", "tags", "run_name"):
                config[key] = value  # type: ignore[literal-required]
        # `updates` always: a pause comes as one. `events` is not a graph mode: it is the
        # graph's callback events, beside its parts.
        events = "events" in stream_mode
        modes = [m for m in dict.fromkeys([*stream_mode, "values", "updates"]) if m != "events"]
        graph_input: Any = {"messages": run.input} if run.input else None
        if command is not None:
            graph_input = Command(**command)
        values: dict[str, Any] | None = None
        view: dict[str, Any] = {}
        paused: list[Any] = []
        tally = RunTally()
        try:
            yield "thread", run.record
            if checkpoint_id is not None:
                await self._adrive(self._fork(run, config, checkpoint_id, run_id))
            earlier = await self._adrive(self._tail(run.key, None, recent)) if views else []
            parts = self._graph_parts(
                graph_input,
                config,
                events=events,
                subgraphs=subgraphs,
                context=graph_context,
                stream_mode=modes,
                durability=self.durability,
                interrupt_before=interrupt_before,
                interrupt_after=interrupt_after,
            )
            async for namespace, mode, payload in parts:
                if namespace:  # a subgraph's part, as it streamed it
                    if mode in stream_mode:
                        yield "|".join((mode, *namespace)), payload
                    continue
                if mode == "values":
                    values = payload
                    tally.values(payload)
                    if views:
                        window = payload.get("messages") or []
                        part = _run_part(window, run.input)
                        view = client_values(earlier, part, payload, recent)
                    if "values" in stream_mode:
                        yield "values", view
                elif mode == "updates" and isinstance(payload, dict) and INTERRUPT in payload:
                    paused = list(payload[INTERRUPT])
                    run.waiting = True
                    if "updates" in stream_mode:
                        yield "updates", payload
                    elif paused:  # a breakpoint's pause has nothing to show
                        yield "values", {INTERRUPT: paused}
                elif mode in stream_mode:
                    yield mode, payload
        except BaseException as exc:
            await self._adrive(self._finish_run(run, None, exc))
            raise
        result = await self._adrive(self._finish_run(run, values))
        tally.finish(values, result.messages)
        yield "done", (result, {**view, INTERRUPT: paused} if paused else view)

    async def _graph_parts(
        self, graph_input: Any, config: Any, *, events: bool, subgraphs: bool, **kwargs: Any
    ) -> AsyncGenerator[tuple[tuple[str, ...], str, Any], None]:
        """The graph's stream parts as `(namespace, mode, payload)`; with `events`, every
        callback event of its runnables too, as `((), "events", event)`, in order."""
        if not events:
            stream = self.graph.astream(graph_input, config, subgraphs=subgraphs, **kwargs)
            async for part in stream:
                yield part if subgraphs else ((), *part)
            return
        feed = self.graph.astream_events(
            graph_input, config, version="v2", subgraphs=subgraphs, **kwargs
        )
        async for event in feed:
            if event["event"] == "on_chain_stream" and not event.get("parent_ids"):
                chunk = event["data"]["chunk"]  # the graph's own part
                yield chunk if subgraphs else ((), *chunk)
            elif "langsmith:hidden" not in (event.get("tags") or ()):  # the graph's plumbing
                yield (), "events", event


# -- LangGraph server API: pure helpers ----------------------------------------------

#: The key of a pause in LangGraph's `updates` parts and values.
INTERRUPT = "__interrupt__"


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
