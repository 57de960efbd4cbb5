"""The session database on SQL: Postgres (shared by many hosts) and SQLite (one host).

One set of statements serves both; each operation runs in one transaction. Postgres
locks what a transition depends on (the owner's counter row `FOR UPDATE`, an advisory
lock per owner for the rate limit, the lease row `FOR SHARE` under a fenced write);
SQLite takes the database's write lock up front (`BEGIN IMMEDIATE`), which serialises
writers of every process on the host.

The async SQLite path uses the connection directly on the event loop: each operation is
a few local statements, cheaper than a hop to a worker thread, and a database locked by
another process is waited for with `asyncio.sleep`, never by blocking the loop.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from agent.namespaces import Owner
from memory.errors import UnavailableError
from memory.stores import schema
from memory.stores.outages import Breaker
from memory.stores.schema import SchemaChange
from memory.stores.sessiondb import (
    Claim,
    LeaseLostError,
    Outcome,
    RateLimit,
    Record,
    SessionDB,
    Steps,
    dumps,
    page_bounds,
    role_counts,
    with_counts,
)

#: The tables of schema version 1, applied in order; the index is the statement's number in
#: `memory_agent_migrations`. Never edit an entry: a later layout change is an upgrade in
#: `memory.stores.schema`, which raises the schema version.
MIGRATIONS = (
    """CREATE TABLE IF NOT EXISTS memory_agent_sessions (
        tenant TEXT NOT NULL,
        user_id TEXT NOT NULL,
        thread_id TEXT NOT NULL,
        status TEXT NOT NULL,
        last_active_at TEXT NOT NULL,
        record TEXT NOT NULL,
        PRIMARY KEY (tenant, user_id, thread_id))""",
    """CREATE INDEX IF NOT EXISTS memory_agent_sessions_recent
        ON memory_agent_sessions (tenant, user_id, last_active_at, thread_id)""",
    """CREATE INDEX IF NOT EXISTS memory_agent_sessions_idle
        ON memory_agent_sessions (status, last_active_at)""",
    """CREATE TABLE IF NOT EXISTS memory_agent_users (
        tenant TEXT NOT NULL,
        user_id TEXT NOT NULL,
        open_sessions INTEGER NOT NULL,
        PRIMARY KEY (tenant, user_id))""",
    """CREATE TABLE IF NOT EXISTS memory_agent_leases (
        key TEXT PRIMARY KEY,
        token TEXT NOT NULL,
        expires_at BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS memory_agent_rate_events (
        owner TEXT NOT NULL,
        at BIGINT NOT NULL)""",
    """CREATE INDEX IF NOT EXISTS memory_agent_rate_events_owner
        ON memory_agent_rate_events (owner, at)""",
    """CREATE TABLE IF NOT EXISTS memory_agent_transcript (
        thread_key TEXT NOT NULL,
        seq INTEGER NOT NULL,
        record TEXT NOT NULL,
        PRIMARY KEY (thread_key, seq))""",
    # A thread's transcript records by role (JSON), changed with each write of the
    # transcript; NULL until the first write since this table exists.
    """CREATE TABLE IF NOT EXISTS memory_agent_transcript_counts (
        thread_key TEXT PRIMARY KEY,
        counts TEXT)""",
    # LangGraph runs (`memory.stores.rundb_sql`): the record as JSON beside the columns
    # the queue reads. `seq` orders a thread's runs (the creation time in microseconds,
    # made unique per thread), `run_at` is when a pending run may start, `lease_until`
    # when a running run's holder lapses, `keep_until` when a finished run's events go.
    """CREATE TABLE IF NOT EXISTS memory_agent_runs (
        run_id TEXT PRIMARY KEY,
        thread_key TEXT NOT NULL,
        seq BIGINT NOT NULL,
        status TEXT NOT NULL,
        run_at BIGINT NOT NULL,
        lease_until BIGINT,
        worker TEXT,
        cancel TEXT,
        keep_until BIGINT,
        record TEXT NOT NULL)""",
    """CREATE INDEX IF NOT EXISTS memory_agent_runs_thread
        ON memory_agent_runs (thread_key, seq)""",
    """CREATE INDEX IF NOT EXISTS memory_agent_runs_queue
        ON memory_agent_runs (status, seq)""",
    """CREATE INDEX IF NOT EXISTS memory_agent_runs_keep
        ON memory_agent_runs (keep_until) WHERE keep_until IS NOT NULL""",
    """CREATE TABLE IF NOT EXISTS memory_agent_run_events (
        run_id TEXT NOT NULL,
        id BIGINT NOT NULL,
        event TEXT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (run_id, id))""",
)

_SESSION = "tenant = %s AND user_id = %s AND thread_id = %s"
_ACQUIRE = (
    "INSERT INTO memory_agent_leases (key, token, expires_at) VALUES (%s, %s, %s) "
    "ON CONFLICT (key) DO UPDATE SET token = excluded.token, expires_at = excluded.expires_at "
    "WHERE memory_agent_leases.expires_at <= %s OR memory_agent_leases.token = excluded.token "
    "RETURNING token"
)
_RELEASE = "DELETE FROM memory_agent_leases WHERE key = %s AND token = %s"
_GET = f"SELECT record FROM memory_agent_sessions WHERE {_SESSION}"
#: A session record with its transcript's counts; the first parameter is the thread key.
_GET_COUNTED = (
    "SELECT s.record, c.counts FROM memory_agent_sessions s "
    "LEFT JOIN memory_agent_transcript_counts c ON c.thread_key = %s "
    "WHERE s.tenant = %s AND s.user_id = %s AND s.thread_id = %s"
)


@dataclass(frozen=True)
class Sql:
    """One statement; `fetch` answers its rows as tuples, otherwise its row count."""

    text: str
    params: tuple[Any, ...] = ()
    fetch: bool = False


class SqlSessionDB(SessionDB):
    """The statements and cores shared by both SQL dialects."""

    shared = True
    #: SQL for the database's clock in epoch milliseconds.
    now_sql = ""
    #: Appended to a `SELECT` that must lock what it read until commit.
    for_update = ""
    for_share = ""
    #: Appended to a `SELECT` that only keeps the rows it read from being deleted.
    for_key_share = ""

    def _owner_lock(self, owner: Owner) -> Steps:
        """Serialise the owner's rate-limit bookkeeping (SQLite's write lock already does)."""
        return None
        yield

    def _xact_lock(self, name: str, wait: bool = True) -> Steps:
        """Take a lock named `name` until commit; False if `wait` is False and another
        transaction holds it (SQLite's write lock already serialises every writer)."""
        return True
        yield

    def _now(self) -> Steps:
        rows = yield Sql(f"SELECT {self.now_sql}", fetch=True)
        return int(rows[0][0])

    def _held(self, key: str, token: str) -> Steps:
        rows = yield Sql(
            "SELECT 1 FROM memory_agent_leases WHERE key = %s AND token = %s" + self.for_share,
            (key, token),
            fetch=True,
        )
        return bool(rows)

    def _counter(self, owner: Owner, delta: int) -> Steps:
        yield Sql(
            "UPDATE memory_agent_users SET open_sessions = open_sessions + %s "
            "WHERE tenant = %s AND user_id = %s",
            (delta, owner.tenant, owner.user),
        )

    def _create(self, owner: Owner, record: Record, cap: int) -> Steps:
        yield Sql(
            "INSERT INTO memory_agent_users (tenant, user_id, open_sessions) VALUES (%s, %s, 0) "
            "ON CONFLICT (tenant, user_id) DO NOTHING",
            (owner.tenant, owner.user),
        )
        rows = yield Sql(
            "SELECT open_sessions FROM memory_agent_users WHERE tenant = %s AND user_id = %s"
            + self.for_update,
            (owner.tenant, owner.user),
            fetch=True,
        )
        thread_id = record["thread_id"]
        if (yield Sql(_GET, (owner.tenant, owner.user, thread_id), fetch=True)):
            return "exists"
        active = record.get("status", "active") == "active"
        if active and rows[0][0] >= cap:
            return "full"
        yield Sql(
            "INSERT INTO memory_agent_sessions "
            "(tenant, user_id, thread_id, status, last_active_at, record) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            (
                owner.tenant,
                owner.user,
                thread_id,
                record.get("status", "active"),
                record["last_active_at"],
                dumps(record),
            ),
        )
        if active:
            yield from self._counter(owner, 1)
        return "created"

    def _get(self, owner: Owner, thread_id: str) -> Steps:
        rows = yield Sql(
            _GET_COUNTED,
            (owner.thread_key(thread_id), owner.tenant, owner.user, thread_id),
            fetch=True,
        )
        return _counted(rows[0]) if rows else None

    def _list(self, owner: Owner, limit: int, offset: int, status: str | None) -> Steps:
        where = "tenant = %s AND user_id = %s" + (" AND status = %s" if status else "")
        params: tuple[Any, ...] = (owner.tenant, owner.user, *((status,) if status else ()))
        rows = yield Sql(
            "SELECT s.record, c.counts FROM memory_agent_sessions s "
            "LEFT JOIN memory_agent_transcript_counts c "
            "ON c.thread_key = CAST(%s AS TEXT) || s.thread_id "
            f"WHERE {where} "
            "ORDER BY s.last_active_at DESC, s.thread_id DESC LIMIT %s OFFSET %s",
            (owner.thread_key(""), *params, limit, offset),
            fetch=True,
        )
        total = yield Sql(f"SELECT count(*) FROM memory_agent_sessions WHERE {where}", params, True)
        return [_counted(r) for r in rows], int(total[0][0])

    def _begin(
        self,
        owner: Owner,
        thread_id: str,
        token: str,
        lease_ms: int,
        rate: RateLimit | None,
        new: Record | None,
        cap: int,
    ) -> Steps:
        key = owner.thread_key(thread_id)
        now = yield from self._now()
        if not (yield Sql(_ACQUIRE, (key, token, now + lease_ms, now), fetch=True)):
            return Claim("busy")
        if rate is not None:
            yield from self._owner_lock(owner)
            who = owner.key
            yield Sql(
                "DELETE FROM memory_agent_rate_events WHERE owner = %s AND at <= %s",
                (who, now - rate.window_ms),
            )
            rows = yield Sql(
                "SELECT count(*), min(at) FROM memory_agent_rate_events WHERE owner = %s",
                (who,),
                fetch=True,
            )
            if rows[0][0] >= rate.limit:
                yield Sql(_RELEASE, (key, token))
                return Claim("limited", retry_after=(rows[0][1] + rate.window_ms - now) / 1000)
            yield Sql(
                "INSERT INTO memory_agent_rate_events (owner, at) VALUES (%s, %s)", (who, now)
            )
        record = yield from self._get(owner, thread_id)
        outcome: Outcome = "ok"
        if record is None:
            created = (yield from self._create(owner, new, cap)) if new is not None else None
            if created != "created":
                yield Sql(_RELEASE, (key, token))
                return Claim("full" if created == "full" else "missing")
            record, outcome = new, "created"
        return Claim(outcome, record)

    def _save(self, owner: Owner, record: Record, token: str | None, release: bool) -> Steps:
        key = owner.thread_key(record["thread_id"])
        if token is not None and not (yield from self._held(key, token)):
            return False
        if release and token is not None:
            yield Sql(_RELEASE, (key, token))
        count = yield Sql(
            f"UPDATE memory_agent_sessions SET record = %s, last_active_at = %s "
            f"WHERE {_SESSION} AND status = %s",
            (
                dumps(record),
                record["last_active_at"],
                owner.tenant,
                owner.user,
                record["thread_id"],
                record["status"],
            ),
        )
        return count == 1

    def _set_status(self, owner: Owner, record: Record, expect: str) -> Steps:
        count = yield Sql(
            f"UPDATE memory_agent_sessions SET record = %s, status = %s, last_active_at = %s "
            f"WHERE {_SESSION} AND status = %s",
            (
                dumps(record),
                record["status"],
                record["last_active_at"],
                owner.tenant,
                owner.user,
                record["thread_id"],
                expect,
            ),
        )
        if count != 1:
            return False
        was, now = expect == "active", record["status"] == "active"
        if was != now:
            yield from self._counter(owner, 1 if now else -1)
        return True

    def _remove(self, owner: Owner, thread_id: str) -> Steps:
        rows = yield Sql(
            f"DELETE FROM memory_agent_sessions WHERE {_SESSION} RETURNING status, record",
            (owner.tenant, owner.user, thread_id),
            fetch=True,
        )
        for table in ("memory_agent_transcript", "memory_agent_transcript_counts"):
            yield Sql(f"DELETE FROM {table} WHERE thread_key = %s", (owner.thread_key(thread_id),))
        if not rows:
            return None
        if rows[0][0] == "active":
            yield from self._counter(owner, -1)
        return json.loads(rows[0][1])

    def _idle(self, before: str, limit: int) -> Steps:
        rows = yield Sql(
            "SELECT record FROM memory_agent_sessions WHERE status = 'active' "
            "AND last_active_at < %s ORDER BY last_active_at LIMIT %s",
            (before, limit),
            fetch=True,
        )
        return [json.loads(r[0]) for r in rows]

    def _acquire(self, key: str, token: str, lease_ms: int) -> Steps:
        now = yield from self._now()
        return bool((yield Sql(_ACQUIRE, (key, token, now + lease_ms, now), fetch=True)))

    def _renew(self, key: str, token: str, lease_ms: int) -> Steps:
        now = yield from self._now()
        count = yield Sql(
            "UPDATE memory_agent_leases SET expires_at = %s WHERE key = %s AND token = %s",
            (now + lease_ms, key, token),
        )
        return count == 1

    def _release(self, key: str, token: str) -> Steps:
        yield Sql(_RELEASE, (key, token))

    def _leased(self, key: str) -> Steps:
        rows = yield Sql(
            f"SELECT 1 FROM memory_agent_leases WHERE key = %s AND expires_at > {self.now_sql}",
            (key,),
            fetch=True,
        )
        return bool(rows)

    def _append(
        self, thread_key: str, start: int, records: Sequence[Record], token: str | None
    ) -> Steps:
        if token is not None and not (yield from self._held(thread_key, token)):
            raise LeaseLostError(f"the run no longer holds thread {thread_key!r}")
        if not records:
            return None
        counts = yield from self._cut(thread_key, start)
        values = ", ".join(["(%s, %s, %s)"] * len(records))
        params: list[Any] = []
        for i, record in enumerate(records):
            params += [thread_key, start + i, dumps(record)]
        yield Sql(
            f"INSERT INTO memory_agent_transcript (thread_key, seq, record) VALUES {values}",
            tuple(params),
        )
        yield from self._set_counts(thread_key, counts + role_counts(records))
        return None

    def _cut(self, thread_key: str, start: int) -> Steps:
        """Delete the records from `start` on; the counts of those left (the counts row
        is locked until commit, so writes of one thread's counts never interleave)."""
        yield Sql(
            "INSERT INTO memory_agent_transcript_counts (thread_key, counts) VALUES (%s, NULL) "
            "ON CONFLICT (thread_key) DO NOTHING",
            (thread_key,),
        )
        rows = yield Sql(
            "SELECT counts FROM memory_agent_transcript_counts WHERE thread_key = %s"
            + self.for_update,
            (thread_key,),
            fetch=True,
        )
        # NULL: the thread's first write since counts are kept: count what stays.
        stored = rows[0][0]
        cut_from = start if stored is not None else 0
        rows = yield Sql(
            "SELECT seq, record FROM memory_agent_transcript WHERE thread_key = %s AND seq >= %s",
            (thread_key, cut_from),
            fetch=True,
        )
        kept = role_counts([json.loads(record) for seq, record in rows if seq < start])
        gone = role_counts([json.loads(record) for seq, record in rows if seq >= start])
        counts = Counter(json.loads(stored)) - gone if stored is not None else kept
        if gone:
            yield Sql(
                "DELETE FROM memory_agent_transcript WHERE thread_key = %s AND seq >= %s",
                (thread_key, start),
            )
        return counts

    def _set_counts(self, thread_key: str, counts: Counter[str]) -> Steps:
        yield Sql(
            "UPDATE memory_agent_transcript_counts SET counts = %s WHERE thread_key = %s",
            (dumps(dict(sorted(counts.items()))), thread_key),
        )

    def _page(self, thread_key: str, offset: int, limit: int) -> Steps:
        rows = yield Sql(
            "SELECT max(seq) FROM memory_agent_transcript WHERE thread_key = %s",
            (thread_key,),
            fetch=True,
        )
        total = 0 if rows[0][0] is None else int(rows[0][0]) + 1
        start, stop = page_bounds(offset, limit, total)
        if stop <= start:
            return [], total
        rows = yield Sql(
            "SELECT record FROM memory_agent_transcript "
            "WHERE thread_key = %s AND seq >= %s AND seq < %s ORDER BY seq",
            (thread_key, start, stop),
            fetch=True,
        )
        return [json.loads(r[0]) for r in rows], total

    def _truncate(self, thread_key: str, start: int) -> Steps:
        counts = yield from self._cut(thread_key, start)
        yield from self._set_counts(thread_key, counts)


