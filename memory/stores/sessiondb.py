"""The session database: session records, run leases, rate limits and transcripts.

Everything a session service needs to keep its guarantees when several processes (or
hosts) share one database lives here, and every operation is atomic in that database:

- `create` inserts a session if it is absent and the owner is under the cap of open
  sessions, which is a count kept with the registry (never a scan);
- `begin` claims a thread for a run: a lease with a token and an expiry (a holder that
  dies frees the thread once the lease runs out), the owner's rate limit counted in the
  database, and the session record read or created, in one call;
- `set_status` is a compare-and-set on the session's status (ending and expiring);
- `append` writes transcript records fenced by the run's lease: a run that lost its
  lease (it stalled past the expiry and another run claimed the thread) cannot write,
  so no run ever overwrites another run's records. The records replace whatever the
  transcript held from their position on (what a killed run wrote past the state it
  left), and the thread's counts by role change in the same atomic step, so the counts
  a session record is read with (`counts`, `message_count`) are the transcript's own.

Each backend implements the operations as generator cores that yield the requests of
that backend (SQL statements, Redis scripts; nothing in memory); the base class drives
them with the sync or the async client, so every method has an `a`-prefixed twin.
"""

from __future__ import annotations

import builtins
import json
import threading
import time
from collections import Counter, deque
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from agent.namespaces import Owner
from memory.errors import ConflictError
from memory.stores.outages import Breaker
from memory.stores.rundb import MemoryRunDB, RunDB
from memory.stores.schema import SCHEMA_VERSION, SchemaChange

Record = dict[str, Any]
Steps = Generator[Any, Any, Any]
Outcome = Literal["ok", "created", "busy", "limited", "missing", "full"]


class LeaseLostError(ConflictError):
    """A write fenced by a lease found the lease gone or held by another run."""


@dataclass(frozen=True)
class Claim:
    """What `begin` found.

    Attributes:
        outcome: `ok` (claimed, record read), `created` (claimed, record inserted), `busy`
            (another run holds the thread), `limited` (rate limit reached), `missing` (no
            such session and none to create), `full` (the cap of open sessions).
        record: The session record when claimed.
        retry_after: Seconds until the rate limit admits another run (`limited`).
    """

    outcome: Outcome
    record: Record | None = None
    retry_after: float = 0.0

    @property
    def claimed(self) -> bool:
        """Whether the caller now holds the thread's lease."""
        return self.outcome in ("ok", "created")


@dataclass(frozen=True)
class RateLimit:
    """At most `limit` runs per owner in any rolling `window_ms` milliseconds."""

    limit: int
    window_ms: int


def role_counts(records: Sequence[Record | None]) -> Counter[str]:
    """Transcript records by role."""
    return Counter(str(r.get("role", "unknown")) for r in records if r is not None)


def with_counts(record: Record, counts: dict[str, int] | None) -> Record:
    """`record` with the counts of its transcript (`None`: none kept for it, as for a
    thread written before counts were kept beside transcripts: the record's own stay)."""
    if counts is not None:
        record["counts"] = {role: n for role, n in sorted(counts.items()) if n > 0}
        record["message_count"] = sum(record["counts"].values())
    return record


