"""The run core: every run, of the LangGraph API or the native one, is a record in the
shared database, executed by any server process, streamed and rejoined from any process.

- `submit` writes the run (`memory.stores.rundb`) under its multitask strategy, then
  claims it at once when this process has room and its thread is free: the caller's own
  run starts without a hop through the queue.
- Each process also polls the queue (`claim`): enqueued runs whose thread came free,
  delayed runs whose time came, and runs whose holder died (its lease ran out: the run is
  taken over and resumes from its last checkpoint).
- A running run renews its claim every `CONTROL_SECONDS` and reads stop requests with
  each renewal, so a cancel from any process reaches it within that time (one from this
  process reaches it at once).
- Its events go to the callers of this process directly, and to the run's event log in
  small batches (when it is resumable or not streamed to its caller), from which
  `follow` serves callers of other processes and callers that come back (`Last-Event-ID`).

A native run (`native_kwargs`) runs the session service's token stream and emits the
native routes' events: `metadata` ({thread_id, run_id}), `token` ({text}), then `done`
(the run's result) or `error` ({detail, status_code}); a LangGraph run emits the graph's
stream modes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from agent.namespaces import Owner
from memory.errors import (
    ConflictError,
    MemoryAgentError,
    NotFoundError,
)
from memory.sessions import SessionManager
from memory.settings import Settings
from memory.stores.outages import as_unavailable, observe
from memory.stores.rundb import (
    FINAL,
    CancelAction,
    Event,
    Record,
    RunDB,
    Strategy,
    first_event_id,
    new_run,
)
from server import logs, metrics
from server.langgraph_api import views
from server.sse import StreamClosed

logger = logging.getLogger("memory_agent.runs")

#: Seconds between a running run's renewals (and reads of a stop request).
CONTROL_SECONDS = 0.5
#: Seconds between two looks at the queue while nothing is claimable.
POLL_SECONDS = 0.25
#: Seconds between two reads of a run executed elsewhere, for a caller waiting on it.
FOLLOW_SECONDS = 0.1
#: Seconds a run's new events wait to be written to its log together (the last go with
#: its end).
FLUSH_SECONDS = 0.2
#: Seconds between two tries at recording a run's end that an outage held up.
END_RETRY_SECONDS = 0.25
#: How long a new run waits for its thread when something else holds it briefly (a
#: session transition of the native API), before it is refused as busy.
BUSY_WAIT_SECONDS = 2.0
#: Seconds the records of a run without a thread of its own stay after its thread is
#: deleted (`on_completion: "delete"`), for callers following it from other processes.
DISCARD_SECONDS = 30.0


def _now() -> str:
    return datetime.now(UTC).isoformat()


def native_kwargs(
    messages: Sequence[dict[str, Any]], *, resumable: bool, resume: Any = None
) -> dict[str, Any]:
    """The kwargs of a native run of `messages` (each with its id fixed, so a run taken
    over after a crash resumes with the same messages), or of the answer `resume` to the
    thread's pause; a `resumable` one logs its events for callers that rejoin its stream."""
    fixed = [{**m, "id": m.get("id") or str(uuid.uuid4())} for m in messages]
    kwargs = {"native": True, "input": {"messages": fixed}, "stream_resumable": resumable}
    return kwargs if resume is None else {**kwargs, "resume": resume}


def is_native(record: Record) -> bool:
    """Whether the run is one of the native API's."""
    return bool((record.get("kwargs") or {}).get("native"))


def native_error(exc: BaseException) -> dict[str, Any]:
    """A native run's recorded error: its class, and the `error` event's detail and
    status code."""
    if isinstance(exc, MemoryAgentError):
        return {"error": type(exc).__name__, "detail": str(exc), "status_code": exc.status_code}
    return {"error": type(exc).__name__, "detail": "the run failed", "status_code": 500}


def error_event(error: dict[str, Any]) -> dict[str, Any]:
    """The data of a native `error` event for a recorded error."""
    return {"detail": error["detail"], "status_code": error["status_code"]}


