"""The run database: LangGraph runs as durable records, their queue and their event logs.

A run is a record in the session database of its deployment (memory, SQLite, Postgres or
Redis), so every process sharing that database sees it, claims it and streams it:

- `create` inserts a run under its thread's multitask strategy, atomically with the check
  of the thread's active runs: `reject` refuses when one is pending or running,
  `interrupt` and `rollback` ask the active ones to stop (their `cancel` field), and
  `enqueue` queues behind them;
- `claim` hands a worker the next run it may execute: the oldest pending run of a thread
  that has no running run, once its `run_at` has come, or a running run whose holder's
  lease ran out (a process that died: the run is taken over with `attempt` + 1). A claim
  is a lease with the worker's id, renewed while the run lives and fencing `finish`;
- `cancel` stops a pending run at once, and asks a running one to stop (its holder reads
  the request with each renewal);
- the run's events (`add_events`, `events`) are kept with numeric ids, in order, for a
  configurable time after the run ends (`keep_ms` of `finish`), for clients that rejoin.

Times come from the database's clock, so hosts with skewed clocks agree. A run record is
a JSON object (see `new_run`); backends add nothing to it but what `claim`, `renew`,
`finish` and `cancel` set.
"""

from __future__ import annotations

import asyncio
import builtins
import itertools
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from memory.errors import UnavailableError
from memory.stores.outages import LOST, retry_in_background

Record = dict[str, Any]
Strategy = Literal["reject", "enqueue", "interrupt", "rollback"]
CancelAction = Literal["interrupt", "rollback"]
#: Every status a run can have; the first two are active, the others final.
STATUSES = ("pending", "running", "success", "error", "interrupted", "timeout")
ACTIVE = ("pending", "running")
FINAL = ("success", "error", "interrupted", "timeout")
#: How long a run written after its caller was told 503 is looked for, at least.
FORGET_MIN_SECONDS = 60.0
#: Event ids are `attempt << ATTEMPT_SHIFT | n`: a run taken over after a crash numbers
#: its events after every id its first attempt could have sent to a client.
ATTEMPT_SHIFT = 32


@dataclass(frozen=True)
class Event:
    """One event of a run's stream: its id, SSE event name and JSON data (as text)."""

    id: int
    event: str
    data: str


@dataclass(frozen=True)
class Control:
    """What a renewal found: whether the holder keeps the run, and a stop request."""

    held: bool
    cancel: CancelAction | None = None


def first_event_id(attempt: int) -> int:
    """The id of the first event of an attempt."""
    return (attempt << ATTEMPT_SHIFT) + 1


def new_run(
    *,
    run_id: str,
    thread_id: str,
    thread_key: str,
    tenant: str,
    user: str,
    assistant_id: str,
    strategy: Strategy,
    kwargs: dict[str, Any],
    metadata: dict[str, Any],
    created_at: str,
) -> Record:
    """A pending run as `create` takes it."""
    return {
        "run_id": run_id,
        "thread_id": thread_id,
        "thread_key": thread_key,
        "tenant": tenant,
        "user": user,
        "assistant_id": assistant_id,
        "status": "pending",
        "multitask_strategy": strategy,
        "kwargs": kwargs,
        "metadata": metadata,
        "attempt": 0,
        "created_at": created_at,
        "updated_at": created_at,
        "worker": None,
        "cancel": None,
        "result": None,
        "error": None,
    }


def loads(text: Any) -> Any:
    """JSON from a backend's text or bytes."""
    return json.loads(text.decode() if isinstance(text, bytes) else text)