def _counted(row: Sequence[Any]) -> Record:
    """A session record with the counts of its transcript, from `(record, counts)`."""
    return with_counts(json.loads(row[0]), json.loads(row[1]) if row[1] is not None else None)


# --------------------------------------------------------------------------- postgres


class PostgresSessionDB(SqlSessionDB):
    """The session database in Postgres, on a psycopg pool (sync or async)."""

    kind = "postgres"
    now_sql = "(extract(epoch from clock_timestamp()) * 1000)::bigint"
    for_update = " FOR UPDATE"
    for_share = " FOR SHARE"
    for_key_share = " FOR KEY SHARE"

    def __init__(self, pool: Any, breaker: Breaker | None = None) -> None:
        from memory.stores.rundb_sql import SqlRunDB

        self.pool = pool
        self.breaker = breaker
        self.runs = SqlRunDB(self)

    def _owner_lock(self, owner: Owner) -> Steps:
        yield Sql(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
            (f"memory-agent-rate:{owner.key}",),
            fetch=True,
        )

    def _xact_lock(self, name: str, wait: bool = True) -> Steps:
        function = "pg_advisory_xact_lock" if wait else "pg_try_advisory_xact_lock"
        rows = yield Sql(f"SELECT {function}(hashtextextended(%s, 0))", (name,), fetch=True)
        return wait or bool(rows[0][0])

    def setup(self) -> SchemaChange:
        """Create or upgrade the tables in one transaction (run under the caller's setup
        lock, which serialises the processes that open the database).

        Raises:
            SchemaVersionError: The database's schema version is newer than this release's.
        """
        return self._drive(_migrations(), True)  # type: ignore[no-any-return]

    async def asetup(self) -> SchemaChange:
        """Async `setup`."""
        return await self._adrive(_migrations(), True)  # type: ignore[no-any-return]

    def _drive(self, steps: Steps, write: bool) -> Any:
        from psycopg.rows import tuple_row

        with (
            self.pool.connection() as conn,
            conn.transaction() if write else nullcontext(),
            conn.cursor(row_factory=tuple_row) as cur,
        ):
            reply: Any = None
            while True:
                try:
                    request = steps.send(reply)
                except StopIteration as done:
                    return done.value
                cur.execute(request.text, request.params)
                reply = cur.fetchall() if request.fetch else cur.rowcount

    async def _adrive(self, steps: Steps, write: bool) -> Any:
        from psycopg.rows import tuple_row

        async with (
            self.pool.connection() as conn,
            conn.transaction() if write else nullcontext(),
            conn.cursor(row_factory=tuple_row) as cur,
        ):
            reply: Any = None
            while True:
                try:
                    request = steps.send(reply)
                except StopIteration as done:
                    return done.value
                await cur.execute(request.text, request.params)
                reply = await cur.fetchall() if request.fetch else cur.rowcount


