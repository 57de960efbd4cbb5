"""One empty database per benchmark variant, and how many bytes each one holds."""

from __future__ import annotations

import json
import os
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psycopg
import redis

from memory.stores.factory import sessions_db, sqlite_path
from memory.stores.sessiondb import MemorySessionDB
from tests.devservers import ServerHandle, start_postgres, start_redis


class Databases:
    """Hands out a fresh database URL per variant: a file, a Postgres database or a server.

    Postgres variants share one throwaway server (a database each); each Redis variant gets
    its own throwaway Valkey server, since the savers' search indexes are server-wide.
    """

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self._stack = ExitStack()
        self._postgres: ServerHandle | None = None
        self._redis: dict[str, ServerHandle] = {}

    def __enter__(self) -> Databases:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def url(self, kind: str, label: str) -> str:
        """A URL to an empty database of `kind` for the variant `label`."""
        name = f"{label}_{uuid.uuid4().hex[:6]}".replace("-", "_")
        if kind == "memory":
            return "memory://"
        if kind == "sqlite":
            return f"sqlite:///{self.work_dir / name}.sqlite"
        if kind == "postgres":
            if self._postgres is None:
                self._postgres = self._stack.enter_context(start_postgres(self.work_dir))
            with psycopg.connect(self._postgres.url, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
                server = self._postgres.url.rsplit("/", 1)[0]
            with psycopg.connect(f"{server}/{name}", autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            return f"{server}/{name}"
        if kind == "redis":
            handle = self._stack.enter_context(start_redis(self.work_dir))
            self._redis[label] = handle
            return handle.url
        raise ValueError(f"unknown backend kind {kind!r}")


def stored_bytes(kind: str, urls: list[str], objects: list[Any]) -> int:
    """Bytes the databases at `urls` hold (for `memory`, the saver and store `objects`).

    SQLite: the files after a WAL checkpoint (SQLite reuses freed pages at once). Postgres:
    every table with its indexes and TOAST after `VACUUM FULL`, i.e. the live data; between
    autovacuum passes the files also hold deleted rows awaiting reuse, an amount set by
    the write rate and the autovacuum cadence, not by the thread's length. Redis:
    `MEMORY USAGE` of every key. Memory: the serialised bytes kept by savers and stores.
    A database named twice (the checkpointer and the store on one server) counts once.
    """
    if kind == "memory":
        return sum(_memory_bytes(o) for o in objects)
    total = 0
    for url in dict.fromkeys(urls):
        if kind == "sqlite":
            total += _sqlite_bytes(sqlite_path(url))
        elif kind == "postgres":
            total += _postgres_bytes(url)
        elif kind == "redis":
            total += _redis_bytes(url)
    return total


def _memory_bytes(obj: Any) -> int:
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.store.memory import InMemoryStore

    from memory.stores.retention import RetentionSaver

    if isinstance(obj, RetentionSaver):
        obj = obj.inner
    if isinstance(obj, InMemorySaver):
        size = 0
        for namespaces in obj.storage.values():
            for checkpoints in namespaces.values():
                for checkpoint, metadata, parent in checkpoints.values():
                    size += len(checkpoint[1]) + len(metadata[1]) + len(parent or "")
        for writes in obj.writes.values():
            size += sum(len(w[2][1]) for w in writes.values())
        size += sum(len(blob[1]) for blob in obj.blobs.values())
        return size
    if isinstance(obj, InMemoryStore):
        size = sum(
            len(json.dumps(item.value, default=str)) + len(key)
            for items in obj._data.values()
            for key, item in items.items()
        )
        # The session database beside the store: records and transcripts, as stored JSON.
        db = sessions_db(obj)
        if isinstance(db, MemorySessionDB):
            size += sum(len(json.dumps(r)) for log in db._transcripts.values() for r in log)
            size += sum(len(json.dumps(r)) for mine in db._sessions.values() for r in mine.values())
        return size
    return 0


def _sqlite_bytes(path: str) -> int:
    import sqlite3

    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return sum(
        os.path.getsize(p) for p in (path, f"{path}-wal", f"{path}-shm") if os.path.exists(p)
    )


def _postgres_bytes(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM FULL")
        row = conn.execute(
            "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind = 'r' AND n.nspname = 'public'"
        ).fetchone()
    return int(row[0]) if row else 0


def _redis_bytes(url: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        total = 0
        keys = list(client.scan_iter(count=1000))
        for start in range(0, len(keys), 500):
            pipe = client.pipeline(transaction=False)
            for key in keys[start : start + 500]:
                pipe.memory_usage(key, samples=0)
            total += sum(v or 0 for v in pipe.execute())
        return total
    finally:
        client.close()
