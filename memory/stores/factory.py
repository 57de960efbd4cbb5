"""Opening the checkpointer and the store from URLs, sync and async, setup run once.

One factory per concern: `open_checkpointer`/`aopen_checkpointer` and
`open_store`/`aopen_store` pick an implementation by URL scheme, own its connections and
close them on exit; `open_backends`/`aopen_backends` open both from the settings.

Every store the factory opens behaves alike, whatever the backend:

- values, keys and labels that some backend cannot hold (NUL characters, unpaired
  surrogates) are rejected up front with `StoreValueError`, on every backend;
- items written with a TTL are never returned once expired, even before any sweeper runs
  (the in-memory and SQLite stores drop due items before each operation, Postgres filters
  them in SQL, Redis in its queries);
- on Redis, `ttl_minutes` (settings) gives every key of the checkpointer and of the store an
  expiry that reads refresh, so abandoned threads disappear. The other checkpointers cannot
  expire threads, so there the setting is not applied: a thread's store records must not
  vanish while its checkpoints stay.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import json
import logging
import math
import select
import sqlite3
import time
import weakref
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.store.base import (
    BaseStore,
    GetOp,
    Item,
    Op,
    PutOp,
    Result,
    SearchOp,
    TTLConfig,
)
from langgraph.store.memory import InMemoryStore
from langgraph.store.postgres import PostgresStore
from langgraph.store.postgres.aio import AsyncPostgresStore
from langgraph.store.sqlite import SqliteStore

from agent import transcript as agent_transcript
from agent.memories import INDEX_FIELDS
from memory.embeddings import load_embeddings
from memory.errors import SchemaVersionError
from memory.settings import Settings, get_settings
from memory.stores.atomic import (
    AsyncPostgresUpdates,
    InMemoryUpdates,
    PostgresUpdates,
    SqliteUpdates,
)
from memory.stores.outages import BoundedSaver, Breaker, bounded, breaker_for
from memory.stores.retention import with_retention
from memory.stores.schema import SCHEMA_VERSION, SchemaChange
from memory.stores.sessiondb import MemorySessionDB, SessionDB
from memory.stores.sessiondb_redis import RedisSessionDB
from memory.stores.sessiondb_sql import PostgresSessionDB, SqliteSessionDB
from memory.stores.sqlite_saver import InlineSqliteSaver, retry_async, retry_sync
from memory.stores.values import EarlyPutCheck, checked, matches_filter

logger = logging.getLogger(__name__)

#: Minutes between sweeps that delete expired Postgres store rows (reads skip them anyway).
PG_SWEEP_MINUTES = 5


class BackendURLError(ValueError):
    """A database URL this project cannot open."""


@dataclass
class Backends:
    """An open checkpointer and store, and the URLs they came from."""

    checkpointer: BaseCheckpointSaver
    store: BaseStore
    database_url: str
    store_url: str

    @property
    def name(self) -> str:
        """The backend kind of the checkpointer: memory, sqlite, postgres or redis."""
        return scheme_of(self.database_url)

    @property
    def sessions(self) -> SessionDB:
        """The session database beside the store: records, leases, limits, transcripts."""
        return sessions_db(self.store)

    @property
    def store_name(self) -> str:
        """The backend kind of the store."""
        return scheme_of(self.store_url)


def scheme_of(url: str) -> str:
    """Backend kind of a URL: `memory`, `sqlite`, `postgres` or `redis`."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    kinds = {
        "memory": "memory",
        "sqlite": "sqlite",
        "postgresql": "postgres",
        "postgres": "postgres",
        "redis": "redis",
        "rediss": "redis",
    }
    if scheme not in kinds:
        raise BackendURLError(
            f"unsupported database URL {url!r}: use memory://, sqlite:///path, "
            "postgresql://user@host/db or redis://host:port"
        )
    return kinds[scheme]


def sqlite_path(url: str) -> str:
    """The file path of a `sqlite:///path` URL, its directory created; `:memory:` as is."""
    path = url.split("://", 1)[1]
    path = path[1:] if path.startswith("/") else path  # sqlite:////abs keeps its root
    if path in ("", ":memory:"):
        return ":memory:"
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return path