_VERSIONS_DDL = "CREATE TABLE IF NOT EXISTS memory_agent_migrations (v INTEGER PRIMARY KEY)"


#: The database's schema version (`memory.stores.schema`): one row.
_SCHEMA_DDL = (
    "CREATE TABLE IF NOT EXISTS memory_agent_schema "
    "(name TEXT PRIMARY KEY, version INTEGER NOT NULL)"
)
_SCHEMA_NAME = "memory-agent"


def _migrations() -> Steps:
    """Check the schema version, create the tables, run the pending upgrades and record
    the version, all in the caller's one transaction."""
    yield Sql(_SCHEMA_DDL)
    rows = yield Sql(
        "SELECT version FROM memory_agent_schema WHERE name = %s", (_SCHEMA_NAME,), True
    )
    found = rows[0][0] if rows else None
    upgrades = schema.pending(found)  # a newer database is refused before anything changes
    yield Sql(_VERSIONS_DDL)
    rows = yield Sql("SELECT v FROM memory_agent_migrations", fetch=True)
    have = {r[0] for r in rows}
    for version, statement in enumerate(MIGRATIONS):
        if version not in have:
            yield Sql(statement)
            yield Sql("INSERT INTO memory_agent_migrations (v) VALUES (%s)", (version,))
    for upgrade in upgrades:
        for statement in upgrade.sql:
            yield Sql(statement)
    if found != schema.SCHEMA_VERSION:
        yield Sql(
            "INSERT INTO memory_agent_schema (name, version) VALUES (%s, %s) "
            "ON CONFLICT (name) DO UPDATE SET version = excluded.version",
            (_SCHEMA_NAME, schema.SCHEMA_VERSION),
        )
    return schema.SchemaChange(found or 0, schema.SCHEMA_VERSION, fresh=not have)


