"""The session database on every backend: atomic create and cap, leases, rate limit, CAS,
fenced transcript writes, paging; sync and async."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from agent.namespaces import Owner
from memory.settings import Settings
from memory.stores import aopen_store, open_store
from memory.stores.factory import sessions_db
from memory.stores.sessiondb import LeaseLostError, RateLimit


def _record(thread_id: str, when: datetime | None = None, status: str = "active") -> dict:
    stamp = (when or datetime.now(UTC)).isoformat()
    return {
        "thread_id": thread_id,
        "status": status,
        "created_at": stamp,
        "last_active_at": stamp,
        "message_count": 0,
    }


@pytest.fixture
def settings() -> Settings:
    return Settings(embeddings="none", pool_size=4)


def test_create_get_list_remove(backend_url: str, settings: Settings, owner: Owner) -> None:
    with open_store(backend_url, settings) as store:
        db = sessions_db(store)
        base = datetime.now(UTC)
        assert db.create(owner, _record("a", base), cap=2) == "created"
        assert db.create(owner, _record("a", base), cap=2) == "exists"
        assert db.create(owner, _record("b", base + timedelta(seconds=1)), cap=2) == "created"
        assert db.create(owner, _record("c"), cap=2) == "full"
        records, total = db.list(owner, 10, 0)
        assert [r["thread_id"] for r in records] == ["b", "a"] and total == 2
        assert db.get(owner, "a")["status"] == "active"
        assert db.get(Owner(tenant=owner.tenant, user="someone-else"), "a") is None
        ended = {**_record("a", base), "status": "ended"}
        assert db.set_status(owner, ended, expect="active")
        assert not db.set_status(owner, ended, expect="active")  # compare-and-set
        assert db.create(owner, _record("c"), cap=2) == "created"  # the end freed a place
        assert [r["thread_id"] for r in db.list(owner, 10, 0, status="ended")[0]] == ["a"]
        assert db.remove(owner, "b")["thread_id"] == "b"
        assert db.remove(owner, "b") is None
        assert db.create(owner, _record("d"), cap=2) == "created"


def test_begin_leases_and_rate_limit(backend_url: str, settings: Settings, owner: Owner) -> None:
    with open_store(backend_url, settings) as store:
        db = sessions_db(store)
        rate = RateLimit(limit=3, window_ms=60_000)
        first = db.begin(owner, "t1", "tok1", 60_000, rate, _record("t1"), cap=5)
        assert first.outcome == "created" and first.claimed
        assert db.begin(owner, "t1", "tok2", 60_000, rate, _record("t1")).outcome == "busy"
        assert not db.acquire(owner.thread_key("t1"), "tok3", 60_000)
        assert db.begin(owner, "t9", "tok4", 60_000, rate).outcome == "missing"
        db.release(owner.thread_key("t1"), "tok1")
        again = db.begin(owner, "t1", "tok5", 60_000, rate, _record("t1"))
        assert again.outcome == "ok" and again.record["thread_id"] == "t1"
        db.release(owner.thread_key("t1"), "tok5")
        limited = db.begin(owner, "t2", "tok6", 60_000, rate, _record("t2"))
        assert limited.outcome == "limited" and 0 < limited.retry_after <= 60
        assert db.acquire(owner.thread_key("t2"), "tok7", 60_000)  # a refused run holds nothing


def test_lease_expires_and_fences_writes(
    backend_url: str, settings: Settings, owner: Owner
) -> None:
    with open_store(backend_url, settings) as store:
        db = sessions_db(store)
        key = owner.thread_key("t")
        assert db.begin(owner, "t", "old", 200, None, _record("t")).claimed
        db.append(key, 0, [{"seq": 0, "id": "m0"}], token="old")
        assert db.renew(key, "old", 200)
        time.sleep(0.35)
        assert db.begin(owner, "t", "new", 60_000).claimed  # the old holder is presumed dead
        assert not db.renew(key, "old", 200)
        with pytest.raises(LeaseLostError):
            db.append(key, 1, [{"seq": 1, "id": "stale"}], token="old")
        db.append(key, 1, [{"seq": 1, "id": "m1"}], token="new")
        assert not db.save(owner, {**db.get(owner, "t"), "message_count": 9}, token="old")
        assert db.save(owner, {**db.get(owner, "t"), "message_count": 2}, "new", release=True)
        assert db.get(owner, "t")["message_count"] == 2
        assert db.acquire(key, "third", 1000)  # released by the save
        items, total = db.page(key, 0, 10)
        assert [r["id"] for r in items] == ["m0", "m1"] and total == 2


def test_transcript_pages(backend_url: str, settings: Settings) -> None:
    with open_store(backend_url, settings) as store:
        db = sessions_db(store)
        key = f"t/u/{uuid.uuid4().hex}"
        db.append(key, 0, [{"seq": i, "id": f"m{i}"} for i in range(5)])
        db.append(key, 3, [{"seq": 3, "id": "again"}, {"seq": 4, "id": "m4"}, {"seq": 5}])
        items, total = db.page(key, 1, 3)
        assert [r["id"] for r in items] == ["m1", "m2", "again"] and total == 6
        assert [r["seq"] for r in db.page(key, -2, 10)[0]] == [4, 5]
        assert db.page(key, 10, 5) == ([], 6)
        assert db.page(f"{key}-none", -3, 3) == ([], 0)


def test_idle_lists_only_old_active_sessions(
    backend_url: str, settings: Settings, owner: Owner
) -> None:
    with open_store(backend_url, settings) as store:
        db = sessions_db(store)
        old = datetime.now(UTC) - timedelta(days=400)
        db.create(owner, _record("old", old), cap=10)
        db.create(owner, _record("new"), cap=10)
        db.create(owner, _record("gone", old, status="ended"), cap=10)
        cutoff = (datetime.now(UTC) - timedelta(days=399)).isoformat()
        found = [(r["thread_id"]) for r in db.idle(cutoff) if r.get("last_active_at") < cutoff]
        mine = [r for r in db.idle(cutoff, 10_000) if r["thread_id"] in ("old", "new", "gone")]
        assert "old" in found and [r["thread_id"] for r in mine] == ["old"]


async def test_racing_creates_and_claims_async(
    backend_url: str, settings: Settings, owner: Owner
) -> None:
    async with aopen_store(backend_url, settings) as store:
        db = sessions_db(store)
        results = await asyncio.gather(
            *(db.acreate(owner, _record("same"), 100) for _ in range(30))
        )
        assert results.count("created") == 1 and results.count("exists") == 29
        capped = await asyncio.gather(*(db.acreate(owner, _record(f"c{i}"), 5) for i in range(20)))
        assert capped.count("created") == 4
        claims = await asyncio.gather(
            *(db.abegin(owner, "same", f"tok{i}", 60_000) for i in range(20))
        )
        assert sum(c.claimed for c in claims) == 1
        rate = RateLimit(limit=7, window_ms=60_000)
        runs = await asyncio.gather(
            *(db.abegin(owner, f"r{i}", f"x{i}", 60_000, rate, _record(f"r{i}")) for i in range(20))
        )
        assert sum(c.outcome != "limited" for c in runs) == 7
        page, total = await db.apage("nothing/here/x", 0, 5)
        assert page == [] and total == 0