def dumps(value: Any) -> str:
    """Compact JSON, as every backend stores records."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def iso_ms(iso: str) -> int:
    """Milliseconds since the epoch of an ISO timestamp (sort keys of the registry)."""
    from datetime import datetime

    return int(datetime.fromisoformat(iso).timestamp() * 1000)


class SessionDB:
    """Session records, leases, rate limits and transcripts; see the module docstring.

    Subclasses implement the `_`-prefixed generator cores and `_perform`/`_aperform`
    (and may wrap a whole core in a transaction by overriding `_drive`/`_adrive`).
    """

    #: Backend kind: memory, sqlite, postgres or redis.
    kind = "memory"
    #: Whether other processes can share this database's guarantees.
    shared = False
    #: The LangGraph runs kept beside the sessions, on the same database.
    runs: RunDB
    #: The database's breaker (Postgres, Redis), which bounds the session service's async
    #: calls and shares the outage state of every pool and client on that database.
    breaker: Breaker | None = None

    def setup(self) -> SchemaChange:
        """Create or upgrade what the database keeps (`memory.stores.schema`); nothing in
        memory, which starts new with each process."""
        return SchemaChange(SCHEMA_VERSION, SCHEMA_VERSION, fresh=True)

    async def asetup(self) -> SchemaChange:
        """Async `setup`."""
        return self.setup()

    # -- drivers -------------------------------------------------------------------

    def _drive(self, steps: Steps, write: bool) -> Any:
        reply: Any = None
        while True:
            try:
                request = steps.send(reply)
            except StopIteration as done:
                return done.value
            reply = self._perform(request)

    async def _adrive(self, steps: Steps, write: bool) -> Any:
        reply: Any = None
        while True:
            try:
                request = steps.send(reply)
            except StopIteration as done:
                return done.value
            reply = await self._aperform(request)

    def _perform(self, request: Any) -> Any:
        raise NotImplementedError

    async def _aperform(self, request: Any) -> Any:
        raise NotImplementedError

    # -- cores (one per operation) -------------------------------------------------

    def _create(self, owner: Owner, record: Record, cap: int) -> Steps:
        raise NotImplementedError

    def _get(self, owner: Owner, thread_id: str) -> Steps:
        raise NotImplementedError

    def _list(self, owner: Owner, limit: int, offset: int, status: str | None) -> Steps:
        raise NotImplementedError

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
        raise NotImplementedError

    def _save(self, owner: Owner, record: Record, token: str | None, release: bool) -> Steps:
        raise NotImplementedError

    def _set_status(self, owner: Owner, record: Record, expect: str) -> Steps:
        raise NotImplementedError

    def _remove(self, owner: Owner, thread_id: str) -> Steps:
        raise NotImplementedError

    def _idle(self, before: str, limit: int) -> Steps:
        raise NotImplementedError

    def _acquire(self, key: str, token: str, lease_ms: int) -> Steps:
        raise NotImplementedError

    def _renew(self, key: str, token: str, lease_ms: int) -> Steps:
        raise NotImplementedError

    def _release(self, key: str, token: str) -> Steps:
        raise NotImplementedError

    def _leased(self, key: str) -> Steps:
        raise NotImplementedError

    def _append(
        self, thread_key: str, start: int, records: Sequence[Record], token: str | None
    ) -> Steps:
        raise NotImplementedError

    def _page(self, thread_key: str, offset: int, limit: int) -> Steps:
        raise NotImplementedError

    def _truncate(self, thread_key: str, start: int) -> Steps:
        raise NotImplementedError

    # -- sync API --------------------------------------------------------------------

    def create(
        self, owner: Owner, record: Record, cap: int
    ) -> Literal["created", "exists", "full"]:
        """Insert `record` unless the session exists or the owner has `cap` open ones."""
        return self._drive(self._create(owner, record, cap), True)

    def get(self, owner: Owner, thread_id: str) -> Record | None:
        """The session record, or None."""
        return self._drive(self._get(owner, thread_id), False)

    def list(
        self, owner: Owner, limit: int, offset: int, status: str | None = None
    ) -> tuple[builtins.list[Record], int]:
        """The owner's sessions, newest activity first, and their total."""
        return self._drive(self._list(owner, limit, offset, status), False)

    def begin(
        self,
        owner: Owner,
        thread_id: str,
        token: str,
        lease_ms: int,
        rate: RateLimit | None = None,
        new: Record | None = None,
        cap: int = 1 << 30,
    ) -> Claim:
        """Claim a thread for a run: lease, rate limit, then the record (created from `new`
        when absent and `new` is given, within `cap`). The lease is held only when
        `Claim.claimed`."""
        return self._drive(self._begin(owner, thread_id, token, lease_ms, rate, new, cap), True)

    def save(
        self, owner: Owner, record: Record, token: str | None = None, release: bool = False
    ) -> bool:
        """Rewrite an existing session record whose stored status is the record's own
        (statuses change through `set_status` only); with `token`, only while that lease
        is held, and with `release` the lease is freed in the same call."""
        return self._drive(self._save(owner, record, token, release), True)

    def set_status(self, owner: Owner, record: Record, expect: str = "active") -> bool:
        """Write `record` (with its new status) only if the stored status is `expect`."""
        return self._drive(self._set_status(owner, record, expect), True)

    def remove(self, owner: Owner, thread_id: str) -> Record | None:
        """Delete a session record and its transcript; the removed record or None."""
        return self._drive(self._remove(owner, thread_id), True)

    def idle(self, before: str, limit: int = 500) -> builtins.list[Record]:
        """Active sessions whose last activity is older than `before` (ISO), oldest first."""
        return self._drive(self._idle(before, limit), False)

    def acquire(self, key: str, token: str, lease_ms: int) -> bool:
        """Take the lease `key` unless another live token holds it."""
        return self._drive(self._acquire(key, token, lease_ms), True)

    def renew(self, key: str, token: str, lease_ms: int) -> bool:
        """Extend a lease this token holds; False if it was lost."""
        return self._drive(self._renew(key, token, lease_ms), True)

    def release(self, key: str, token: str) -> None:
        """Free a lease if this token still holds it."""
        self._drive(self._release(key, token), True)

    def leased(self, key: str) -> bool:
        """Whether some live token holds the lease `key`."""
        return self._drive(self._leased(key), False)

    def append(
        self, thread_key: str, start: int, records: Sequence[Record], token: str | None = None
    ) -> None:
        """Write transcript records at positions `start`, `start + 1`, ...

        Records already at those positions are rewritten (a resumed run re-records the
        same messages), and any after them are deleted: they were written by a run that
        died before its state recorded them, and the state goes on from `start`. The
        thread's counts by role follow in the same step. With `token` the write happens
        only while that lease is held.

        Raises:
            LeaseLostError: `token` no longer holds the thread's lease.
        """
        self._drive(self._append(thread_key, start, records, token), True)

    def page(self, thread_key: str, offset: int, limit: int) -> tuple[builtins.list[Record], int]:
        """Transcript records `offset` .. `offset + limit - 1` and the total; a negative
        `offset` counts from the end (`-2`: the last two)."""
        return self._drive(self._page(thread_key, offset, limit), False)

    def truncate(self, thread_key: str, start: int = 0) -> None:
        """Delete the transcript records from position `start` on (all by default)."""
        self._drive(self._truncate(thread_key, start), True)

    # -- async API -------------------------------------------------------------------

    async def acreate(
        self, owner: Owner, record: Record, cap: int
    ) -> Literal["created", "exists", "full"]:
        """Async `create`."""
        return await self._adrive(self._create(owner, record, cap), True)

    async def aget(self, owner: Owner, thread_id: str) -> Record | None:
        """Async `get`."""
        return await self._adrive(self._get(owner, thread_id), False)

    async def alist(
        self, owner: Owner, limit: int, offset: int, status: str | None = None
    ) -> tuple[builtins.list[Record], int]:
        """Async `list`."""
        return await self._adrive(self._list(owner, limit, offset, status), False)

    async def abegin(
        self,
        owner: Owner,
        thread_id: str,
        token: str,
        lease_ms: int,
        rate: RateLimit | None = None,
        new: Record | None = None,
        cap: int = 1 << 30,
    ) -> Claim:
        """Async `begin`."""
        return await self._adrive(
            self._begin(owner, thread_id, token, lease_ms, rate, new, cap), True
        )

    async def asave(
        self, owner: Owner, record: Record, token: str | None = None, release: bool = False
    ) -> bool:
        """Async `save`."""
        return await self._adrive(self._save(owner, record, token, release), True)

    async def aset_status(self, owner: Owner, record: Record, expect: str = "active") -> bool:
        """Async `set_status`."""
        return await self._adrive(self._set_status(owner, record, expect), True)

    async def aremove(self, owner: Owner, thread_id: str) -> Record | None:
        """Async `remove`."""
        return await self._adrive(self._remove(owner, thread_id), True)

    async def aidle(self, before: str, limit: int = 500) -> builtins.list[Record]:
        """Async `idle`."""
        return await self._adrive(self._idle(before, limit), False)

    async def aacquire(self, key: str, token: str, lease_ms: int) -> bool:
        """Async `acquire`."""
        return await self._adrive(self._acquire(key, token, lease_ms), True)

    async def arenew(self, key: str, token: str, lease_ms: int) -> bool:
        """Async `renew`."""
        return await self._adrive(self._renew(key, token, lease_ms), True)

    async def arelease(self, key: str, token: str) -> None:
        """Async `release`."""
        await self._adrive(self._release(key, token), True)

    async def aleased(self, key: str) -> bool:
        """Async `leased`."""
        return await self._adrive(self._leased(key), False)

    async def aappend(
        self, thread_key: str, start: int, records: Sequence[Record], token: str | None = None
    ) -> None:
        """Async `append`."""
        await self._adrive(self._append(thread_key, start, records, token), True)

    async def apage(
        self, thread_key: str, offset: int, limit: int
    ) -> tuple[builtins.list[Record], int]:
        """Async `page`."""
        return await self._adrive(self._page(thread_key, offset, limit), False)

    async def atruncate(self, thread_key: str, start: int = 0) -> None:
        """Async `truncate`."""
        await self._adrive(self._truncate(thread_key, start), True)


