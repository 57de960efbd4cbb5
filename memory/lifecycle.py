"""Session lifecycle: idle expiry, the cap on open sessions, and erasing a user.

A session idle for longer than the timeout counts as ended: it is ended the way `end`
does (a long enough one leaves its summary in the user's long-term memory), its working
summary is kept in the record and its checkpoints are deleted; the transcript stays
readable until the thread is deleted. Expiry is applied whenever a session is read
through `refresh`/`arefresh` and by `sweep`/`asweep` for sessions nobody reads.

Like `SessionManager`, every method has a sync and an async twin over one shared core.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from langgraph.store.base import SearchOp

from memory.errors import ConflictError, NotFoundError
from memory.namespaces import InvalidIdError, Owner
from memory.sessions import SessionManager, _Batch, _DeleteThread, _Steps

_PAGE = 500


def _utcnow() -> datetime:
    return datetime.now(UTC)


class SessionLifecycle:
    """Idle expiry, open-session cap and user erasure over a `SessionManager`.

    Args:
        manager: The sessions API this acts through.
        idle_timeout: Inactivity after which a session counts as ended.
        max_open_sessions: Open sessions a user may have; creating more is a `ConflictError`.
        busy: Tells whether a run is in progress on a thread key; busy sessions never expire.
        clock: The current UTC time; tests pass their own to move time forward.
    """

    def __init__(
        self,
        manager: SessionManager,
        *,
        idle_timeout: timedelta = timedelta(hours=24),
        max_open_sessions: int = 100,
        busy: Callable[[str], bool] | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.manager = manager
        self.idle_timeout = idle_timeout
        self.max_open_sessions = max_open_sessions
        self.busy = busy or (lambda key: key in manager._active)
        self.clock = clock

    # -- cores ---------------------------------------------------------------------

    def is_idle(self, record: dict[str, Any]) -> bool:
        """Whether an active session has been idle for longer than the timeout."""
        if record.get("status") != "active":
            return False
        last = datetime.fromisoformat(record["last_active_at"])
        return self.clock() - last > self.idle_timeout

    def _refresh(self, owner: Owner, record: dict[str, Any]) -> _Steps:
        thread_id = record["thread_id"]
        key = owner.thread_key(thread_id)
        if not self.is_idle(record) or self.busy(key):
            return record
        summary = (yield from self.manager._state(owner, thread_id)).get("summary", "")
        record = yield from self.manager._end(owner, thread_id)
        yield _DeleteThread(key)
        record.update(
            end_reason="idle",
            checkpoints_expired=True,
            summary=summary or record.get("summary", ""),
            expired_at=self.clock().isoformat(),
        )
        return (yield from self.manager._save(owner, record))

    def _load(self, owner: Owner, thread_id: str) -> _Steps:
        record = yield from self.manager._load(owner, thread_id)
        return (yield from self._refresh(owner, record))

    def _all(self, owner: Owner) -> _Steps:
        records, _ = yield from self.manager._list(owner, 1 << 62, 0)
        out = []
        for record in records:
            out.append((yield from self._refresh(owner, record)))
        return out

    def _list(self, owner: Owner, limit: int, offset: int) -> _Steps:
        records = yield from self._all(owner)
        records.sort(key=lambda r: (r["last_active_at"], r["thread_id"]), reverse=True)
        return records[offset : offset + limit], len(records)

    def _check_capacity(self, owner: Owner) -> _Steps:
        records = yield from self._all(owner)
        open_count = sum(1 for r in records if r["status"] == "active")
        if open_count >= self.max_open_sessions:
            raise ConflictError(
                f"{open_count} open sessions is the limit; end one (POST /threads/{{id}}/end) "
                "or delete one before starting another"
            )

    def _create(
        self, owner: Owner, thread_id: str | None, metadata: dict[str, Any] | None
    ) -> _Steps:
        yield from self._check_capacity(owner)
        return (yield from self.manager._create(owner, thread_id, metadata))

    def _get_or_create(self, owner: Owner, thread_id: str | None) -> _Steps:
        if thread_id:
            try:
                return (yield from self._load(owner, thread_id)), False
            except NotFoundError:
                pass
        return (yield from self._create(owner, thread_id, None)), True

    def _erase(self, owner: Owner) -> _Steps:
        records, _ = yield from self.manager._list(owner, 1 << 62, 0)
        busy = [r["thread_id"] for r in records if self.busy(owner.thread_key(r["thread_id"]))]
        if busy:
            raise ConflictError(f"a run is active on thread {busy[0]!r}; retry when it ends")
        for record in records:
            yield from self.manager._delete(owner, record["thread_id"])
        memories = yield from self.manager._clear_memories(owner, None)
        return {"threads": len(records), "memories": memories}

    def _sweep(self) -> _Steps:
        expired = 0
        offset = 0
        while True:
            (page,) = yield _Batch([SearchOp(("sessions",), limit=_PAGE, offset=offset)])
            offset += len(page)
            for item in page:
                record = item.value
                if not self.is_idle(record):
                    continue
                try:
                    owner = Owner(tenant=record["tenant"], user=record["user"])
                    refreshed = yield from self._refresh(owner, record)
                except (InvalidIdError, KeyError, NotFoundError):
                    continue  # a record written by hand or deleted meanwhile: nothing to expire
                expired += refreshed.get("status") == "ended"
            if len(page) < _PAGE:
                return expired

    # -- sync ------------------------------------------------------------------------

    def get(self, owner: Owner, thread_id: str) -> dict[str, Any]:
        """The session record, expired first if it has been idle too long."""
        return self.manager._drive(self._load(owner, thread_id))

    def refresh(self, owner: Owner, record: dict[str, Any]) -> dict[str, Any]:
        """Expire a loaded session record if it has been idle too long."""
        return self.manager._drive(self._refresh(owner, record))

    def list(
        self, owner: Owner, limit: int = 20, offset: int = 0
    ) -> tuple[builtins.list[dict[str, Any]], int]:
        """The owner's sessions (idle ones expired), newest activity first, and their total."""
        return self.manager._drive(self._list(owner, limit, offset))

    def create(
        self, owner: Owner, thread_id: str | None = None, metadata: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Create a session within the owner's cap of open sessions."""
        return self.manager._drive(self._create(owner, thread_id, metadata))

    def get_or_create(
        self, owner: Owner, thread_id: str | None = None
    ) -> tuple[dict[str, Any], bool]:
        """Resume a session (expired first if idle) or create it within the cap."""
        return self.manager._drive(self._get_or_create(owner, thread_id))

    def erase(self, owner: Owner) -> dict[str, int]:
        """Delete every thread, transcript and memory of the owner; counts of what went."""
        return self.manager._drive(self._erase(owner))

    def sweep(self) -> int:
        """Expire every idle session of every user; returns how many."""
        return self.manager._drive(self._sweep())

    # -- async ----------------------------------------------------------------------

    async def aget(self, owner: Owner, thread_id: str) -> dict[str, Any]:
        """Async `get`."""
        return await self.manager._adrive(self._load(owner, thread_id))

    async def arefresh(self, owner: Owner, record: dict[str, Any]) -> dict[str, Any]:
        """Async `refresh`."""
        return await self.manager._adrive(self._refresh(owner, record))

    async def alist(
        self, owner: Owner, limit: int = 20, offset: int = 0
    ) -> tuple[builtins.list[dict[str, Any]], int]:
        """Async `list`."""
        return await self.manager._adrive(self._list(owner, limit, offset))

    async def acreate(
        self, owner: Owner, thread_id: str | None = None, metadata: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Async `create`."""
        return await self.manager._adrive(self._create(owner, thread_id, metadata))

    async def aget_or_create(
        self, owner: Owner, thread_id: str | None = None
    ) -> tuple[dict[str, Any], bool]:
        """Async `get_or_create`."""
        return await self.manager._adrive(self._get_or_create(owner, thread_id))

    async def aerase(self, owner: Owner) -> dict[str, int]:
        """Async `erase`."""
        return await self.manager._adrive(self._erase(owner))

    async def asweep(self) -> int:
        """Async `sweep`."""
        return await self.manager._adrive(self._sweep())