def dumps(value: Any) -> str:
    """Compact JSON, as every backend stores runs."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


class RunDB:
    """Run records, their queue and their events; see the module docstring.

    Every method is atomic in the database. `created_at` and `updated_at` are ISO times set
    by the caller; leases and `run_at` are milliseconds of the database's clock.
    """

    #: Backend kind: memory, sqlite, postgres or redis.
    kind = "memory"

    async def create(self, run: Record, delay_ms: int = 0) -> tuple[bool, builtins.list[str]]:
        """Insert a pending run due in `delay_ms`, under `run["multitask_strategy"]`.

        Returns:
            Whether it was inserted (False: `reject` met an active run), and the ids of
            the active runs `interrupt` or `rollback` asked to stop.
        """
        raise NotImplementedError

    async def start(
        self, run: Record, worker: str, lease_ms: int
    ) -> tuple[bool, builtins.list[str], Record | None]:
        """`create` a run due now, then `claim` it for `worker` if it may run at once (one
        transaction where the backend has them). Answers `create`'s pair and the claimed
        record (None: it waits in the queue)."""
        inserted, asked = await self.create(run)
        if not inserted:
            return False, asked, None
        try:
            return True, asked, await self.claim(worker, lease_ms, run["run_id"])
        except UnavailableError:
            # Its caller is told 503 and sends it again: the run must not wait in the queue.
            self.forget_later({**run, "worker": worker}, lease_ms / 1000)
            raise

    # -- runs written after their caller was told 503 ----------------------------------

    def late_writes(self, run: Record, seconds: float) -> Callable[[Any], None]:
        """The `on_late` of a `create` or `start` of `run` that failed (left at its
        deadline, or cut by an outage): the database may have written the run all the
        same, when it received the request before the outage or when a paused server
        resumed. Its caller, told 503, will send it again, so such a run must neither run
        later nor hold its thread (a `reject` run would meet it and answer 409 until its
        lease ran out): once the database answers, it is forgotten. `seconds`: how long
        a lease it may hold lasts."""

        def late(result: Any) -> None:
            if result is LOST or result[0]:
                self.forget_later(run, seconds)

        return late

    def forget_later(self, run: Record, seconds: float) -> None:
        """`forget` the run in the background, as soon as the database answers."""
        forgetting: dict[str, asyncio.Task[Any]] = self.__dict__.setdefault("_forgetting", {})
        key = run["thread_key"]
        task = retry_in_background(lambda: self.forget(run), max(seconds, FORGET_MIN_SECONDS), None)
        forgetting[key] = task
        task.add_done_callback(
            lambda done: forgetting.pop(key) if forgetting.get(key) is done else None
        )

    def forgetting(self, thread_key: str) -> asyncio.Task[Any] | None:
        """The task forgetting a run of the thread, if one is under way in this process."""
        return self.__dict__.get("_forgetting", {}).get(thread_key)

    async def forget(self, run: Record) -> None:
        """End `run` if it is pending, or running for the worker that asked for it (its
        `worker`), and remove it; a run another process took meanwhile is asked to stop.
        Each step is idempotent, so it is safe to call again."""
        key, run_id = run["thread_key"], run["run_id"]
        now = datetime.now(UTC).isoformat()
        found = await self.cancel(key, [run_id], "interrupt", now)
        if not found:
            return  # never written
        worker = run.get("worker")
        if found[0]["status"] == "running" and worker and found[0]["worker"] == worker:
            await self.finish(run_id, worker, "interrupted", None, None, 0, now)
        await self.delete(key, run_id)

    async def get(self, thread_key: str, run_id: str) -> Record | None:
        """The run `run_id` of thread `thread_key`, or None."""
        raise NotImplementedError

    async def list(
        self, thread_key: str, limit: int, offset: int, status: str | None = None
    ) -> builtins.list[Record]:
        """The thread's runs, newest first (optionally of one status)."""
        raise NotImplementedError

    async def active(self, thread_key: str) -> builtins.list[Record]:
        """The thread's pending and running runs, oldest first."""
        raise NotImplementedError

    async def claim(self, worker: str, lease_ms: int, run_id: str | None = None) -> Record | None:
        """Claim `run_id` if it may run now, or (None) the next run any thread may run:
        status `running`, `worker` and a lease set; `attempt` counted up. None: nothing."""
        raise NotImplementedError

    async def renew(self, run_id: str, worker: str, lease_ms: int) -> Control:
        """Extend the worker's lease on a running run, and read any stop request."""
        raise NotImplementedError

    async def finish(
        self,
        run_id: str,
        worker: str,
        status: str,
        result: Any,
        error: Any,
        keep_ms: int,
        updated_at: str,
        events: Sequence[Event] = (),
    ) -> bool:
        """Set a running run's final status, fenced by the worker's claim, after appending
        its last `events`; its events are kept `keep_ms` longer. False: the run is not
        held by `worker` any more (the events are not added)."""
        raise NotImplementedError

    async def cancel(
        self, thread_key: str, run_ids: Sequence[str] | None, action: CancelAction, updated_at: str
    ) -> builtins.list[Record]:
        """Stop the given active runs of the thread (None: all of them): a pending run
        ends `interrupted` at once, a running run is asked to stop. Answers the runs found
        (as they stand after the call)."""
        raise NotImplementedError

    async def delete(self, thread_key: str, run_id: str) -> bool:
        """Remove a run that is not running, and its events."""
        raise NotImplementedError

    async def delete_thread(self, thread_key: str) -> int:
        """Remove every run of the thread and their events; answers how many."""
        raise NotImplementedError

    async def add_events(self, run_id: str, events: Sequence[Event]) -> None:
        """Append events (ids increasing) to the run's log."""
        raise NotImplementedError

    async def events(self, run_id: str, after: int, limit: int = 1000) -> builtins.list[Event]:
        """The run's events with ids above `after`, in order."""
        raise NotImplementedError

    async def last_event_id(self, run_id: str) -> int:
        """The id of the run's last stored event (0: none)."""
        raise NotImplementedError

    async def sweep(self) -> int:
        """Delete the events whose keeping time is over; answers how many runs had some."""
        raise NotImplementedError