def index_config(settings: Settings) -> dict[str, Any] | None:
    """The store's semantic index from `MEMORY_AGENT_EMBEDDINGS`, or None when off."""
    loaded = load_embeddings(settings.embeddings)
    if loaded is None:
        return None
    embeddings, dims = loaded
    return {"dims": dims, "embed": embeddings, "fields": INDEX_FIELDS}


def store_ttl(kind: str, settings: Settings) -> TTLConfig:
    """The store's TTL configuration: per-item TTLs everywhere, a default TTL on Redis."""
    config: TTLConfig = {"refresh_on_read": True, "omit_expired": True}
    if kind == "redis" and settings.ttl_minutes is not None:
        config["default_ttl"] = settings.ttl_minutes
    if kind == "postgres":
        config["sweep_interval_minutes"] = PG_SWEEP_MINUTES
    return config


def saver_ttl(settings: Settings) -> dict[str, Any] | None:
    """The Redis checkpointer's TTL: every key expires `ttl_minutes` after its last use."""
    if settings.ttl_minutes is None:
        return None
    return {"default_ttl": settings.ttl_minutes, "refresh_on_read": True}


def _warn_unapplied_ttl(kind: str, settings: Settings) -> None:
    if settings.ttl_minutes is not None and kind != "redis":
        logger.warning(
            "MEMORY_AGENT_TTL_MINUTES applies to Redis only; the %s checkpointer cannot "
            "expire threads, so nothing expires on this backend",
            kind,
        )


# --------------------------------------------------------------------------- memory


class ExpiringInMemoryStore(InMemoryUpdates, InMemoryStore):
    """LangGraph's in-memory store with TTLs and checked puts (see the module docstring).

    Due items are dropped before each operation.
    Also drops namespaces left empty (by deletes, expiry, or reads of absent items), which
    the in-memory store would otherwise keep listing.

    Args:
        index: Semantic index configuration.
        ttl: TTL configuration (`default_ttl`, `refresh_on_read`).
    """

    supports_ttl = True

    def __init__(self, *, index: Any = None, ttl: TTLConfig | None = None) -> None:
        super().__init__(index=index)
        self.ttl_config = ttl
        self._expiry: dict[tuple[tuple[str, ...], str], tuple[float, float]] = {}
        self._due: list[tuple[float, tuple[str, ...], str]] = []

    def _filter_items(self, op: SearchOp) -> list[tuple[Item, list[list[float]]]]:
        """The items under the prefix that match the filter, as the SQL stores match it
        (LangGraph's matcher fails on an absent or non-numeric field compared with `$gt`)."""
        if not op.filter:
            return super()._filter_items(op)
        found = super()._filter_items(op._replace(filter=None, limit=-1))
        return [(item, vectors) for item, vectors in found if matches_filter(item.value, op.filter)]

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        """Check the puts, drop expired items, then run the operations."""
        ops = checked(ops)
        self._expire()
        results = super().batch(ops)
        self._track(ops, results)
        return results

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """Check the puts, drop expired items, then run the operations."""
        ops = checked(ops)
        self._expire()
        results = await super().abatch(ops)
        self._track(ops, results)
        return results

    def _expire(self) -> None:
        now = time.monotonic()
        while self._due and self._due[0][0] <= now:
            at, namespace, key = heapq.heappop(self._due)
            entry = self._expiry.get((namespace, key))
            if entry is None or entry[0] != at:  # rewritten or refreshed since
                continue
            del self._expiry[(namespace, key)]
            self._data.get(namespace, {}).pop(key, None)
            self._vectors.get(namespace, {}).pop(key, None)
            self._drop_if_empty(namespace)

    def _schedule(self, namespace: tuple[str, ...], key: str, ttl: float, now: float) -> None:
        at = now + ttl * 60
        self._expiry[(namespace, key)] = (at, ttl)
        heapq.heappush(self._due, (at, namespace, key))

    def _track(self, ops: list[Op], results: list[Result]) -> None:
        now = time.monotonic()
        for op, result in zip(ops, results, strict=True):
            if isinstance(op, PutOp):
                if op.value is not None and op.ttl is not None:
                    self._schedule(op.namespace, op.key, op.ttl, now)
                else:
                    self._expiry.pop((op.namespace, op.key), None)
                self._drop_if_empty(op.namespace)
            elif isinstance(op, GetOp):
                if result is None:
                    self._drop_if_empty(op.namespace)
                elif op.refresh_ttl:
                    self._refresh(op.namespace, op.key, now)
            elif isinstance(op, SearchOp) and op.refresh_ttl and isinstance(result, list):
                for item in result:
                    if isinstance(item, Item):
                        self._refresh(item.namespace, item.key, now)

    def _refresh(self, namespace: tuple[str, ...], key: str, now: float) -> None:
        entry = self._expiry.get((namespace, key))
        if entry is not None:
            self._schedule(namespace, key, entry[1], now)

    def _drop_if_empty(self, namespace: tuple[str, ...]) -> None:
        if not self._data.get(namespace, True):
            del self._data[namespace]
        if not self._vectors.get(namespace, True):
            del self._vectors[namespace]


