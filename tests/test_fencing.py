"""A run that lost its thread's lease to another run cannot write: the database fences it."""

from __future__ import annotations

import asyncio
import time

import pytest

from agent import build_graph
from agent.namespaces import Owner
from memory.sessions import SessionManager
from memory.settings import Settings
from memory.stores import aopen_backends
from memory.stores.sessiondb import LeaseLostError
from tests.plugins.server import GatedModel


async def test_a_run_that_lost_its_lease_records_nothing_and_answers_409(owner: Owner) -> None:
    model = GatedModel()
    async with aopen_backends("memory://", settings=Settings(embeddings="none")) as backends:
        sessions = SessionManager(
            build_graph(backends.checkpointer, backends.store, chat_model=model)
        )
        run = asyncio.create_task(sessions.arun(owner, "t", [{"role": "user", "content": "hi"}]))
        await asyncio.wait_for(model.entered.wait(), 10)
        key = owner.thread_key("t")
        # Another run took the thread (the first stalled past its lease, say).
        sessions.db._leases[key] = ("thief", time.monotonic() * 1000 + 60_000)  # type: ignore[attr-defined]
        await sessions.db.aappend(key, 0, [{"seq": 0, "id": "thief-0", "role": "user"}], "thief")
        model.gate.set()
        with pytest.raises(LeaseLostError) as caught:
            await run
        assert caught.value.status_code == 409
        records, total = await sessions.db.apage(key, 0, 10)
        assert [r["id"] for r in records] == ["thief-0"] and total == 1
        # The session's count is its transcript's: the thief's record only.
        assert (await sessions.aget(owner, "t"))["message_count"] == 1


async def test_a_claim_granted_after_its_deadline_is_given_back(owner: Owner) -> None:
    from memory.errors import UnavailableError

    async with aopen_backends("memory://", settings=Settings(embeddings="none")) as backends:
        sessions = SessionManager(
            build_graph(backends.checkpointer, backends.store), backend_timeout=0.1
        )
        db = sessions.db
        real_begin = db.abegin

        async def slow_begin(*args: object, **kwargs: object) -> object:
            async def sent() -> object:
                await asyncio.sleep(0.3)  # the database grants it, but after the deadline
                return await real_begin(*args, **kwargs)  # type: ignore[arg-type]

            return await asyncio.shield(sent())  # a request on the wire cannot be taken back

        db.abegin = slow_begin  # type: ignore[method-assign]
        with pytest.raises(UnavailableError):
            await sessions.arun(owner, "t", [{"role": "user", "content": "hi"}])
        await asyncio.sleep(0.5)
        assert not await db.aleased(owner.thread_key("t"))  # not held until the lease ends
        db.abegin = real_begin  # type: ignore[method-assign]
        result = await sessions.arun(owner, "t", [{"role": "user", "content": "hi"}])
        assert result.reply