class MemoryRunDB(RunDB):
    """The runs of one process: dictionaries changed between awaits (each call is atomic
    on the event loop); `memory://` deployments are single-process by design."""

    kind = "memory"

    def __init__(self) -> None:
        self._runs: dict[str, Record] = {}
        #: Per run: creation order, `run_at`, lease expiry (ms of `time.monotonic`).
        self._order: dict[str, int] = {}
        self._due: dict[str, float] = {}
        self._lease: dict[str, float] = {}
        self._events: dict[str, builtins.list[Event]] = {}
        self._expires: dict[str, float] = {}
        self._counter = itertools.count()

    @staticmethod
    def _now() -> float:
        return time.monotonic() * 1000

    @staticmethod
    def _copy(run: Record) -> Record:
        return json.loads(dumps(run))

    def _of_thread(self, thread_key: str) -> builtins.list[Record]:
        runs = [r for r in self._runs.values() if r["thread_key"] == thread_key]
        runs.sort(key=lambda r: self._order[r["run_id"]])
        return runs

    async def create(self, run: Record, delay_ms: int = 0) -> tuple[bool, builtins.list[str]]:
        active = [r for r in self._of_thread(run["thread_key"]) if r["status"] in ACTIVE]
        strategy = run["multitask_strategy"]
        if strategy == "reject" and active:
            return False, []
        asked: builtins.list[str] = []
        if strategy in ("interrupt", "rollback"):
            for other in active:
                if other["status"] == "pending":
                    other["status"] = "interrupted"
                else:
                    other["cancel"] = strategy
                other["updated_at"] = run["created_at"]
                asked.append(other["run_id"])
        self._runs[run["run_id"]] = self._copy(run)
        self._order[run["run_id"]] = next(self._counter)
        self._due[run["run_id"]] = self._now() + delay_ms
        return True, asked

    async def get(self, thread_key: str, run_id: str) -> Record | None:
        run = self._runs.get(run_id)
        return self._copy(run) if run is not None and run["thread_key"] == thread_key else None

    async def list(
        self, thread_key: str, limit: int, offset: int, status: str | None = None
    ) -> builtins.list[Record]:
        runs = [r for r in reversed(self._of_thread(thread_key)) if status in (None, r["status"])]
        return [self._copy(r) for r in runs[offset : offset + limit]]

    async def active(self, thread_key: str) -> builtins.list[Record]:
        return [self._copy(r) for r in self._of_thread(thread_key) if r["status"] in ACTIVE]

    def _eligible(self, run: Record, now: float) -> bool:
        if run["status"] == "running":
            return self._lease.get(run["run_id"], 0) <= now
        if run["status"] != "pending" or self._due[run["run_id"]] > now:
            return False
        for other in self._of_thread(run["thread_key"]):
            if other["status"] == "running":
                return False
            if other["status"] == "pending":
                return other["run_id"] == run["run_id"]
        return False

    async def claim(self, worker: str, lease_ms: int, run_id: str | None = None) -> Record | None:
        now = self._now()
        if run_id is not None:
            candidates = [self._runs[run_id]] if run_id in self._runs else []
        else:
            candidates = sorted(self._runs.values(), key=lambda r: self._order[r["run_id"]])
        for run in candidates:
            if self._eligible(run, now):
                run.update(status="running", worker=worker, attempt=run["attempt"] + 1)
                self._lease[run["run_id"]] = now + lease_ms
                return self._copy(run)
        return None

    async def renew(self, run_id: str, worker: str, lease_ms: int) -> Control:
        run = self._runs.get(run_id)
        if run is None or run["status"] != "running" or run["worker"] != worker:
            return Control(False)
        self._lease[run_id] = self._now() + lease_ms
        return Control(True, run["cancel"])

    async def finish(
        self,
        run_id: str,
        worker: str,
        status: str,
        result: Any,
        error: Any,
        keep_ms: int,
        updated_at: str,
        events: Sequence[Event] = (),
    ) -> bool:
        run = self._runs.get(run_id)
        if run is None or run["status"] != "running" or run["worker"] != worker:
            return False
        self._events.setdefault(run_id, []).extend(events)
        run.update(status=status, result=result, error=error, updated_at=updated_at)
        self._lease.pop(run_id, None)
        self._expires[run_id] = self._now() + keep_ms
        return True

    async def cancel(
        self, thread_key: str, run_ids: Sequence[str] | None, action: CancelAction, updated_at: str
    ) -> builtins.list[Record]:
        found = []
        for run in self._of_thread(thread_key):
            if run_ids is not None and run["run_id"] not in run_ids:
                continue
            if run["status"] == "pending":
                run.update(status="interrupted", cancel=action, updated_at=updated_at)
                self._expires[run["run_id"]] = self._now()
            elif run["status"] == "running":
                run.update(cancel=action, updated_at=updated_at)
            elif run_ids is None:
                continue
            found.append(self._copy(run))
        return found

    async def delete(self, thread_key: str, run_id: str) -> bool:
        run = self._runs.get(run_id)
        if run is None or run["thread_key"] != thread_key or run["status"] == "running":
            return False
        self._drop(run_id)
        return True

    def _drop(self, run_id: str) -> None:
        for table in (self._runs, self._order, self._due, self._lease, self._events):
            table.pop(run_id, None)  # type: ignore[attr-defined]
        self._expires.pop(run_id, None)

    async def delete_thread(self, thread_key: str) -> int:
        runs = self._of_thread(thread_key)
        for run in runs:
            self._drop(run["run_id"])
        return len(runs)

    async def add_events(self, run_id: str, events: Sequence[Event]) -> None:
        if run_id in self._runs:
            self._events.setdefault(run_id, []).extend(events)

    async def events(self, run_id: str, after: int, limit: int = 1000) -> builtins.list[Event]:
        return [e for e in self._events.get(run_id, []) if e.id > after][:limit]

    async def last_event_id(self, run_id: str) -> int:
        log = self._events.get(run_id)
        return log[-1].id if log else 0

    async def sweep(self) -> int:
        now = self._now()
        due = [run_id for run_id, at in self._expires.items() if at <= now]
        for run_id in due:
            self._events.pop(run_id, None)
            del self._expires[run_id]
        return len(due)