# --------------------------------------------------------------------------- sqlite


def _sqlite_module() -> Any:
    """A sqlite3 module that can load extensions (sqlite-vec needs it for vector search).

    Some Python builds (pyenv's among them) compile `sqlite3` without extension loading;
    pysqlite3-binary is the same DB-API with it enabled.
    """
    if hasattr(sqlite3.Connection, "enable_load_extension"):
        return sqlite3
    try:
        import pysqlite3.dbapi2 as module  # type: ignore[import-not-found]
    except ImportError as exc:  # pragma: no cover - a dependency on Linux x86_64
        raise BackendURLError(
            "this Python's sqlite3 cannot load extensions and pysqlite3-binary is missing; "
            "install it or set MEMORY_AGENT_EMBEDDINGS=none"
        ) from exc
    return module


#: WAL lets readers proceed during a write; NORMAL sync is durable across process crashes.
_SQLITE_PRAGMAS = ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=5000")
#: The store's vectors reference its items ON DELETE CASCADE, which SQLite only enforces
#: with foreign keys on; without it deleted or expired items leave their vectors behind.
_STORE_PRAGMAS = (*_SQLITE_PRAGMAS, "foreign_keys=ON")


def _sqlite_connect(path: str, *, store: bool = False) -> Any:
    module = _sqlite_module() if store else sqlite3
    conn = module.connect(path, check_same_thread=False, isolation_level=None)
    for pragma in _STORE_PRAGMAS if store else _SQLITE_PRAGMAS:
        conn.execute(f"PRAGMA {pragma}")
    return conn


#: Expired rows; `expires_at` holds ISO text, which compares in time order.
_SQLITE_DUE = "expires_at IS NOT NULL AND expires_at <= ?"


#: The SQL of each comparison operator of a search filter.
_SQL_COMPARISONS = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}


def _sqlite_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


class ExpiringSqliteStore(SqliteUpdates, SqliteStore):
    """LangGraph's SQLite store with checked puts; expired items are deleted before each batch."""

    def _get_filter_condition(self, key: str, op: str, value: Any) -> tuple[str, list[Any]]:
        """LangGraph's conditions, except that comparisons read JSON numbers only (a string
        field would be cast to 0.0); `check_filter` has passed the key and operand."""
        if op in _SQL_COMPARISONS:
            number = f"json_extract(value, '$.{key}')"
            typed = (
                f"CASE WHEN json_type(value, '$.{key}') IN ('integer', 'real') THEN {number} END"
            )
            return f"({typed}) {_SQL_COMPARISONS[op]} ?", [float(value)]
        return super()._get_filter_condition(key, op, value)

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        """Check the puts, delete expired items, then run the operations."""
        ops = checked(ops)
        now = _sqlite_now()
        with self._cursor(transaction=False) as cur:
            due = cur.execute(f"SELECT 1 FROM store WHERE {_SQLITE_DUE} LIMIT 1", (now,))
            found = due.fetchone() is not None
        if found:
            with self._cursor(transaction=True) as cur:
                cur.execute(f"DELETE FROM store WHERE {_SQLITE_DUE}", (now,))
        return super().batch(ops)


