"""The session service: every lifecycle transition of a session and the reads around it.

`SessionManager` owns who may run on a thread and when a session ends. It keeps its
guarantees when several processes share one database, because every transition is atomic
in the session database beside the store (`memory.stores.sessiondb`):

- create inserts a session only if it is absent and its owner is under the cap;
- a run claims its thread with a lease (renewed while the run lives; a holder killed
  mid-run frees the thread when the lease runs out), counts against the owner's rate
  limit in the database, and its transcript writes are fenced by the lease;
- end, expire, delete, erase, adding messages and editing the summary take the same
  lease, so none of them interleaves with a run; end and expire are a compare-and-set on
  the session's status;
- the idle sweeper runs in one process at a time (a lease of its own).

A plain turn costs the saver calls of the graph's own steps plus four calls besides: the
claim (lease, rate limit and record, in one), the memory search, the transcript append
and the record update that releases the lease. Nothing reads what the turn already holds.

Every method exists twice over one core: `get`/`aget`, `run`/`arun`, ... Each core is a
generator that yields the I/O it needs (`Request`); `SessionManager` performs it with the
sync or the async APIs. An exception raised by a request is thrown back into the core, so
its cleanup (releasing the lease) runs; the core then raises it to the caller.

The class is built in layers, one module each: `memory.session_steps` (what a core
yields, the run it carries, the conversation checks), `memory.session_base` (settings,
drivers, helpers and the session and memory cores), `memory.session_cores` (the run
cores), `memory.session_stream` (native and LangGraph streams) and, here, the public API.
"""

from __future__ import annotations

import builtins
from collections.abc import (
    AsyncGenerator,
    Iterator,
    Sequence,
)
from typing import Any

from agent.namespaces import Owner
from memory.session_steps import RunResult
from memory.session_stream import SessionStreaming


