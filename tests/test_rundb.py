"""The run database on every backend: strategies, the queue, claims and takeovers, fencing,
cancel, events and their keeping time."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from memory.settings import Settings
from memory.stores import aopen_store
from memory.stores.factory import sessions_db
from memory.stores.rundb import Event, RunDB, first_event_id, new_run


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _run(thread_key: str, strategy: str = "enqueue", **kwargs: object) -> dict:
    return new_run(
        run_id=str(uuid.uuid4()),
        thread_id=thread_key.rsplit("/", 1)[-1],
        thread_key=thread_key,
        tenant="t",
        user="u",
        assistant_id="agent",
        strategy=strategy,  # type: ignore[arg-type]
        kwargs={"input": {"messages": [{"role": "user", "content": "hi"}]}, **kwargs},
        metadata={"k": 1},
        created_at=_now(),
    )


@pytest.fixture
async def runs(backend_url: str) -> AsyncIterator[RunDB]:
    async with aopen_store(backend_url, Settings(embeddings="none", pool_size=4)) as store:
        yield sessions_db(store).runs


def _key() -> str:
    return f"t{uuid.uuid4().hex[:8]}/u/{uuid.uuid4().hex[:8]}"


async def _drain(runs: RunDB, worker: str, thread_key: str) -> None:
    """Finish every run of other tests still claimable (the database is shared)."""
    while (run := await runs.claim(worker, 60_000)) is not None:
        await runs.finish(run["run_id"], worker, "success", None, None, 1000, _now())


async def test_create_get_list_and_reject(runs: RunDB) -> None:
    key = _key()
    first = _run(key, "reject")
    assert await runs.create(first) == (True, [])
    got = await runs.get(key, first["run_id"])
    assert got is not None and got["status"] == "pending" and got["metadata"] == {"k": 1}
    assert got["kwargs"]["input"]["messages"][0]["content"] == "hi"
    assert await runs.get(_key(), first["run_id"]) is None  # another thread's id
    inserted, asked = await runs.create(_run(key, "reject"))
    assert not inserted and asked == []
    second = _run(key, "enqueue")
    assert (await runs.create(second))[0]
    listed = await runs.list(key, 10, 0)
    assert [r["run_id"] for r in listed] == [second["run_id"], first["run_id"]]
    assert [r["run_id"] for r in await runs.list(key, 1, 1)] == [first["run_id"]]
    assert [r["run_id"] for r in await runs.active(key)] == [first["run_id"], second["run_id"]]
    assert await runs.list(key, 10, 0, status="success") == []


async def test_claims_run_in_order_one_at_a_time_per_thread(runs: RunDB) -> None:
    key = _key()
    queued = [_run(key) for _ in range(3)]
    for run in queued:
        await runs.create(run)
    # The second run cannot be claimed by id while the first is pending.
    assert await runs.claim("w1", 60_000, queued[1]["run_id"]) is None
    claimed = await runs.claim("w1", 60_000, queued[0]["run_id"])
    assert claimed is not None and claimed["status"] == "running" and claimed["attempt"] == 1
    assert claimed["worker"] == "w1"
    assert await runs.claim("w2", 60_000, queued[1]["run_id"]) is None  # one runs at a time
    assert await runs.finish(queued[0]["run_id"], "w1", "success", {"v": 1}, None, 1000, _now())
    done = await runs.get(key, queued[0]["run_id"])
    assert done is not None and done["status"] == "success" and done["result"] == {"v": 1}
    nxt = await runs.claim("w2", 60_000, queued[1]["run_id"])
    assert nxt is not None and nxt["run_id"] == queued[1]["run_id"]


async def test_a_delayed_run_waits_for_its_time(runs: RunDB) -> None:
    key = _key()
    later = _run(key)
    await runs.create(later, delay_ms=600)
    assert await runs.claim("w", 60_000, later["run_id"]) is None
    await asyncio.sleep(0.8)
    assert (await runs.claim("w", 60_000, later["run_id"])) is not None


async def test_a_lapsed_lease_is_taken_over_and_fences_the_old_holder(runs: RunDB) -> None:
    key = _key()
    run = _run(key)
    await runs.create(run)
    assert await runs.claim("dead", 300, run["run_id"]) is not None
    assert await runs.claim("alive", 60_000, run["run_id"]) is None  # the lease holds
    assert (await runs.renew(run["run_id"], "dead", 300)).held
    await asyncio.sleep(0.5)
    taken = await runs.claim("alive", 60_000, run["run_id"])
    assert taken is not None and taken["attempt"] == 2 and taken["worker"] == "alive"
    assert not (await runs.renew(run["run_id"], "dead", 300)).held
    assert not await runs.finish(run["run_id"], "dead", "error", None, {}, 1000, _now())
    assert await runs.finish(run["run_id"], "alive", "success", None, None, 1000, _now())


async def test_any_claim_finds_the_next_run_of_any_thread(runs: RunDB) -> None:
    worker = f"w{uuid.uuid4().hex[:6]}"
    key = _key()
    await _drain(runs, worker, key)
    run = _run(key)
    await runs.create(run)
    claimed = await runs.claim(worker, 60_000)
    assert claimed is not None and claimed["run_id"] == run["run_id"]


async def test_strategies_interrupt_and_rollback_ask_the_active_run_to_stop(runs: RunDB) -> None:
    key = _key()
    running, waiting = _run(key), _run(key)
    await runs.create(running)
    await runs.create(waiting)
    assert await runs.claim("w", 60_000, running["run_id"]) is not None
    newer = _run(key, "interrupt")
    inserted, asked = await runs.create(newer)
    assert inserted and set(asked) == {running["run_id"], waiting["run_id"]}
    control = await runs.renew(running["run_id"], "w", 60_000)
    assert control.held and control.cancel == "interrupt"
    gone = await runs.get(key, waiting["run_id"])
    assert gone is not None and gone["status"] == "interrupted"  # pending: stopped at once
    assert [r["run_id"] for r in await runs.active(key)] == [running["run_id"], newer["run_id"]]
    _, asked = await runs.create(_run(key, "rollback"))
    assert newer["run_id"] in asked
    assert (await runs.renew(running["run_id"], "w", 60_000)).cancel in ("interrupt", "rollback")


async def test_cancel_pending_and_running(runs: RunDB) -> None:
    key = _key()
    first, second = _run(key), _run(key)
    await runs.create(first)
    await runs.create(second)
    await runs.claim("w", 60_000, first["run_id"])
    found = await runs.cancel(key, [second["run_id"]], "interrupt", _now())
    assert [r["status"] for r in found] == ["interrupted"]
    found = await runs.cancel(key, None, "rollback", _now())
    assert [(r["run_id"], r["status"]) for r in found] == [(first["run_id"], "running")]
    assert (await runs.renew(first["run_id"], "w", 60_000)).cancel == "rollback"
    assert await runs.cancel(_key(), [first["run_id"]], "interrupt", _now()) == []


async def test_events_in_order_after_an_id_kept_then_swept(runs: RunDB) -> None:
    key = _key()
    run = _run(key)
    await runs.create(run)
    await runs.claim("w", 60_000, run["run_id"])
    base = first_event_id(1)
    assert await runs.last_event_id(run["run_id"]) == 0
    await runs.add_events(
        run["run_id"], [Event(base + i, "values", f'{{"i":{i}}}') for i in range(3)]
    )
    await runs.add_events(run["run_id"], [Event(base + 3, "end", "null")])
    assert [e.id for e in await runs.events(run["run_id"], 0)] == [
        base,
        base + 1,
        base + 2,
        base + 3,
    ]
    after = await runs.events(run["run_id"], base + 1)
    assert [(e.event, e.data) for e in after] == [("values", '{"i":2}'), ("end", "null")]
    assert len(await runs.events(run["run_id"], 0, limit=2)) == 2
    assert await runs.last_event_id(run["run_id"]) == base + 3
    assert await runs.finish(run["run_id"], "w", "success", None, None, 300, _now())
    await runs.sweep()
    assert len(await runs.events(run["run_id"], 0)) == 4  # still kept
    await asyncio.sleep(0.5)
    await runs.sweep()
    assert await runs.events(run["run_id"], 0) == []
    assert (await runs.get(key, run["run_id"])) is not None  # the record stays


async def test_delete_and_delete_thread(runs: RunDB) -> None:
    key = _key()
    first, second = _run(key), _run(key)
    await runs.create(first)
    await runs.create(second)
    await runs.claim("w", 60_000, first["run_id"])
    await runs.add_events(first["run_id"], [Event(first_event_id(1), "values", "{}")])
    assert not await runs.delete(key, first["run_id"])  # running
    assert await runs.delete(key, second["run_id"])
    assert await runs.get(key, second["run_id"]) is None
    assert await runs.delete_thread(key) == 1
    assert await runs.get(key, first["run_id"]) is None
    assert await runs.events(first["run_id"], 0) == []


async def test_concurrent_claimers_run_a_thread_one_at_a_time_each_run_once(
    runs: RunDB,
) -> None:
    key = _key()
    queued = [_run(key) for _ in range(6)]
    for run in queued:
        await runs.create(run)
    order: list[str] = []
    running = 0

    async def worker(name: str) -> None:
        nonlocal running
        while len(order) < len(queued):
            claimed = None
            for run in queued:
                claimed = await runs.claim(name, 60_000, run["run_id"])
                if claimed is not None:
                    break
            if claimed is None:
                await asyncio.sleep(0.01)
                continue
            running += 1
            assert running == 1, "two runs of one thread ran at once"
            order.append(claimed["run_id"])
            await asyncio.sleep(0.01)
            running -= 1
            ok = await runs.finish(claimed["run_id"], name, "success", None, None, 1000, _now())
            assert ok

    await asyncio.wait_for(asyncio.gather(*(worker(f"w{i}") for i in range(4))), 30)
    assert order == [r["run_id"] for r in queued]