# --------------------------------------------------------------------------- sqlite


class SessionDBBusyError(UnavailableError):
    """Another process kept the SQLite database locked for longer than the timeout."""


class SqliteSessionDB(SqlSessionDB):
    """The session database in a SQLite file, shared by the processes of one host.

    Args:
        conn: A connection in autocommit mode (`isolation_level=None`); this object owns
            its transactions.
        busy_timeout: Seconds to wait for another process's write lock.
    """

    kind = "sqlite"
    now_sql = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"

    def __init__(self, conn: Any, busy_timeout: float = 10.0) -> None:
        from memory.stores.rundb_sql import SqlRunDB

        self.conn = conn
        self.busy_timeout = busy_timeout
        self._lock = threading.Lock()
        conn.execute("PRAGMA busy_timeout=0")
        self.runs = SqlRunDB(self)

    def setup(self) -> SchemaChange:
        """Create or upgrade the tables in one transaction under the database's write lock.

        Raises:
            SchemaVersionError: The database's schema version is newer than this release's.
        """
        return self._drive(_migrations(), True)  # type: ignore[no-any-return]

    def _begin_tx(self, write: bool) -> bool:
        """Start a transaction under the connection's lock; False if another process
        holds the write lock (the caller retries)."""
        try:
            self.conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        except Exception as exc:
            if _locked(exc):
                return False
            raise
        return True

    def _run(self, steps: Steps) -> Any:
        conn = self.conn
        try:
            reply: Any = None
            while True:
                try:
                    request = steps.send(reply)
                except StopIteration as done:
                    conn.execute("COMMIT")
                    return done.value
                cur = conn.execute(_qmark(request.text), request.params)
                reply = cur.fetchall() if request.fetch else cur.rowcount
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _drive(self, steps: Steps, write: bool) -> Any:
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.001
        while True:
            with self._lock:
                if self._begin_tx(write):
                    return self._run(steps)
            if time.monotonic() > deadline:
                raise _busy(self.busy_timeout)
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    async def _adrive(self, steps: Steps, write: bool) -> Any:
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.0005
        while True:
            if self._lock.acquire(blocking=False):
                try:
                    if self._begin_tx(write):
                        return self._run(steps)
                finally:
                    self._lock.release()
            if time.monotonic() > deadline:
                raise _busy(self.busy_timeout)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)


def _qmark(sql: str) -> str:
    return sql.replace("%s", "?")


def _locked(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "database is locked" in text or "database is busy" in text


def _busy(timeout: float) -> SessionDBBusyError:
    return SessionDBBusyError(
        f"the SQLite database stayed locked by another process for over {timeout:g}s; retry shortly"
    )
