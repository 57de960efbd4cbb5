"""The backend factory: URL schemes, SQLite files, Postgres pools and setup, Redis expiry."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from langgraph.checkpoint.postgres.base import BasePostgresSaver
from langgraph.store.postgres.base import BasePostgresStore

from agent import build_graph
from agent.namespaces import Owner
from memory.sessions import SessionManager
from memory.settings import Settings
from memory.stores.factory import (
    BackendURLError,
    aopen_backends,
    aopen_checkpointer,
    aopen_store,
    default_store_url,
    open_backends,
    scheme_of,
)
from memory.stores.redis_store import RedisStoreSetupError
from memory.stores.retention import RetentionSaver
from tests.devservers import start_redis

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_schemes_and_bad_urls() -> None:
    assert [scheme_of(u) for u in ("memory://", "sqlite:///x", "postgres://h/db")] == [
        "memory",
        "sqlite",
        "postgres",
    ]
    assert scheme_of("rediss://h:6380/0") == "redis"
    for bad in ("mysql://h/db", "h:6379", ""):
        with pytest.raises(BackendURLError, match="unsupported database URL"):
            scheme_of(bad)


def test_default_store_urls() -> None:
    assert default_store_url("sqlite:///data/agent.sqlite") == "sqlite:///data/agent.store.sqlite"
    assert default_store_url("sqlite:///data/agent") == "sqlite:///data/agent.store"
    assert default_store_url("redis://h:6379/0") == "redis://h:6379/0"
    assert default_store_url("postgresql://h/db") == "postgresql://h/db"


def test_sqlite_keeps_the_store_in_a_sibling_file(
    tmp_path: Path, backend_settings: Settings
) -> None:
    url = f"sqlite:///{tmp_path / 'nested' / 'agent.sqlite'}"
    with open_backends(url, settings=backend_settings) as backends:
        backends.store.put(("ns",), "k", {"content": "hello"})
        assert backends.store.search(("ns",), query="greeting")[0].key == "k"
        assert backends.name == backends.store_name == "sqlite"
    assert (tmp_path / "nested" / "agent.sqlite").is_file()
    assert (tmp_path / "nested" / "agent.store.sqlite").is_file()


async def test_postgres_uses_configured_health_checked_pools(
    fresh_postgres_url: str,
) -> None:
    settings = Settings(embeddings="none", pool_size=3)
    async with aopen_backends(fresh_postgres_url, settings=settings) as backends:
        assert isinstance(backends.checkpointer, RetentionSaver)
        assert backends.checkpointer.keep == settings.checkpoint_keep
        saver = backends.checkpointer.inner
        assert isinstance(saver, BasePostgresSaver)
        assert isinstance(backends.store, BasePostgresStore)
        for pool in (saver.conn, backends.store.conn):
            assert (pool.min_size, pool.max_size) == (2, 3)
            async with pool.connection() as conn:
                assert conn.autocommit is True
                assert conn.prepare_threshold == 0


async def test_postgres_pools_recover_when_the_server_drops_connections(
    fresh_postgres_url: str, backend_settings: Settings, owner: Owner
) -> None:
    """A connection the server dropped is checked and replaced before use, never reused dead.

    Connections used in the last seconds skip the health-check round trip unless their
    socket has something to read, which a dropped connection always has.
    """
    async with aopen_backends(fresh_postgres_url, settings=backend_settings) as backends:
        sessions = SessionManager(build_graph(backends.checkpointer, backends.store))
        await sessions.arun(owner, "t", [{"role": "user", "content": "My name is Sam."}])
        async with await psycopg.AsyncConnection.connect(
            fresh_postgres_url, autocommit=True
        ) as admin:
            cursor = await admin.execute(
                # The timeout waits until each backend has exited and closed its socket.
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            assert len(await cursor.fetchall()) >= 2  # both pools had connections
        reply = await sessions.arun(owner, "t", [{"role": "user", "content": "what is my name?"}])
        assert reply.reply == "Your name is Sam."
        assert (await sessions.aget_memory(owner, "name"))["content"]


def test_a_recently_used_connection_skips_the_check_until_the_server_drops_it(
    postgres_url: str,
) -> None:
    from memory.stores import factory as backends

    with (
        psycopg.connect(postgres_url, autocommit=True) as conn,
        psycopg.connect(postgres_url, autocommit=True) as admin,
    ):
        assert not backends._recently_used(conn)  # never handed out: checked
        assert backends._recently_used(conn)  # handed out a moment ago: not checked
        conn.execute("SELECT 1")
        assert backends._recently_used(conn)
        admin.execute("SELECT pg_terminate_backend(%s, 5000)", (conn.info.backend_pid,))
        assert not backends._recently_used(conn)  # the server closed it: checked again


async def _migration_versions(url: str) -> dict[str, list[int]]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        found = {}
        for table in ("checkpoint_migrations", "store_migrations", "vector_migrations"):
            cursor = await conn.execute(f"SELECT v FROM {table} ORDER BY v")
            found[table] = [row[0] for row in await cursor.fetchall()]
        return found


async def test_concurrent_setup_of_a_fresh_database_succeeds_once(
    fresh_postgres_url: str, backend_settings: Settings
) -> None:
    async def start() -> None:
        async with aopen_backends(fresh_postgres_url, settings=backend_settings):
            pass

    await asyncio.gather(*(start() for _ in range(4)))
    versions = await _migration_versions(fresh_postgres_url)
    await start()  # again, with everything in place: nothing to do
    assert await _migration_versions(fresh_postgres_url) == versions
    assert versions["checkpoint_migrations"] == list(range(len(BasePostgresSaver.MIGRATIONS)))
    assert versions["store_migrations"] == list(range(len(BasePostgresStore.MIGRATIONS)))
    assert versions["vector_migrations"] == list(range(len(BasePostgresStore.VECTOR_MIGRATIONS)))


_SETUP_SCRIPT = """
import sys, time
from pathlib import Path
from memory.stores.factory import open_backends
from memory.settings import Settings