class SessionManager(SessionStreaming):
    """Sessions, runs, transcripts, summaries and memories over a compiled agent graph.

    Args:
        graph: The agent compiled with a checkpointer and a store.
        context: Defaults for each run's context (model, token budget); the owner is
            filled in per call.
        min_messages_for_summary: Messages a session needs before ending it saves its
            summary into the user's long-term memory.
        durability: When checkpoints are written: `async` (each step, in the background),
            `sync`, or `exit` (once per run: fastest; a crashed turn restarts).
        db: The session database; by default the one beside the graph's store.
        idle_timeout: Inactivity after which a session counts as ended (None: never).
        max_open_sessions: Open sessions an owner may have (None: no cap).
        runs_per_minute: Runs an owner may start per rolling minute (None: no limit).
        lease_seconds: How long a run's claim outlives a process that died holding it.
        backend_timeout: Seconds a database call of the service may take before it counts
            as an outage (`UnavailableError`); None waits as long as the driver does.
        clock: The current UTC time; tests pass their own to move time forward.
    """

    # -- public API: sync ----------------------------------------------------------

    def create(
        self, owner: Owner, thread_id: str | None = None, metadata: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Create a session (a random UUID id unless `thread_id` is given) within the cap."""
        return self._drive(self._create(owner, thread_id, metadata))

    def get(self, owner: Owner, thread_id: str) -> dict[str, Any]:
        """The session record (expired first if idle); `NotFoundError` if absent or
        someone else's."""
        return self._drive(self._load(owner, thread_id))

    def get_or_create(
        self, owner: Owner, thread_id: str | None = None, metadata: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], bool]:
        """Resume a session or create it (with `metadata`): `(record, created)`."""
        return self._drive(self._get_or_create(owner, thread_id, metadata))

    def list(
        self, owner: Owner, limit: int = 20, offset: int = 0, status: str | None = None
    ) -> tuple[builtins.list[dict[str, Any]], int]:
        """The owner's sessions (optionally only `active` or `ended` ones), newest activity
        first, and their total."""
        return self._drive(self._list(owner, limit, offset, status))

    def detail(self, owner: Owner, thread_id: str) -> tuple[dict[str, Any], str, bool]:
        """The session record, its running summary and whether a run holds it."""
        return self._drive(self._detail(owner, thread_id))

    def end(self, owner: Owner, thread_id: str) -> dict[str, Any]:
        """End a session; long enough ones leave their summary in long-term memory.

        Raises:
            ConflictError: a run is active on the thread.
        """
        return self._drive(self._end(owner, thread_id))

    def delete(self, owner: Owner, thread_id: str) -> dict[str, Any]:
        """Delete a session's checkpoints, transcript, session memories and record.

        Raises:
            ConflictError: a run is active on the thread.
        """
        return self._drive(self._delete(owner, thread_id))

    def copy(
        self, owner: Owner, thread_id: str, new_thread_id: str | None = None
    ) -> dict[str, Any]:
        """Copy a session to a new thread of the owner (`new_thread_id`, or a new id): its
        metadata and counts, whole transcript, checkpoints (state history and time travel
        as far back as the source's) and session memories. Answers the new record.

        Raises:
            NotFoundError: no such session of the owner.
            ConflictError: a run is active on it, or `new_thread_id` exists.
        """
        return self._drive(self._copy_thread(owner, thread_id, new_thread_id))

    def keep_latest(self, owner: Owner, thread_id: str) -> dict[str, Any]:
        """Delete all but the latest checkpoint of a session (its state history then
        starts there); the transcript, memories and record stay.

        Raises:
            ConflictError: a run is active on the thread.
        """
        return self._drive(self._keep_latest(owner, thread_id))

    def erase(self, owner: Owner) -> dict[str, int]:
        """Delete every thread, transcript and memory of the owner; counts of what went."""
        return self._drive(self._erase(owner))

    def sweep(self, hold: float = 60.0) -> int:
        """Expire every idle session (in one process at a time: the caller that wins the
        sweep lease keeps it for `hold` seconds); returns how many."""
        return self._drive(self._sweep(hold))

    def run(self, owner: Owner, thread_id: str | None, messages: Sequence[Any]) -> RunResult:
        """Send messages to the agent on a thread (created if new) and return its reply.

        Raises:
            ConflictError: another run holds the thread, or the session has ended.
            RateLimitedError: the owner's rate limit is reached.
        """
        return self._drive(self._run_steps(owner, thread_id, messages))

    def add_messages(
        self, owner: Owner, thread_id: str, messages: Sequence[Any], *, as_node: str = "call_model"
    ) -> int:
        """Append messages without running the model; returns the new total.

        The checkpoint is written as `as_node` wrote them (the node that adds messages by
        default), which decides what the graph does next when a run continues from it."""
        return self._drive(self._add_messages(owner, thread_id, messages, as_node))

    def get_messages(
        self, owner: Owner, thread_id: str, limit: int = 20, offset: int = 0
    ) -> tuple[builtins.list[dict[str, Any]], int]:
        """A page of the full transcript, oldest first, and the total; a negative `offset`
        counts from the end (`offset=-5`: the last five, oldest first)."""
        return self._drive(self._messages(owner, thread_id, limit, offset))

    def get_newest_messages(
        self, owner: Owner, thread_id: str, limit: int = 20, skip: int = 0
    ) -> tuple[builtins.list[dict[str, Any]], int]:
        """A page of the transcript newest first, and the total: the newest `limit`
        messages after skipping the newest `skip`; a negative `skip` counts from the oldest
        (`skip=-5`: the oldest five, newest first)."""
        return self._drive(self._newest(owner, thread_id, limit, skip))

    def recent_context(self, owner: Owner, thread_id: str, max_messages: int = 20) -> str:
        """The last messages formatted for a prompt, one `role: text` line each."""
        return self._drive(self._recent_context(owner, thread_id, max_messages))

    def get_summary(self, owner: Owner, thread_id: str) -> str:
        """The running summary of a thread."""
        return self._drive(self._summary(owner, thread_id))

    def update_summary(
        self, owner: Owner, thread_id: str, summary: str | None, *, as_node: str = "call_model"
    ) -> str | None:
        """Replace the running summary of a thread (None: keep it, and only write a
        checkpoint as `as_node`, as LangGraph's `update_state(config, None, as_node)` does)."""
        return self._drive(self._update_summary(owner, thread_id, summary, as_node))

    def get_state(self, owner: Owner, thread_id: str) -> tuple[dict[str, Any], Any]:
        """The session record and the thread's latest `StateSnapshot`."""
        return self._drive(self._snapshot(owner, thread_id))

    def undo(self, owner: Owner, thread_id: str, messages: int = 1) -> dict[str, Any]:
        """Remove the thread's last `messages` messages from the transcript, the window and
        the counts alike; `{"thread_id", "removed", "messages"}` (what is left).

        Only whole turns go: the first message removed must be a user message, so a tool
        call is never parted from its result.

        Raises:
            InvalidInputError: more messages than the thread has, or a count that would
                start inside a turn (the message names the nearest count that does not).
            ConflictError: a run is active on the thread.
            NotFoundError: no such thread.
        """
        return self._drive(self._undo(owner, thread_id, messages))

    def save_memory(
        self,
        owner: Owner,
        key: str,
        value: Any,
        thread_id: str | None = None,
        *,
        expected_version: str | None = None,
    ) -> dict[str, Any]:
        """Save a user memory, or a session memory when `thread_id` is given.

        `expected_version` makes it conditional: an `etag` the memory must be at, `*` (it
        must exist) or `!*` (it must not: create only); `PreconditionError` otherwise,
        with nothing written.
        """
        return self._drive(self._save_memory(owner, key, value, thread_id, expected_version))

    def patch_memory(
        self,
        owner: Owner,
        key: str,
        patch: builtins.list[dict[str, Any]],
        thread_id: str | None = None,
        *,
        expected_version: str | None = None,
    ) -> dict[str, Any]:
        """Apply a JSON Patch (RFC 6902) to a memory's value atomically: concurrent patches
        of one memory, from any process, each apply to the value the one before left.

        Raises:
            NotFoundError: no such memory.
            PatchError: an operation failed (its index is `operation`); nothing written.
            PreconditionError: not at `expected_version`; nothing written.
            InvalidInputError: the patched value is not one a memory can hold.
        """
        return self._drive(self._patch_memory(owner, key, patch, thread_id, expected_version))

    def get_memory(self, owner: Owner, key: str, thread_id: str | None = None) -> dict[str, Any]:
        """One memory; `NotFoundError` if absent."""
        return self._drive(self._get_memory(owner, key, thread_id))

    def delete_memory(
        self,
        owner: Owner,
        key: str,
        thread_id: str | None = None,
        *,
        expected_version: str | None = None,
    ) -> None:
        """Delete one memory; `NotFoundError` if absent, `PreconditionError` (nothing
        deleted) if it is not at `expected_version`."""
        return self._drive(self._delete_memory(owner, key, thread_id, expected_version))

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
        self, owner: Owner, thread_id: str | None = None, metadata: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], bool]:
        """Async `get_or_create`."""
        return await self._adrive(self._get_or_create(owner, thread_id, metadata))

    async def alist(
        self, owner: Owner, limit: int = 20, offset: int = 0, status: str | None = None
    ) -> tuple[builtins.list[dict[str, Any]], int]:
        """Async `list`."""
        return await self._adrive(self._list(owner, limit, offset, status))

    async def adetail(self, owner: Owner, thread_id: str) -> tuple[dict[str, Any], str, bool]:
        """Async `detail`."""
        return await self._adrive(self._detail(owner, thread_id))

    async def aend(self, owner: Owner, thread_id: str) -> dict[str, Any]:
        """Async `end`."""
        return await self._adrive(self._end(owner, thread_id))

    async def adelete(self, owner: Owner, thread_id: str) -> dict[str, Any]:
        """Async `delete`."""
        return await self._adrive(self._delete(owner, thread_id))

    async def acopy(
        self, owner: Owner, thread_id: str, new_thread_id: str | None = None
    ) -> dict[str, Any]:
        """Async `copy`."""
        return await self._adrive(self._copy_thread(owner, thread_id, new_thread_id))

    async def akeep_latest(self, owner: Owner, thread_id: str) -> dict[str, Any]:
        """Async `keep_latest`."""
        return await self._adrive(self._keep_latest(owner, thread_id))

    async def aerase(self, owner: Owner) -> dict[str, int]:
        """Async `erase`."""
        return await self._adrive(self._erase(owner))

    async def asweep(self, hold: float = 60.0) -> int:
        """Async `sweep`."""
        return await self._adrive(self._sweep(hold))

    async def arun(self, owner: Owner, thread_id: str | None, messages: Sequence[Any]) -> RunResult:
        """Async `run`."""
        return await self._adrive(self._run_steps(owner, thread_id, messages))

    async def aadd_messages(
        self, owner: Owner, thread_id: str, messages: Sequence[Any], *, as_node: str = "call_model"
    ) -> int:
        """Async `add_messages`."""
        return await self._adrive(self._add_messages(owner, thread_id, messages, as_node))

    async def aget_messages(
        self, owner: Owner, thread_id: str, limit: int = 20, offset: int = 0
    ) -> tuple[builtins.list[dict[str, Any]], int]:
        """Async `get_messages`."""
        return await self._adrive(self._messages(owner, thread_id, limit, offset))

    async def aget_newest_messages(
        self, owner: Owner, thread_id: str, limit: int = 20, skip: int = 0
    ) -> tuple[builtins.list[dict[str, Any]], int]:
        """Async `get_newest_messages`."""
        return await self._adrive(self._newest(owner, thread_id, limit, skip))

    async def arecent_context(self, owner: Owner, thread_id: str, max_messages: int = 20) -> str:
        """Async `recent_context`."""
        return await self._adrive(self._recent_context(owner, thread_id, max_messages))

    async def aget_summary(self, owner: Owner, thread_id: str) -> str:
        """Async `get_summary`."""
        return await self._adrive(self._summary(owner, thread_id))

    async def aupdate_summary(
        self, owner: Owner, thread_id: str, summary: str | None, *, as_node: str = "call_model"
    ) -> str | None:
        """Async `update_summary`."""
        return await self._adrive(self._update_summary(owner, thread_id, summary, as_node))

    async def aget_state(self, owner: Owner, thread_id: str) -> tuple[dict[str, Any], Any]:
        """Async `get_state`."""
        return await self._adrive(self._snapshot(owner, thread_id))

    async def ahistory(self, owner: Owner, thread_id: str) -> AsyncGenerator[Any, None]:
        """The thread's retained checkpoints (`StateSnapshot`s), newest first."""
        await self._adrive(self._load(owner, thread_id))
        async for snapshot in self.graph.aget_state_history(self.config(owner, thread_id)):
            yield snapshot

    def history(self, owner: Owner, thread_id: str) -> Iterator[Any]:
        """Sync `ahistory`."""
        self._drive(self._load(owner, thread_id))
        yield from self.graph.get_state_history(self.config(owner, thread_id))

    async def aundo(self, owner: Owner, thread_id: str, messages: int = 1) -> dict[str, Any]:
        """Async `undo`."""
        return await self._adrive(self._undo(owner, thread_id, messages))

    async def asave_memory(
        self,
        owner: Owner,
        key: str,
        value: Any,
        thread_id: str | None = None,
        *,
        expected_version: str | None = None,
    ) -> dict[str, Any]:
        """Async `save_memory`."""
        steps = self._save_memory(owner, key, value, thread_id, expected_version)
        return await self._adrive(steps)

    async def apatch_memory(
        self,
        owner: Owner,
        key: str,
        patch: builtins.list[dict[str, Any]],
        thread_id: str | None = None,
        *,
        expected_version: str | None = None,
    ) -> dict[str, Any]:
        """Async `patch_memory`."""
        steps = self._patch_memory(owner, key, patch, thread_id, expected_version)
        return await self._adrive(steps)

    async def aget_memory(
        self, owner: Owner, key: str, thread_id: str | None = None
    ) -> dict[str, Any]:
        """Async `get_memory`."""
        return await self._adrive(self._get_memory(owner, key, thread_id))

    async def adelete_memory(
        self,
        owner: Owner,
        key: str,
        thread_id: str | None = None,
        *,
        expected_version: str | None = None,
    ) -> None:
        """Async `delete_memory`."""
        return await self._adrive(self._delete_memory(owner, key, thread_id, expected_version))

    async def alist_memories(
        self, owner: Owner, query: str | None = None, limit: int = 20, thread_id: str | None = None
    ) -> builtins.list[dict[str, Any]]:
        """Async `list_memories`."""
        return await self._adrive(self._list_memories(owner, query, limit, thread_id))

    async def aclear_memories(self, owner: Owner, thread_id: str | None = None) -> int:
        """Async `clear_memories`."""
        return await self._adrive(self._clear_memories(owner, thread_id))