@dataclass
class LiveRun:
    """A run executing in this process: its task and the events of this attempt."""

    record: Record
    persist: bool
    task: asyncio.Task[None] | None = None
    events: list[Event] = field(default_factory=list)
    flushed: int = 0
    done: bool = False
    stop: CancelAction | None = None
    #: Stopped by this process's shutdown, not ended: another process continues it.
    handed_back: bool = False
    #: Resolved when the run holds its thread (or raised: refused before it started).
    started: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    #: Events as the graph gave them, serialised into `events` when first needed (by a
    #: reader or the log): a run nobody follows costs no JSON per token.
    _raw: list[tuple[str, Any] | None] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        """The run's id."""
        return str(self.record["run_id"])

    @property
    def base(self) -> int:
        """The id before this attempt's first event."""
        return first_event_id(self.record["attempt"]) - 1

    def emit(self, event: str, data: Any) -> None:
        """Add an event; readers of this process see it at once."""
        self._raw.append((event, data))
        self.notify()

    @property
    def count(self) -> int:
        """Events of this attempt so far."""
        return len(self._raw)

    def since(self, index: int) -> list[Event]:
        """This attempt's events from the `index`-th on, serialised."""
        base = self.base
        while len(self.events) < len(self._raw):
            position = len(self.events)
            raw = self._raw[position]
            assert raw is not None
            self.events.append(Event(base + 1 + position, raw[0], views.dumps(raw[1])))
            self._raw[position] = None  # the text is kept; the objects go
        return self.events[index:]

    def notify(self) -> None:
        """Wake every reader."""
        self._wake.set()
        self._wake = asyncio.Event()

    async def changed(self, timeout: float) -> None:
        """Wait for the next event (or the end), at most `timeout` seconds."""
        wake = self._wake
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout)

    def after(self, last: int) -> list[Event]:
        """This attempt's events with ids above `last`."""
        return self.since(max(0, last - self.base))

    def hand_back(self) -> None:
        """Stop executing the run here without ending it: its record stays running and
        its lease is given up, so another process takes it over at once."""
        self.handed_back = True
        if self.task is not None and not self.task.done():
            self.task.cancel()

    def cancel(self, action: CancelAction) -> None:
        """Stop the run at its next step."""
        if self.stop is None:
            self.stop = action
        if self.task is not None and not self.task.done():
            self.task.cancel()