url, go = sys.argv[1], Path(sys.argv[2])
print("ready", flush=True)
while not go.exists():
    time.sleep(0.01)
with open_backends(url, settings=Settings(embeddings="local")) as backends:
    backends.store.put(("started",), sys.argv[3], {"ok": True})
"""


@pytest.mark.slow
def test_two_processes_set_up_a_fresh_database_at_once(
    fresh_postgres_url: str, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORY_AGENT_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _SETUP_SCRIPT, fresh_postgres_url, str(go), f"p{n}"],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(2)
    ]
    try:
        for process in processes:  # both have imported everything before either sets up
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "ready"
        go.touch()
        outcomes = [process.communicate(timeout=120) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    for process, (_, stderr) in zip(processes, outcomes, strict=True):
        assert process.returncode == 0, stderr
    with psycopg.connect(fresh_postgres_url) as conn:
        keys = conn.execute("SELECT key FROM store WHERE prefix = 'started'").fetchall()
    assert sorted(keys) == [("p0",), ("p1",)]


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[str]:
    """A Redis server of this test's own, so every key on it is this test's."""
    handle = start_redis(tmp_path)
    try:
        yield handle.url
    finally:
        handle.stop()


async def _run_a_session(url: str, settings: Settings) -> None:
    owner = Owner("tenant", "user")
    async with aopen_backends(url, settings=settings) as backends:
        sessions = SessionManager(build_graph(backends.checkpointer, backends.store))
        for text in ("My name is Sam.", "what is my name?", "I like green tea", "thanks"):
            await sessions.arun(owner, "t1", [{"role": "user", "content": text}])
        await sessions.asave_memory(owner, "cart", "apples", thread_id="t1")
        await sessions.alist_memories(owner, query="name")
        await sessions.aend(owner, "t1")


def _expiries(url: str) -> dict[bytes, int]:
    client = redis.Redis.from_url(url)
    try:
        return {key: client.pttl(key) for key in client.scan_iter(count=1000)}
    finally:
        client.close()


async def test_every_redis_key_expires_when_a_ttl_is_set(own_redis: str) -> None:
    await _run_a_session(own_redis, Settings(embeddings="local", ttl_minutes=5))
    expiries = _expiries(own_redis)
    kinds = {key.split(b":", 1)[0] for key in expiries}
    assert {b"checkpoint", b"checkpoint_write", b"memory-agent"} <= kinds
    # The schema version is kept for as long as the data it describes may be.
    assert expiries.pop(b"memory_agent:schema") == -1
    assert {key: ms for key, ms in expiries.items() if not 0 < ms <= 5 * 60_000} == {}


async def test_redis_keys_persist_without_a_ttl(own_redis: str) -> None:
    await _run_a_session(own_redis, Settings(embeddings="none", ttl_minutes=None))
    expiries = _expiries(own_redis)
    assert expiries
    assert set(expiries.values()) == {-1}


async def test_redis_store_needs_database_zero(redis_url: str) -> None:
    other_db = redis_url.rsplit("/", 1)[0] + "/1"
    with pytest.raises(RedisStoreSetupError, match="database 0"):
        async with aopen_store(other_db, Settings(embeddings="none")):
            pass


async def test_ttl_minutes_is_reported_as_unapplied_off_redis(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path / 'a.sqlite'}"
    with caplog.at_level(logging.WARNING, logger="memory.stores.factory"):
        async with aopen_backends(url, settings=Settings(embeddings="none", ttl_minutes=5)):
            pass
    assert "applies to Redis only" in caplog.text


async def test_checkpointer_urls_are_checked(tmp_path: Path) -> None:
    with pytest.raises(BackendURLError):
        async with aopen_checkpointer(f"mysql://{uuid.uuid4().hex}"):
            pass