class InlineSqliteStore(ExpiringSqliteStore):
    """`ExpiringSqliteStore` serving async callers on the event loop itself.

    A batch that needs no embedding runs its statements directly on the loop: a thread hop
    per statement (LangGraph's aiosqlite-based store) costs more than the SQLite work. A
    batch that embeds text runs in a worker thread, so the model's inference never holds
    the loop. Like the inline saver, the connection never waits for a lock: a batch refused
    because another process holds the write lock is retried after an `asyncio.sleep`, which
    is safe because every write of a batch is an upsert or a delete.
    """

    def __init__(self, conn: Any, **kwargs: Any) -> None:
        super().__init__(conn, **kwargs)
        conn.execute("PRAGMA busy_timeout=0")

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        """Run the operations, retrying while another process holds the write lock."""
        ops = list(ops)
        return retry_sync(lambda: ExpiringSqliteStore.batch(self, ops))

    def _embeds(self, ops: list[Op]) -> bool:
        if self.embeddings is None:
            return False
        return any(
            (isinstance(op, SearchOp) and op.query)
            or (isinstance(op, PutOp) and op.value is not None and op.index is not False)
            for op in ops
        )

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """Async `batch`: on the loop, or in a thread when the batch embeds text."""
        ops = list(ops)
        if self._embeds(ops):
            return await asyncio.to_thread(self.batch, ops)
        return await retry_async(lambda: ExpiringSqliteStore.batch(self, ops))


# --------------------------------------------------------------------------- postgres


class _PostgresFilters:
    """LangGraph's Postgres conditions, except that comparisons are numeric (LangGraph
    compares the text: `10 > 9` was false) and `$ne` passes over JSON nulls as the other
    stores do; `check_filter` has passed the key and operand."""

    def _get_filter_condition(self, key: str, op: str, value: Any) -> tuple[str, list[Any]]:
        if op in _SQL_COMPARISONS:
            typed = "CASE WHEN jsonb_typeof(value->%s) = 'number' THEN (value->>%s)::float8 END"
            return f"({typed}) {_SQL_COMPARISONS[op]} %s", [key, key, float(value)]
        if op == "$ne":
            return (
                "(value->%s != %s::jsonb AND jsonb_typeof(value->%s) <> 'null')",
                [key, json.dumps(value), key],
            )
        return super()._get_filter_condition(key, op, value)  # type: ignore[misc]


class CheckedPostgresStore(PostgresUpdates, _PostgresFilters, PostgresStore):
    """LangGraph's Postgres store with checked puts (it filters expired items itself)."""

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        """Check the puts, then run the operations."""
        return super().batch(checked(ops))