def page_bounds(offset: int, limit: int, total: int) -> tuple[int, int]:
    """The `[start, stop)` positions of a page; a negative offset counts from the end."""
    start = max(0, total + offset) if offset < 0 else offset
    return start, min(total, start + max(0, limit))


class MemorySessionDB(SessionDB):
    """The session database of one process: dictionaries under a lock.

    Leases, the cap and the rate limit hold between the threads and tasks of this
    process only; `memory://` deployments are single-process by design.
    """

    kind = "memory"
    shared = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[Owner, dict[str, Record]] = {}
        self._leases: dict[str, tuple[str, float]] = {}
        self._events: dict[Owner, deque[float]] = {}
        self._transcripts: dict[str, builtins.list[Record | None]] = {}
        #: Each transcript's counts by role, changed with it (never a scan on read).
        self._counts: dict[str, Counter[str]] = {}
        self.runs = MemoryRunDB()

    def _perform(self, request: Any) -> Any:
        raise AssertionError("the in-memory cores perform no I/O")

    async def _aperform(self, request: Any) -> Any:
        raise AssertionError("the in-memory cores perform no I/O")

    def _drive(self, steps: Steps, write: bool) -> Any:
        with self._lock:
            return super()._drive(steps, write)

    async def _adrive(self, steps: Steps, write: bool) -> Any:
        with self._lock:
            return super()._drive(steps, write)

    @staticmethod
    def _now_ms() -> float:
        return time.monotonic() * 1000

    def _open(self, owner: Owner) -> int:
        return sum(1 for r in self._sessions.get(owner, {}).values() if r["status"] == "active")

    def _create(self, owner: Owner, record: Record, cap: int) -> Steps:
        mine = self._sessions.setdefault(owner, {})
        if record["thread_id"] in mine:
            return "exists"
        if record.get("status", "active") == "active" and self._open(owner) >= cap:
            return "full"
        mine[record["thread_id"]] = json.loads(dumps(record))
        return "created"
        yield  # a generator core

    def _counted(self, owner: Owner, record: Record) -> Record:
        """A copy of `record` with its transcript's counts."""
        counts = self._counts.get(owner.thread_key(record["thread_id"]))
        copy = json.loads(dumps(record))
        return with_counts(copy, dict(counts) if counts is not None else None)

    def _get(self, owner: Owner, thread_id: str) -> Steps:
        found = self._sessions.get(owner, {}).get(thread_id)
        return self._counted(owner, found) if found is not None else None
        yield

    def _list(self, owner: Owner, limit: int, offset: int, status: str | None) -> Steps:
        records = [
            r for r in self._sessions.get(owner, {}).values() if status in (None, r["status"])
        ]
        records.sort(key=lambda r: (r["last_active_at"], r["thread_id"]), reverse=True)
        return [self._counted(owner, r) for r in records[offset : offset + limit]], len(records)
        yield

    def _lease_free(self, key: str, token: str, now: float) -> bool:
        held = self._leases.get(key)
        return held is None or held[1] <= now or held[0] == token

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
        now = self._now_ms()
        key = owner.thread_key(thread_id)
        if not self._lease_free(key, token, now):
            return Claim("busy")
        if rate is not None:
            events = self._events.setdefault(owner, deque())
            while events and events[0] <= now - rate.window_ms:
                events.popleft()
            if len(events) >= rate.limit:
                return Claim("limited", retry_after=(events[0] + rate.window_ms - now) / 1000)
            events.append(now)
        record = yield from self._get(owner, thread_id)
        outcome: Outcome = "ok"
        if record is None:
            if new is None:
                return Claim("missing")
            created = yield from self._create(owner, new, cap)
            if created == "full":
                return Claim("full")
            record, outcome = json.loads(dumps(new)), "created"
        self._leases[key] = (token, now + lease_ms)
        return Claim(outcome, record)

    def _save(self, owner: Owner, record: Record, token: str | None, release: bool) -> Steps:
        key = owner.thread_key(record["thread_id"])
        held = self._leases.get(key)
        if token is not None and (held is None or held[0] != token):
            return False
        if release and token is not None:
            self._leases.pop(key, None)
        mine = self._sessions.get(owner, {})
        current = mine.get(record["thread_id"])
        if current is None or current["status"] != record["status"]:
            return False
        mine[record["thread_id"]] = json.loads(dumps(record))
        return True
        yield

    def _set_status(self, owner: Owner, record: Record, expect: str) -> Steps:
        mine = self._sessions.get(owner, {})
        current = mine.get(record["thread_id"])
        if current is None or current["status"] != expect:
            return False
        mine[record["thread_id"]] = json.loads(dumps(record))
        return True
        yield

    def _remove(self, owner: Owner, thread_id: str) -> Steps:
        self._transcripts.pop(owner.thread_key(thread_id), None)
        self._counts.pop(owner.thread_key(thread_id), None)
        return self._sessions.get(owner, {}).pop(thread_id, None)
        yield

    def _idle(self, before: str, limit: int) -> Steps:
        found = [
            json.loads(dumps(r))
            for mine in self._sessions.values()
            for r in mine.values()
            if r["status"] == "active" and r["last_active_at"] < before
        ]
        found.sort(key=lambda r: r["last_active_at"])
        return found[:limit]
        yield

    def _acquire(self, key: str, token: str, lease_ms: int) -> Steps:
        now = self._now_ms()
        if not self._lease_free(key, token, now):
            return False
        self._leases[key] = (token, now + lease_ms)
        return True
        yield

    def _renew(self, key: str, token: str, lease_ms: int) -> Steps:
        held = self._leases.get(key)
        if held is None or held[0] != token:
            return False
        self._leases[key] = (token, self._now_ms() + lease_ms)
        return True
        yield

    def _release(self, key: str, token: str) -> Steps:
        held = self._leases.get(key)
        if held is not None and held[0] == token:
            del self._leases[key]
        return None
        yield

    def _leased(self, key: str) -> Steps:
        held = self._leases.get(key)
        return held is not None and held[1] > self._now_ms()
        yield

    def _append(
        self, thread_key: str, start: int, records: Sequence[Record], token: str | None
    ) -> Steps:
        if token is not None:
            held = self._leases.get(thread_key)
            if held is None or held[0] != token:
                raise LeaseLostError(f"the run no longer holds thread {thread_key!r}")
        if not records:
            return None
        log = self._transcripts.setdefault(thread_key, [])
        counts = self._counts.setdefault(thread_key, Counter())
        counts.subtract(role_counts(log[start:]))
        del log[start:]
        log.extend([None] * (start - len(log)))
        log.extend(json.loads(dumps(record)) for record in records)
        counts.update(role_counts(records))
        return None
        yield

    def _page(self, thread_key: str, offset: int, limit: int) -> Steps:
        log = self._transcripts.get(thread_key, [])
        start, stop = page_bounds(offset, limit, len(log))
        return [json.loads(dumps(r)) for r in log[start:stop] if r is not None], len(log)
        yield

    def _truncate(self, thread_key: str, start: int) -> Steps:
        log = self._transcripts.get(thread_key)
        if log is not None:
            self._counts.setdefault(thread_key, Counter()).subtract(role_counts(log[start:]))
            del log[start:]
        return None
        yield