class Runner:
    """The runs of this deployment, as this process takes part in them.

    Args:
        sessions: Answers the session service once the database is reached (None
            before).
        settings: The deployment's settings (lease, concurrency, event keeping time).
    """

    def __init__(self, sessions: Callable[[], SessionManager | None], settings: Settings) -> None:
        self._sessions = sessions
        self.settings = settings
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease_ms = max(1, int(settings.lease_seconds * 1000))
        self.keep_ms = int(settings.run_events_keep_seconds * 1000)
        self.capacity = settings.run_concurrency
        #: Finished runs' events are swept as often as they may be kept, at most every 10 s.
        self._sweep_seconds = min(10.0, settings.run_events_keep_seconds)
        self.local: dict[str, LiveRun] = {}
        self._kick = asyncio.Event()
        #: Held by this process's claims: the queue poll does not take a run `submit`
        #: created and is about to claim (create and claim are two calls on Redis).
        self._claiming = asyncio.Lock()
        self._loop: asyncio.Task[None] | None = None
        self._closing = False
        #: Set once the process stops (SIGTERM): streams of this process end at the next
        #: event they would wait for, and callers waiting on a run are told to rejoin.
        self.streams_closed = asyncio.Event()
        self._stopping: asyncio.Task[None] | None = None
        #: Ends of runs an outage kept from being recorded, retried until it is over.
        self._later: set[asyncio.Task[None]] = set()
        #: The same by thread key: a new run on that thread waits for it rather than meet
        #: the run as its thread's active one.
        self._ending: dict[str, asyncio.Task[None]] = {}

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Start taking runs from the queue."""
        self._loop = asyncio.get_running_loop().create_task(self._poll(), name="run-queue")

    async def close(self) -> None:
        """Stop taking runs and wait for those this process executes."""
        self._closing = True
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
        if self._stopping is not None:
            await self._stopping
        await self.drain()
        self.streams_closed.set()
        for task in list(self._later):  # their runs' leases lapse: another process ends them
            task.cancel()
        await asyncio.gather(*self._later, return_exceptions=True)

    def begin_stop(self, grace: float) -> None:
        """The process is stopping: take no more runs, let those executing here go on for
        `grace` seconds, then hand the rest back to the database (another process, or the
        next start, takes them over and continues from their last checkpoint) and end
        every stream of this process."""
        if self._stopping is not None:
            return
        logger.info("stopping: %d runs here get %.3g s to finish", len(self.local), grace)
        self._closing = True
        self._kick.set()
        self._stopping = asyncio.get_running_loop().create_task(
            self._stop_after(grace), name="stopping runs"
        )

    async def _stop_after(self, grace: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.drain(), grace)
        for live in list(self.local.values()):
            live.hand_back()
        await self.drain()
        self.streams_closed.set()

    async def drain(self) -> None:
        """Wait until this process executes no run (shutdown, and tests)."""
        while self.local:
            await asyncio.gather(
                *(live.finished.wait() for live in list(self.local.values())),
                return_exceptions=True,
            )

    def _db(self) -> tuple[SessionManager, RunDB] | None:
        sessions = self._sessions()
        if sessions is None:
            return None
        return sessions, sessions.db.runs

    async def _poll(self) -> None:
        swept = time.monotonic()
        # `_closing` ends the loop too: Python 3.11's `wait_for` loses a cancellation that
        # comes as the kick does (a run ending as the server shuts down).
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), POLL_SECONDS)
            self._kick.clear()
            opened = self._db()
            if opened is None:
                continue
            sessions, runs = opened
            try:
                while len(self.local) < self.capacity and not self._closing:
                    async with self._claiming:
                        claimed = await runs.claim(self.worker, self.lease_ms)
                    if claimed is None:
                        break
                    self._launch(sessions, claimed, persist=True)
                if time.monotonic() - swept > self._sweep_seconds:
                    swept = time.monotonic()
                    await runs.sweep()
            except Exception as exc:  # an outage: the next round tries again
                logger.warning("taking runs from the queue failed: %s", exc)

    # -- submitting -----------------------------------------------------------------

    async def submit(
        self,
        sessions: SessionManager,
        owner: Owner,
        thread_id: str,
        *,
        kwargs: dict[str, Any],
        metadata: dict[str, Any],
        strategy: Strategy,
        delay_seconds: float = 0.0,
        streamed: bool = False,
    ) -> tuple[Record, LiveRun | None]:
        """Write a run and start it here if it may run now.

        Answers the record and, when this process started it, the live run (await its
        `started` for a refusal before it began: rate limit, ended session, busy thread).

        Raises:
            ConflictError: `reject` and the thread has an active run.
        """
        run = new_run(
            run_id=str(uuid.uuid4()),
            thread_id=thread_id,
            thread_key=owner.thread_key(thread_id),
            tenant=owner.tenant,
            user=owner.user,
            assistant_id=views.ASSISTANT_ID,
            strategy=strategy,
            kwargs=kwargs,
            metadata=metadata,
            created_at=_now(),
        )
        runs = sessions.db.runs
        claimed = None
        for _ in range(2):
            if delay_seconds <= 0 and len(self.local) < self.capacity and not self._closing:
                async with self._claiming:
                    inserted, asked, claimed = await runs.start(run, self.worker, self.lease_ms)
            else:
                inserted, asked = await runs.create(run, int(delay_seconds * 1000))
            key = run["thread_key"]
            settling = self._ending.get(key) or runs.forgetting(key)
            if inserted or settling is None:
                break
            # The active run is one an outage cut here (its end about to be recorded), or
            # one the database took after its caller was told 503 (about to be forgotten).
            await asyncio.wait({settling}, timeout=sessions.backend_timeout)
        if not inserted:
            raise ConflictError(f"a run is already active on thread {thread_id!r}")
        for other in asked:
            if (live := self.local.get(other)) is not None:
                live.cancel(strategy)  # type: ignore[arg-type]
        if claimed is not None:
            persist = not streamed or bool(kwargs.get("stream_resumable"))
            return claimed, self._launch(sessions, claimed, persist=persist)
        self._kick.set()
        return run, None

    # -- executing ------------------------------------------------------------------

    def _launch(self, sessions: SessionManager, record: Record, *, persist: bool) -> LiveRun:
        live = LiveRun(record, persist=persist)
        self.local[live.run_id] = live
        live.task = asyncio.get_running_loop().create_task(
            self._execute(sessions, live), name=f"run {live.run_id}"
        )
        observe(live.task, f"run {live.run_id}")  # no route awaits it: errors go to the log
        return live

    async def _execute(self, sessions: SessionManager, live: LiveRun) -> None:
        record = live.record
        logs.bind_run(live.run_id, record["thread_id"], record["tenant"], record["user"])
        metrics.RUNS_ACTIVE.inc()
        began = time.perf_counter()
        runs = sessions.db.runs
        keeper = observe(
            asyncio.get_running_loop().create_task(self._keep(runs, live)),
            f"renewing run {live.run_id}",
        )
        flusher = observe(
            asyncio.get_running_loop().create_task(self._flush_forever(runs, live)),
            f"writing the events of run {live.run_id}",
        )
        native = is_native(live.record)
        status, result, error = "success", None, None
        try:
            result = await self._stream(sessions, live)
        except asyncio.CancelledError:
            status = "handed back" if live.handed_back else "interrupted"
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # stopped on request: the end below is still recorded
            if not live.started.done():
                live.started.cancel()
            if native and not live.handed_back:
                stopped = "rolled back" if live.stop == "rollback" else "interrupted"
                live.emit(
                    "error",
                    {"detail": f"the run was {stopped} before it finished", "status_code": 409},
                )
        except Exception as failure:
            status = "error"
            exc = as_unavailable(failure) or failure  # an outage met inside the graph: a 503
            if not isinstance(exc, MemoryAgentError):
                logger.error("run %s failed", live.run_id, exc_info=exc)
            if native:
                error = native_error(exc)
            elif isinstance(exc, MemoryAgentError):
                error = {"error": type(exc).__name__, "message": str(exc)}
            else:
                message = "the run failed; the server log has the details"
                error = {"error": type(exc).__name__, "message": message}
            if not live.started.done():  # refused before it started: the caller answers it
                live.started.set_exception(exc)
                observe(live.started)  # a caller that has gone away no longer reads it
                if native:  # and so does the event, for a caller following it from the queue
                    live.emit("error", error_event(error))
            else:
                live.emit("error", error_event(error) if native else error)
        finally:
            keeper.cancel()
            flusher.cancel()
            # Counted before the end is recorded: a caller answered at the end sees it.
            api, seconds = "native" if native else "langgraph", time.perf_counter() - began
            metrics.RUNS_ACTIVE.dec()
            if not live.handed_back:
                metrics.RUNS.labels(api, status).inc()
            metrics.RUN_DURATION.labels(api).observe(seconds)
            logger.info("%s run %s ended: %s after %.3f s", api, live.run_id, status, seconds)
            await self._end(sessions, live, status, result, error)

    async def _stream(self, sessions: SessionManager, live: LiveRun) -> dict[str, Any] | None:
        """Run the graph, retrying while the thread is briefly held elsewhere."""
        record = live.record
        kwargs = record["kwargs"]
        owner = Owner(tenant=record["tenant"], user=record["user"])
        modes = list(kwargs.get("stream_mode") or ["values"])
        graph_modes = list(dict.fromkeys("messages" if m == "messages-tuple" else m for m in modes))
        # A run taken over waits out the lease of its dead holder on the thread.
        patience = BUSY_WAIT_SECONDS + (self.lease_ms / 1000 + 5 if record["attempt"] > 1 else 0)
        deadline = time.monotonic() + patience
        delay = 0.02
        while True:
            try:
                if is_native(record):
                    return await self._stream_native(sessions, live, owner)
                return await self._stream_once(sessions, live, owner, modes, graph_modes)
            except ConflictError as exc:
                if live.started.done() or "already active" not in str(exc):
                    raise
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    async def _stream_once(
        self,
        sessions: SessionManager,
        live: LiveRun,
        owner: Owner,
        modes: list[str],
        graph_modes: list[str],
    ) -> dict[str, Any] | None:
        record = live.record
        kwargs = record["kwargs"]
        result: dict[str, Any] | None = None
        # Both message modes asked for: the tuples alone, as langgraph-api sends them.
        parts = None if "messages-tuple" in modes else views.MessageParts()
        async for kind, payload in sessions.astream_graph(
            owner,
            record["thread_id"],
            kwargs["input"]["messages"],
            stream_mode=graph_modes,
            context=kwargs.get("context") or {},
            recent=int(kwargs.get("recent", 50)),
            run_id=live.run_id,
            checkpoint_id=kwargs.get("checkpoint_id"),
            graph_config=kwargs.get("config"),
            command=kwargs.get("command"),
            interrupt_before=kwargs.get("interrupt_before"),
            interrupt_after=kwargs.get("interrupt_after"),
            subgraphs=bool(kwargs.get("stream_subgraphs")),
            metadata={
                **(record.get("metadata") or {}),
                "graph_id": views.GRAPH_ID,
                "assistant_id": views.ASSISTANT_ID,
                "run_attempt": record["attempt"],
            },
        ):
            if kind == "thread":
                live.emit("metadata", {"run_id": live.run_id, "attempt": record["attempt"]})
                if not live.started.done():
                    live.started.set_result(None)
            elif kind == "done":
                result = payload[1]
            elif kind.partition("|")[0] == "messages":
                chunk, meta = payload
                meta = self._message_metadata(live, meta)
                if parts is None:  # a subgraph's under its namespace (`messages|ns`)
                    live.emit(kind, [chunk, meta])
                else:  # the older mode names no namespace, as in langgraph-api
                    for name, data in parts.add(chunk, meta):
                        live.emit(name, data)
            elif kind == "events":  # a callback event, its metadata as a message's
                event = {
                    **payload,
                    "metadata": self._message_metadata(live, payload.get("metadata")),
                }
                live.emit("events", event)
            elif (mode := kind.partition("|")[0]) in modes:
                run_meta = {**(record.get("metadata") or {}), "run_id": live.run_id}
                run_meta.update(graph_id=views.GRAPH_ID, assistant_id=views.ASSISTANT_ID)
                live.emit(kind, views.stream_part(mode, payload, record["thread_id"], run_meta))
        return result

    async def _stream_native(
        self, sessions: SessionManager, live: LiveRun, owner: Owner
    ) -> dict[str, Any] | None:
        record = live.record
        result: dict[str, Any] | None = None
        async for kind, value in sessions.astream(
            owner,
            record["thread_id"],
            record["kwargs"]["input"]["messages"],
            run_id=live.run_id,
            resume=record["kwargs"].get("resume"),
        ):
            if kind == "thread":
                live.emit("metadata", {"thread_id": value, "run_id": live.run_id})
                if not live.started.done():
                    live.started.set_result(None)
            elif kind == "token":
                live.emit("token", {"text": value})
            else:
                result = asdict(value)
                live.emit("done", result)
        return result

    @staticmethod
    def _message_metadata(live: LiveRun, metadata: Any) -> dict[str, Any]:
        """A `messages` event's metadata: the node's, plus the run as langgraph-api adds it."""
        return {
            **views.clean_metadata(metadata, live.record["thread_id"]),
            "run_id": live.run_id,
            "run_attempt": live.record["attempt"],
            "assistant_id": views.ASSISTANT_ID,
            "graph_id": views.GRAPH_ID,
        }

    async def _keep(self, runs: RunDB, live: LiveRun) -> None:
        """Renew the claim; stop the run when asked to or when the claim is lost."""
        while True:
            await asyncio.sleep(CONTROL_SECONDS)
            try:
                control = await runs.renew(live.run_id, self.worker, self.lease_ms)
            except Exception as exc:  # the lease may still hold: try again
                logger.warning("renewing run %s failed: %s", live.run_id, exc)
                continue
            if not control.held:
                logger.warning("run %s was taken over; stopping it here", live.run_id)
                live.cancel("interrupt")
                return
            if control.cancel is not None:
                live.cancel(control.cancel)
                return

    async def _flush(self, runs: RunDB, live: LiveRun) -> None:
        if not live.persist or live.flushed >= live.count:
            return
        batch = live.since(live.flushed)
        await runs.add_events(live.run_id, batch)
        live.flushed += len(batch)

    async def _flush_forever(self, runs: RunDB, live: LiveRun) -> None:
        while True:
            await live.changed(3600)
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                await self._flush(runs, live)
            except Exception as exc:  # kept for the final flush
                logger.warning("writing the events of run %s failed: %s", live.run_id, exc)

    async def _end(
        self,
        sessions: SessionManager,
        live: LiveRun,
        status: str,
        result: Any,
        error: Any,
    ) -> None:
        record = live.record
        result = json.loads(views.dumps(result)) if result is not None else None
        try:
            if live.handed_back:
                await self._hand_back(sessions.db.runs, live)
                return
            await self._record_end(sessions, live, status, result, error)
        except Exception as exc:
            if as_unavailable(exc) is None:  # the record stays running; its lease lapses
                logger.warning("recording the end of run %s failed: %s", live.run_id, exc)
            else:  # recorded as soon as the database answers, so the thread comes free
                logger.warning("recording the end of run %s waits: %s", live.run_id, exc)
                task = asyncio.get_running_loop().create_task(
                    self._end_later(sessions, live, status, result, error),
                    name=f"end of run {live.run_id}",
                )
                self._later.add(task)
                task.add_done_callback(self._later.discard)
                key = record["thread_key"]
                self._ending[key] = task
                task.add_done_callback(
                    lambda done: self._ending.pop(key) if self._ending.get(key) is done else None
                )
        finally:
            if not live.handed_back:
                record.update(status=status, result=result, error=error, cancel=live.stop)
            live.done = True
            live.finished.set()
            live.notify()
            self.local.pop(live.run_id, None)
            self._kick.set()

    async def _hand_back(self, runs: RunDB, live: LiveRun) -> None:
        """Write the run's last events and give up its lease (to lapse in a millisecond):
        the next claim of any process takes the run over as it would a dead holder's."""
        try:
            await self._flush(runs, live)
            await runs.renew(live.run_id, self.worker, 1)
        except Exception as exc:  # its lease lapses on its own
            logger.warning("handing back run %s failed: %s", live.run_id, exc)
        logger.info("run %s handed back for another process to continue", live.run_id)

    async def _record_end(
        self, sessions: SessionManager, live: LiveRun, status: str, result: Any, error: Any
    ) -> None:
        runs = sessions.db.runs
        record = live.record
        if status == "interrupted" and live.stop == "rollback":
            owner = Owner(tenant=record["tenant"], user=record["user"])
            await sessions.arollback(owner, record["thread_id"], live.run_id)
        rest = live.since(live.flushed) if live.persist else []
        done = await runs.finish(
            live.run_id, self.worker, status, result, error, self.keep_ms, _now(), rest
        )
        live.flushed += len(rest)
        if not done:
            logger.warning("run %s changed hands before it finished here", live.run_id)
        if live.stop == "rollback":
            await runs.delete(record["thread_key"], live.run_id)
        if (record.get("kwargs") or {}).get("on_completion") == "delete":
            await self._discard(sessions, live)

    async def _discard(self, sessions: SessionManager, live: LiveRun) -> None:
        """Delete the thread a run without one was given, now that the run has ended;
        its run records go a little later (`DISCARD_SECONDS`)."""
        record = live.record
        owner = Owner(tenant=record["tenant"], user=record["user"])
        with contextlib.suppress(NotFoundError):  # deleted already (a first try's end)
            await sessions.adelete(owner, record["thread_id"])
        task = asyncio.get_running_loop().create_task(
            self._forget_runs(sessions.db.runs, record["thread_key"]),
            name=f"records of run {live.run_id}",
        )
        self._later.add(task)
        task.add_done_callback(self._later.discard)

    @staticmethod
    async def _forget_runs(runs: RunDB, thread_key: str) -> None:
        try:
            await asyncio.sleep(DISCARD_SECONDS)
        finally:  # at once when the process stops
            try:
                await runs.delete_thread(thread_key)
            except Exception as exc:
                logger.warning("deleting the runs of a deleted thread failed: %s", exc)

    async def _end_later(
        self, sessions: SessionManager, live: LiveRun, status: str, result: Any, error: Any
    ) -> None:
        """Retry recording a run's end while the lease it holds lasts (after that, the
        process that takes the run over ends it)."""
        deadline = time.monotonic() + self.lease_ms / 1000
        while time.monotonic() < deadline:
            await asyncio.sleep(END_RETRY_SECONDS)
            try:
                await self._record_end(sessions, live, status, result, error)
                return
            except Exception as exc:
                if as_unavailable(exc) is None:
                    logger.warning("recording the end of run %s failed: %s", live.run_id, exc)
                    return
        logger.warning("the end of run %s was not recorded; its lease lapses", live.run_id)

    # -- reading --------------------------------------------------------------------

    async def get(
        self, sessions: SessionManager, owner: Owner, thread_id: str, run_id: str
    ) -> Record:
        """The owner's run, from the database.

        Raises:
            NotFoundError: no such run of the owner's thread.
        """
        record = await sessions.db.runs.get(owner.thread_key(thread_id), run_id)
        if record is None:
            raise NotFoundError(f"run {run_id!r} not found on thread {thread_id!r}")
        return record

    async def wait(
        self, sessions: SessionManager, owner: Owner, thread_id: str, run_id: str
    ) -> Record:
        """The run once it has ended (None if it was deleted meanwhile: rolled back)."""
        while True:
            if self.streams_closed.is_set():
                raise StreamClosed(run_id)
            live = self.local.get(run_id)
            if live is not None:
                await asyncio.shield(live.finished.wait())
                if not live.handed_back:
                    return live.record  # as `_end` recorded it
                continue
            record = await sessions.db.runs.get(owner.thread_key(thread_id), run_id)
            if record is None:
                if live is not None:
                    return live.record
                raise NotFoundError(f"run {run_id!r} not found on thread {thread_id!r}")
            if record["status"] in FINAL:
                return record
            await asyncio.sleep(FOLLOW_SECONDS)

    async def follow(
        self,
        sessions: SessionManager,
        owner: Owner,
        thread_id: str,
        run_id: str,
        after: int = 0,
        live: LiveRun | None = None,
        heartbeat: float = 5.0,
    ) -> AsyncIterator[Event | None]:
        """The run's events with ids above `after`, as they come, until it ends; None
        for a heartbeat after `heartbeat` seconds of silence."""
        runs = sessions.db.runs
        key = owner.thread_key(thread_id)
        quiet_since = time.monotonic()
        while True:
            if self.streams_closed.is_set():
                raise StreamClosed(run_id)
            if live is None:
                live = self.local.get(run_id)
            if live is not None and after < live.base:
                if live.record["attempt"] > 1:
                    # The events of earlier attempts (a takeover) come from the log.
                    for event in await runs.events(run_id, after):
                        if event.id <= live.base:
                            yield event
                after = live.base
            if live is not None:
                events = live.after(after)
                for event in events:
                    yield event
                if events:
                    after = events[-1].id
                    quiet_since = time.monotonic()
                    continue
                if live.done:
                    if not live.handed_back:
                        return
                    live = None  # continued elsewhere: its events come from the log
                    continue
                await live.changed(heartbeat)
            else:
                events = await runs.events(run_id, after)
                for event in events:
                    yield event
                if events:
                    after = events[-1].id
                    quiet_since = time.monotonic()
                    continue
                record = await runs.get(key, run_id)
                if record is None or record["status"] in FINAL:
                    for event in await runs.events(run_id, after):
                        yield event
                    return
                await asyncio.sleep(FOLLOW_SECONDS)
            if time.monotonic() - quiet_since >= heartbeat:
                yield None
                quiet_since = time.monotonic()

    # -- stopping -------------------------------------------------------------------

    async def cancel(
        self,
        sessions: SessionManager,
        owner: Owner,
        thread_id: str,
        run_ids: list[str] | None,
        action: CancelAction,
        wait: bool = False,
    ) -> list[Record]:
        """Stop the given runs of the thread (None: its active ones), from any process."""
        key = owner.thread_key(thread_id)
        found = await sessions.db.runs.cancel(key, run_ids, action, _now())
        for record in found:
            if (live := self.local.get(record["run_id"])) is not None:
                live.cancel(action)
        if wait:
            for record in found:
                with contextlib.suppress(NotFoundError):
                    await self.wait(sessions, owner, thread_id, record["run_id"])
        return found