class AsyncCheckedPostgresStore(
    AsyncPostgresUpdates, EarlyPutCheck, _PostgresFilters, AsyncPostgresStore
):
    """Async `CheckedPostgresStore`; `breaker` bounds each call (None: no deadline)."""

    def __init__(self, *args: Any, breaker: Breaker | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.breaker = breaker

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """Check the puts, then run the operations within the deadline."""
        return await bounded(self.breaker, super().abatch(checked(ops)))


def _pg_kwargs(settings: Settings) -> dict[str, Any]:
    from psycopg.rows import dict_row

    return {
        "autocommit": True,
        "prepare_threshold": 0,
        "row_factory": dict_row,
        # A server that is down refuses or drops the connection within the deadline.
        "connect_timeout": max(1, math.ceil(settings.backend_timeout_seconds)),
    }


#: A pooled connection handed out less than this many seconds ago, with nothing waiting on
#: its socket, is handed out again without a health-check round trip. Checking every checkout
#: cost a round trip per checkpoint write (about 0.2 ms each, 1 ms a turn). A server that
#: drops a connection (restart, `pg_terminate_backend`, idle timeout) sends an error or closes
#: the socket, which makes it readable, so such a connection is still checked, and replaced,
#: before use; so is any connection idle for longer than this.
POOL_CHECK_IDLE_S = 2.0

#: When each pooled connection was last handed out; a discarded connection drops out.
_LAST_CHECKOUT: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()


def _recently_used(conn: Any) -> bool:
    """True when `conn` was handed out moments ago and the server has sent nothing since."""
    now = time.monotonic()
    last = _LAST_CHECKOUT.get(conn)
    _LAST_CHECKOUT[conn] = now
    if last is None or now - last >= POOL_CHECK_IDLE_S:
        return False
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


def _check_idle(conn: Any) -> None:
    from psycopg_pool import ConnectionPool

    if not _recently_used(conn):
        ConnectionPool.check_connection(conn)


async def _acheck_idle(conn: Any) -> None:
    from psycopg_pool import AsyncConnectionPool

    if not _recently_used(conn):
        await AsyncConnectionPool.check_connection(conn)


def _pool_options(settings: Settings, name: str) -> dict[str, Any]:
    """What the sync and the async pool share: sizes, connection options, timeouts."""
    return {
        "kwargs": _pg_kwargs(settings),
        "min_size": min(2, settings.pool_size),
        "max_size": settings.pool_size,
        "open": False,
        "name": name,
        "timeout": settings.backend_timeout_seconds,  # waiting for a free connection
    }


@functools.cache
def bounded_saver(saver_class: type[Any]) -> type[Any]:
    """`saver_class` with every call through its database's `Breaker`."""
    return type(saver_class.__name__, (BoundedSaver, saver_class), {"__module__": __name__})


def _open_timeout(settings: Settings) -> float:
    """Longest a pool waits for its first connection: a database that is down fails fast."""
    return max(1.0, settings.backend_timeout_seconds)


def _pg_pool(url: str, settings: Settings, name: str) -> Any:
    from memory.stores.pg_pool import PromptConnectionPool

    return PromptConnectionPool(url, check=_check_idle, **_pool_options(settings, name))


def _apg_pool(url: str, settings: Settings, name: str) -> Any:
    from memory.stores.pg_pool import AsyncPromptConnectionPool

    return AsyncPromptConnectionPool(url, check=_acheck_idle, **_pool_options(settings, name))


# --------------------------------------------------------------------------- checkpointers


@contextmanager
def open_checkpointer(url: str, settings: Settings | None = None) -> Iterator[BaseCheckpointSaver]:
    """Open a sync checkpointer for `url` and run its setup."""
    settings = settings or get_settings()
    kind = scheme_of(url)
    with ExitStack() as stack:
        saver: BaseCheckpointSaver
        if kind == "memory":
            saver = InMemorySaver()
        elif kind == "sqlite":
            from langgraph.checkpoint.sqlite import SqliteSaver

            conn = _sqlite_connect(sqlite_path(url))
            stack.callback(conn.close)
            saver = SqliteSaver(conn)
            saver.setup()
        elif kind == "postgres":
            from memory.stores.postgres_saver import KeyedPostgresSaver
            from memory.stores.postgres_setup import setup_lock

            pool = _pg_pool(url, settings, "memory-agent-checkpoints")
            pool.open(wait=True, timeout=_open_timeout(settings))
            stack.callback(pool.close)
            saver = KeyedPostgresSaver(pool)  # type: ignore[arg-type]
            with setup_lock(url):
                saver.setup()
        else:
            from memory.stores.redis_saver import ListingRedisSaver
            from memory.stores.redis_store import redis_client

            client = redis_client(url, settings.backend_timeout_seconds)
            stack.callback(client.close)
            saver = ListingRedisSaver(redis_client=client, ttl=saver_ttl(settings))
            saver.setup()
        yield with_retention(saver, settings.checkpoint_keep)


@asynccontextmanager
async def aopen_checkpointer(
    url: str, settings: Settings | None = None
) -> AsyncIterator[BaseCheckpointSaver]:
    """Open an async checkpointer for `url` and run its setup."""
    settings = settings or get_settings()
    kind = scheme_of(url)
    async with AsyncExitStack() as stack:
        saver: BaseCheckpointSaver
        if kind == "memory":
            saver = InMemorySaver()
        elif kind == "sqlite":
            # The sync saver's statements, run on the loop: no thread hop per statement.
            conn = _sqlite_connect(sqlite_path(url))
            stack.callback(conn.close)
            saver = InlineSqliteSaver(conn)
            retry_sync(saver.setup)
        elif kind == "postgres":
            from memory.stores.postgres_saver import AsyncKeyedPostgresSaver
            from memory.stores.postgres_setup import asetup_lock

            pool = _apg_pool(url, settings, "memory-agent-checkpoints")
            await pool.open(wait=True, timeout=_open_timeout(settings))
            stack.push_async_callback(pool.close)
            pg_saver = bounded_saver(AsyncKeyedPostgresSaver)(
                pool, breaker=breaker_for(url, settings.backend_timeout_seconds)
            )
            async with asetup_lock(url):
                await pg_saver.setup()
            saver = pg_saver
        else:
            from memory.stores.redis_saver import AsyncListingRedisSaver
            from memory.stores.redis_store import async_redis_client

            client = async_redis_client(url, settings.backend_timeout_seconds)
            stack.push_async_callback(client.aclose)
            redis_saver = await stack.enter_async_context(
                bounded_saver(AsyncListingRedisSaver)(
                    redis_client=client,
                    ttl=saver_ttl(settings),
                    breaker=breaker_for(url, settings.backend_timeout_seconds),
                )
            )
            saver = redis_saver
        yield with_retention(saver, settings.checkpoint_keep)


# --------------------------------------------------------------------------- stores


@contextmanager
def open_store(url: str, settings: Settings | None = None) -> Iterator[BaseStore]:
    """Open a sync store for `url` (with the semantic index from settings) and set it up."""
    settings = settings or get_settings()
    kind = scheme_of(url)
    index = index_config(settings)
    ttl = store_ttl(kind, settings)
    with ExitStack() as stack:
        stack.enter_context(_SchemaOf(url))
        store: BaseStore
        db: SessionDB
        if kind == "memory":
            store = ExpiringInMemoryStore(index=index, ttl=ttl)
            db = MemorySessionDB()
        elif kind == "sqlite":
            conn = _sqlite_connect(sqlite_path(url), store=True)
            stack.callback(conn.close)
            db = _sqlite_sessions(url, stack, settings)
            sqlite_store = ExpiringSqliteStore(conn, index=index, ttl=ttl)  # type: ignore[arg-type]
            sqlite_store.setup()
            store = sqlite_store
        elif kind == "postgres":
            from memory.stores.postgres_setup import setup_lock

            pool = _pg_pool(url, settings, "memory-agent-store")
            pool.open(wait=True, timeout=_open_timeout(settings))
            stack.callback(pool.close)
            pg_store = CheckedPostgresStore(pool, index=index, ttl=ttl)  # type: ignore[arg-type]
            db = PostgresSessionDB(pool)
            with setup_lock(url):
                _record(db, db.setup(), url)
                pg_store.setup()
            pg_store.start_ttl_sweeper()
            stack.callback(pg_store.stop_ttl_sweeper, 10)
            store = pg_store
        else:
            from memory.stores.redis_store import KeyedRedisStore, redis_client

            client = redis_client(url, settings.backend_timeout_seconds)
            stack.callback(client.close)
            store = KeyedRedisStore(client, index=index, ttl=ttl)  # type: ignore[arg-type]
            db = RedisSessionDB(client, settings.ttl_minutes)
            _record(db, db.setup(), url)
            store.setup()
        _attach(store, db)
        yield store


@asynccontextmanager
async def aopen_store(url: str, settings: Settings | None = None) -> AsyncIterator[BaseStore]:
    """Open an async store for `url` (with the semantic index from settings) and set it up."""
    settings = settings or get_settings()
    kind = scheme_of(url)
    index = index_config(settings)
    ttl = store_ttl(kind, settings)
    async with AsyncExitStack() as stack:
        stack.enter_context(_SchemaOf(url))
        store: BaseStore
        db: SessionDB
        if kind == "memory":
            store = ExpiringInMemoryStore(index=index, ttl=ttl)
            db = MemorySessionDB()
        elif kind == "sqlite":
            conn = _sqlite_connect(sqlite_path(url), store=True)
            stack.callback(conn.close)
            db = _sqlite_sessions(url, stack, settings)
            inline_store = InlineSqliteStore(conn, index=index, ttl=ttl)  # type: ignore[arg-type]
            retry_sync(inline_store.setup)
            store = inline_store
        elif kind == "postgres":
            from memory.stores.postgres_setup import asetup_lock

            pool = _apg_pool(url, settings, "memory-agent-store")
            await pool.open(wait=True, timeout=_open_timeout(settings))
            stack.push_async_callback(pool.close)
            breaker = breaker_for(url, settings.backend_timeout_seconds)
            pg_store = AsyncCheckedPostgresStore(pool, index=index, ttl=ttl, breaker=breaker)  # type: ignore[arg-type]
            db = PostgresSessionDB(pool, breaker)
            async with asetup_lock(url):
                _record(db, await db.asetup(), url)
                await pg_store.setup()
            await pg_store.start_ttl_sweeper()
            stack.push_async_callback(pg_store.stop_ttl_sweeper, 10)
            store = pg_store
        else:
            from memory.stores.redis_store import AsyncKeyedRedisStore, async_redis_client

            client = async_redis_client(url, settings.backend_timeout_seconds)
            stack.push_async_callback(client.aclose)
            breaker = breaker_for(url, settings.backend_timeout_seconds)
            redis_store = AsyncKeyedRedisStore(client, index=index, ttl=ttl, breaker=breaker)  # type: ignore[arg-type]
            stack.push_async_callback(redis_store.aclose)
            db = RedisSessionDB(client, settings.ttl_minutes, breaker)
            _record(db, await db.asetup(), url)
            await redis_store.setup()
            store = redis_store
        _attach(store, db)
        yield store


def shown_url(url: str) -> str:
    """`url` with its password, if any, replaced by `***` (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


class _SchemaOf:
    """Names the database in a `SchemaVersionError` raised while it is opened."""

    def __init__(self, url: str) -> None:
        self.url = url

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, SchemaVersionError):
            exc.where = f"the session database at {shown_url(self.url)}"


def _sqlite_sessions(
    url: str, stack: ExitStack | AsyncExitStack, settings: Settings
) -> SqliteSessionDB:
    """The session database in the store's SQLite file, on a connection of its own.

    Its wait for another process's write lock ends just before the database deadline: a
    call the caller has given up on must not go on waiting, or a lease it was claiming
    would be granted after its request had answered 503 and hold the thread until given
    back.
    """
    conn = _sqlite_connect(sqlite_path(url), store=True)
    stack.callback(conn.close)
    busy = settings.backend_timeout_seconds
    db = SqliteSessionDB(conn, busy_timeout=max(busy * 0.9, busy - 0.1))
    _record(db, db.setup(), url)
    return db


def _record(db: SessionDB, change: SchemaChange, url: str) -> None:
    """Keep what opening `db` did to its schema version, and log an upgrade."""
    _SCHEMA_CHANGES[db] = change
    if change.found != change.version and not change.fresh:
        logger.info("the session database at %s: %s", shown_url(url), change)


class SessionTranscript:
    """The session database as a run's `agent.transcript.TranscriptSink`: its async
    appends within the database's deadline, as every call of the graph's stores."""

    __slots__ = ("breaker", "db")

    def __init__(self, db: SessionDB) -> None:
        self.db = db
        self.breaker = db.breaker

    def append(
        self, thread_key: str, start: int, records: Sequence[dict[str, Any]], token: str | None
    ) -> None:
        self.db.append(thread_key, start, records, token)

    async def aappend(
        self, thread_key: str, start: int, records: Sequence[dict[str, Any]], token: str | None
    ) -> None:
        await bounded(self.breaker, self.db.aappend(thread_key, start, records, token))


def _attach(store: BaseStore, db: SessionDB) -> SessionDB:
    """Record `db` as the session database beside `store`, where runs on it record."""
    _SESSION_DBS[store] = db
    agent_transcript.attach(store, SessionTranscript(db))
    return db


#: What opening each session database did to its schema version.
_SCHEMA_CHANGES: weakref.WeakKeyDictionary[SessionDB, SchemaChange] = weakref.WeakKeyDictionary()

#: The session database opened beside each store the factory opened (the store itself
#: knows nothing of it), kept as long as the store is.
_SESSION_DBS: weakref.WeakKeyDictionary[BaseStore, SessionDB] = weakref.WeakKeyDictionary()


def sessions_db(store: BaseStore) -> SessionDB:
    """The session database that lives beside `store` (the factory opens one with every
    store it opens; a bare `InMemoryStore` gets an in-process one).

    Raises:
        BackendURLError: `store` was not opened by this factory and is not in memory.
    """
    db = _SESSION_DBS.get(store)
    if db is None and isinstance(store, InMemoryStore):
        db = _attach(store, MemorySessionDB())
    if db is None:
        raise BackendURLError(
            f"{type(store).__name__} has no session database: open the store with "
            "memory.stores.open_store / aopen_store"
        )
    return db


def default_store_url(database_url: str) -> str:
    """The store URL implied by a database URL.

    The same server for Postgres, Redis and memory. For SQLite a sibling file
    (`x.sqlite` -> `x.store.sqlite`): the store may need a sqlite build that loads
    sqlite-vec, and two SQLite builds must not share one WAL file.
    """
    if scheme_of(database_url) != "sqlite" or database_url.endswith(":memory:"):
        return database_url
    stem, dot, ext = database_url.rpartition(".")
    if not dot or "/" in ext:
        return database_url + ".store"
    return f"{stem}.store.{ext}"


def backend_urls(
    settings: Settings, database_url: str | None = None, store_url: str | None = None
) -> tuple[str, str]:
    """The checkpointer's and the store's URLs: explicit ones, else the settings'."""
    db = database_url or settings.resolved_database_url
    return db, store_url or settings.store_url or default_store_url(db)


@contextmanager
def open_backends(
    database_url: str | None = None,
    store_url: str | None = None,
    settings: Settings | None = None,
) -> Iterator[Backends]:
    """Open the sync checkpointer and store (explicit URLs beat the settings)."""
    settings = settings or get_settings()
    db, st = backend_urls(settings, database_url, store_url)
    _warn_unapplied_ttl(scheme_of(db), settings)
    with open_checkpointer(db, settings) as saver, open_store(st, settings) as store:
        yield Backends(saver, store, db, st)


@asynccontextmanager
async def aopen_backends(
    database_url: str | None = None,
    store_url: str | None = None,
    settings: Settings | None = None,
) -> AsyncIterator[Backends]:
    """Open the async checkpointer and store (explicit URLs beat the settings)."""
    settings = settings or get_settings()
    db, st = backend_urls(settings, database_url, store_url)
    _warn_unapplied_ttl(scheme_of(db), settings)
    async with aopen_checkpointer(db, settings) as saver, aopen_store(st, settings) as store:
        yield Backends(saver, store, db, st)


def migrate(
    database_url: str | None = None,
    store_url: str | None = None,
    settings: Settings | None = None,
) -> SchemaChange:
    """Open the backends once, which upgrades the session database in place (and runs the
    LangGraph savers' and stores' own migrations), and close them again.

    Returns:
        What happened to the session database's schema version.

    Raises:
        SchemaVersionError: The database was written by a newer release.
    """
    with open_backends(database_url, store_url, settings) as backends:
        return _SCHEMA_CHANGES.get(backends.sessions, SchemaChange(SCHEMA_VERSION, SCHEMA_VERSION))
