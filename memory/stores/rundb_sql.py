"""The run database on SQL: Postgres (many hosts) and SQLite (one host).

Runs live in `memory_agent_runs` (the record as JSON, beside the columns the queue and
the fences read) and their events in `memory_agent_run_events`; both tables are
migrations of the session database (`memory.stores.sessiondb_sql.MIGRATIONS`), and every
operation is one transaction of it, driven by its `_adrive`.

What decides who runs what is serialised per thread: Postgres takes a transaction-level
advisory lock named after the thread before reading the thread's active runs (`create`,
`claim`, `cancel`, `delete`), so two processes never both start runs of one thread, and a
claim passes over a thread another process is claiming instead of waiting for it; SQLite's
write lock serialises every writer of the file. `renew` and `finish` change only the
holder's own row, fenced by its worker id under the row's lock.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from memory.stores.outages import guarded
from memory.stores.rundb import (
    CancelAction,
    Control,
    Event,
    Record,
    RunDB,
    dumps,
    loads,
)
from memory.stores.sessiondb import Steps
from memory.stores.sessiondb_sql import Sql

if TYPE_CHECKING:
    from memory.stores.sessiondb_sql import SqlSessionDB

_RUNS = "memory_agent_runs"
_EVENTS = "memory_agent_run_events"
_ACTIVE = "status IN ('pending', 'running')"
#: Events written per statement (4 parameters each; SQLite's oldest limit is 999).
_EVENT_BATCH = 200
#: Candidates a claim reads per statement, and runs a sweep ends per call.
_CLAIM_SCAN = 20
_SWEEP_BATCH = 500
#: A pending run of a thread that has nothing running and no older pending run; or a
#: running run whose holder's lease has lapsed. The first parameter is the clock.
_ELIGIBLE = (
    f"(r.status = 'pending' AND r.run_at <= %s AND NOT EXISTS ("
    f"SELECT 1 FROM {_RUNS} o WHERE o.thread_key = r.thread_key "
    f"AND (o.status = 'running' OR (o.status = 'pending' AND o.seq < r.seq)))) "
    f"OR (r.status = 'running' AND r.lease_until <= %s)"
)


class SqlRunDB(RunDB):
    """The runs of a SQL session database (`db`), in its tables and transactions."""

    def __init__(self, db: SqlSessionDB) -> None:
        self.db = db
        self.kind = db.kind

    # ------------------------------------------------------------------ helpers

    async def _adrive(
        self, steps: Steps, write: bool, on_late: Callable[[Any], Any] | None = None
    ) -> Any:
        """One transaction of the session database, within its deadline and breaker."""
        return await guarded(self.db.breaker, self.db._adrive(steps, write), on_late)

    def _lock_thread(self, thread_key: str, wait: bool = True) -> Steps:
        return (yield from self.db._xact_lock(f"memory-agent-runs:{thread_key}", wait))

    def _write(self, run: Record, **columns: Any) -> Steps:
        """Store `run` (its record and mirrored columns), with extra columns set."""
        columns.update(status=run["status"], worker=run["worker"], cancel=run["cancel"])
        sets = ", ".join(f"{name} = %s" for name in columns)
        yield Sql(
            f"UPDATE {_RUNS} SET {sets}, record = %s WHERE run_id = %s",
            (*columns.values(), dumps(run), run["run_id"]),
        )

    def _select(self, where: str, params: tuple[Any, ...], lock: bool = False) -> Steps:
        rows = yield Sql(
            f"SELECT record FROM {_RUNS} r WHERE {where} ORDER BY seq"
            + (self.db.for_update if lock else ""),
            params,
            fetch=True,
        )
        return [loads(row[0]) for row in rows]

    # ------------------------------------------------------------------ cores

    def _create(self, run: Record, delay_ms: int) -> Steps:
        thread_key = run["thread_key"]
        yield from self._lock_thread(thread_key)
        now = yield from self.db._now()
        active = yield from self._select(f"thread_key = %s AND {_ACTIVE}", (thread_key,), True)
        strategy = run["multitask_strategy"]
        if strategy == "reject" and active:
            return False, []
        asked = []
        if strategy in ("interrupt", "rollback"):
            for other in active:
                extra: dict[str, Any] = {}
                if other["status"] == "pending":
                    other["status"] = "interrupted"
                    extra["keep_until"] = now
                else:
                    other["cancel"] = strategy
                other["updated_at"] = run["created_at"]
                yield from self._write(other, **extra)
                asked.append(other["run_id"])
        rows = yield Sql(f"SELECT max(seq) FROM {_RUNS} WHERE thread_key = %s", (thread_key,), True)
        seq = max(now * 1000, (rows[0][0] or 0) + 1)
        yield Sql(
            f"INSERT INTO {_RUNS} (run_id, thread_key, seq, status, run_at, worker, cancel, "
            "record) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (
                run["run_id"],
                thread_key,
                seq,
                run["status"],
                now + delay_ms,
                run["worker"],
                run["cancel"],
                dumps(run),
            ),
        )
        return True, asked

    def _start(self, run: Record, worker: str, lease_ms: int) -> Steps:
        inserted, asked = yield from self._create(run, 0)
        if not inserted:
            return False, asked, None
        claimed = yield from self._claim_one(run["run_id"], run["thread_key"], worker, lease_ms)
        return True, asked, claimed

    def _claim_one(self, run_id: str, thread_key: str, worker: str, lease_ms: int) -> Steps:
        """Claim `run_id` if, under its thread's lock, it is still eligible."""
        now = yield from self.db._now()
        found = yield from self._select(
            f"r.run_id = %s AND ({_ELIGIBLE})", (run_id, now, now), True
        )
        if not found:
            return None
        run = found[0]
        run.update(status="running", worker=worker, attempt=run["attempt"] + 1)
        yield from self._write(run, lease_until=now + lease_ms)
        return run

    def _claim(self, worker: str, lease_ms: int, run_id: str | None) -> Steps:
        if run_id is not None:
            rows = yield Sql(f"SELECT thread_key FROM {_RUNS} WHERE run_id = %s", (run_id,), True)
            if not rows:
                return None
            yield from self._lock_thread(rows[0][0])
            return (yield from self._claim_one(run_id, rows[0][0], worker, lease_ms))
        now = yield from self.db._now()
        rows = yield Sql(
            f"SELECT r.run_id, r.thread_key FROM {_RUNS} r "
            f"WHERE r.status IN ('pending', 'running') AND ({_ELIGIBLE}) "
            f"ORDER BY r.seq LIMIT {_CLAIM_SCAN}",
            (now, now),
            fetch=True,
        )
        for candidate, thread_key in rows:
            # A thread another process is claiming for is passed over, not waited for.
            if (yield from self._lock_thread(thread_key, wait=False)):
                run = yield from self._claim_one(candidate, thread_key, worker, lease_ms)
                if run is not None:
                    return run
        return None

    def _any_claimable(self) -> Steps:
        now = yield from self.db._now()
        rows = yield Sql(
            f"SELECT 1 FROM {_RUNS} r WHERE r.status IN ('pending', 'running') "
            f"AND ({_ELIGIBLE}) LIMIT 1",
            (now, now),
            fetch=True,
        )
        return bool(rows)

    def _renew(self, run_id: str, worker: str, lease_ms: int) -> Steps:
        now = yield from self.db._now()
        rows = yield Sql(
            f"UPDATE {_RUNS} SET lease_until = %s "
            "WHERE run_id = %s AND worker = %s AND status = 'running' RETURNING cancel",
            (now + lease_ms, run_id, worker),
            fetch=True,
        )
        return Control(True, rows[0][0]) if rows else Control(False)

    def _finish(
        self,
        run_id: str,
        worker: str,
        status: str,
        result: Any,
        error: Any,
        keep_ms: int,
        updated_at: str,
        events: Sequence[Event],
    ) -> Steps:
        found = yield from self._select(
            "run_id = %s AND worker = %s AND status = 'running'", (run_id, worker), True
        )
        if not found:
            return False
        yield from self._insert_events(run_id, events)
        now = yield from self.db._now()
        run = found[0]
        run.update(status=status, result=result, error=error, updated_at=updated_at)
        yield from self._write(run, lease_until=None, keep_until=now + keep_ms)
        return True

    def _cancel(
        self, thread_key: str, run_ids: Sequence[str] | None, action: str, updated_at: str
    ) -> Steps:
        yield from self._lock_thread(thread_key)
        now = yield from self.db._now()
        if run_ids is None:
            runs = yield from self._select(f"thread_key = %s AND {_ACTIVE}", (thread_key,), True)
        elif not run_ids:
            return []
        else:
            marks = ", ".join("%s" for _ in run_ids)
            runs = yield from self._select(
                f"thread_key = %s AND run_id IN ({marks})", (thread_key, *run_ids), True
            )
        for run in runs:
            if run["status"] == "pending":
                run.update(status="interrupted", cancel=action, updated_at=updated_at)
                yield from self._write(run, keep_until=now)
            elif run["status"] == "running":
                run.update(cancel=action, updated_at=updated_at)
                yield from self._write(run)
        return runs

    def _delete(self, thread_key: str, run_id: str) -> Steps:
        yield from self._lock_thread(thread_key)
        count = yield Sql(
            f"DELETE FROM {_RUNS} WHERE run_id = %s AND thread_key = %s AND status <> 'running'",
            (run_id, thread_key),
        )
        if count:
            yield Sql(f"DELETE FROM {_EVENTS} WHERE run_id = %s", (run_id,))
        return bool(count)

    def _delete_thread(self, thread_key: str) -> Steps:
        yield from self._lock_thread(thread_key)
        yield Sql(
            f"DELETE FROM {_EVENTS} WHERE run_id IN "
            f"(SELECT run_id FROM {_RUNS} WHERE thread_key = %s)",
            (thread_key,),
        )
        return (yield Sql(f"DELETE FROM {_RUNS} WHERE thread_key = %s", (thread_key,)))

    def _add_events(self, run_id: str, events: Sequence[Event]) -> Steps:
        # The run's row is kept from deletion while its events go in: none outlive it.
        if not (
            yield Sql(
                f"SELECT 1 FROM {_RUNS} WHERE run_id = %s" + self.db.for_key_share, (run_id,), True
            )
        ):
            return None
        yield from self._insert_events(run_id, events)
        return None

    def _insert_events(self, run_id: str, events: Sequence[Event]) -> Steps:
        for start in range(0, len(events), _EVENT_BATCH):
            batch = events[start : start + _EVENT_BATCH]
            values = ", ".join("(%s, %s, %s, %s)" for _ in batch)
            params = [v for e in batch for v in (run_id, e.id, e.event, e.data)]
            yield Sql(
                f"INSERT INTO {_EVENTS} (run_id, id, event, data) VALUES {values} "
                "ON CONFLICT (run_id, id) DO NOTHING",
                tuple(params),
            )
        return None

    def _sweep(self) -> Steps:
        now = yield from self.db._now()
        rows = yield Sql(
            f"SELECT run_id FROM {_RUNS} WHERE keep_until IS NOT NULL AND keep_until <= %s "
            f"LIMIT {_SWEEP_BATCH}",
            (now,),
            fetch=True,
        )
        if not rows:
            return 0
        ids = tuple(row[0] for row in rows)
        marks = ", ".join("%s" for _ in ids)
        yield Sql(f"DELETE FROM {_EVENTS} WHERE run_id IN ({marks})", ids)
        yield Sql(f"UPDATE {_RUNS} SET keep_until = NULL WHERE run_id IN ({marks})", ids)
        return len(ids)

    def _rows(self, sql: str, params: tuple[Any, ...]) -> Steps:
        return (yield Sql(sql, params, fetch=True))

    # ------------------------------------------------------------------ interface

    async def create(self, run: Record, delay_ms: int = 0) -> tuple[bool, builtins.list[str]]:
        late = self.late_writes(run, delay_ms / 1000)
        inserted, asked = await self._adrive(self._create(run, delay_ms), True, late)
        return inserted, asked

    async def start(
        self, run: Record, worker: str, lease_ms: int
    ) -> tuple[bool, builtins.list[str], Record | None]:
        late = self.late_writes({**run, "worker": worker}, lease_ms / 1000)
        return await self._adrive(self._start(run, worker, lease_ms), True, late)

    async def get(self, thread_key: str, run_id: str) -> Record | None:
        runs = await self._adrive(
            self._select("run_id = %s AND thread_key = %s", (run_id, thread_key)), False
        )
        return runs[0] if runs else None

    async def list(
        self, thread_key: str, limit: int, offset: int, status: str | None = None
    ) -> builtins.list[Record]:
        where = "thread_key = %s" + ("" if status is None else " AND status = %s")
        params = (thread_key,) if status is None else (thread_key, status)
        rows = await self._adrive(
            self._rows(
                f"SELECT record FROM {_RUNS} WHERE {where} ORDER BY seq DESC LIMIT %s OFFSET %s",
                (*params, limit, offset),
            ),
            False,
        )
        return [loads(row[0]) for row in rows]

    async def active(self, thread_key: str) -> builtins.list[Record]:
        return await self._adrive(
            self._select(f"thread_key = %s AND {_ACTIVE}", (thread_key,)), False
        )

    async def claim(self, worker: str, lease_ms: int, run_id: str | None = None) -> Record | None:
        if run_id is None and not await self._adrive(self._any_claimable(), False):
            return None  # the idle poll of every process reads, and takes no write lock
        return await self._adrive(self._claim(worker, lease_ms, run_id), True)

    async def renew(self, run_id: str, worker: str, lease_ms: int) -> Control:
        return await self._adrive(self._renew(run_id, worker, lease_ms), True)

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
        core = self._finish(run_id, worker, status, result, error, keep_ms, updated_at, events)
        return await self._adrive(core, True)

    async def cancel(
        self, thread_key: str, run_ids: Sequence[str] | None, action: CancelAction, updated_at: str
    ) -> builtins.list[Record]:
        return await self._adrive(self._cancel(thread_key, run_ids, action, updated_at), True)

    async def delete(self, thread_key: str, run_id: str) -> bool:
        return await self._adrive(self._delete(thread_key, run_id), True)

    async def delete_thread(self, thread_key: str) -> int:
        return await self._adrive(self._delete_thread(thread_key), True)

    async def add_events(self, run_id: str, events: Sequence[Event]) -> None:
        if events:
            await self._adrive(self._add_events(run_id, events), True)

    async def events(self, run_id: str, after: int, limit: int = 1000) -> builtins.list[Event]:
        rows = await self._adrive(
            self._rows(
                f"SELECT id, event, data FROM {_EVENTS} WHERE run_id = %s AND id > %s "
                "ORDER BY id LIMIT %s",
                (run_id, after, limit),
            ),
            False,
        )
        return [Event(int(i), event, data) for i, event, data in rows]

    async def last_event_id(self, run_id: str) -> int:
        rows = await self._adrive(
            self._rows(f"SELECT max(id) FROM {_EVENTS} WHERE run_id = %s", (run_id,)), False
        )
        return int(rows[0][0] or 0)

    async def sweep(self) -> int:
        return await self._adrive(self._sweep(), True)
