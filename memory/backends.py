"""Opening the checkpointer and the store from URLs, sync and async, setup run once.

One factory per concern: `open_checkpointer`/`aopen_checkpointer` and
`open_store`/`aopen_store` pick an implementation by URL scheme, own its connections and
close them on exit; `open_backends`/`aopen_backends` open both from the settings.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.store.base import BaseStore
from langgraph.store.memory import InMemoryStore

from memory.embeddings import load_embeddings
from memory.memories import INDEX_FIELDS
from memory.settings import Settings, get_settings


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


def _sqlite_connect(path: str, *, extensions: bool = False) -> Any:
    module = _sqlite_module() if extensions else sqlite3
    conn = module.connect(path, check_same_thread=False, isolation_level=None)
    _tune_sqlite(conn)
    return conn


def _tune_sqlite(conn: Any) -> None:
    # WAL lets readers proceed during a write; NORMAL sync is durable across process crashes.
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=5000")


async def _asqlite_connect(path: str, *, extensions: bool = False) -> Any:
    import aiosqlite

    module = _sqlite_module() if extensions else sqlite3

    def connector() -> Any:
        return module.connect(path, check_same_thread=False, isolation_level=None)

    conn = await aiosqlite.Connection(connector, iter_chunk_size=64)
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=5000"):
        await conn.execute(f"PRAGMA {pragma}")
    return conn


def _pg_kwargs() -> dict[str, Any]:
    from psycopg.rows import dict_row

    return {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}


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
            from langgraph.checkpoint.postgres import PostgresSaver
            from psycopg_pool import ConnectionPool

            pool = ConnectionPool(
                url,
                kwargs=_pg_kwargs(),
                max_size=settings.pool_size,
                open=False,
                check=ConnectionPool.check_connection,
            )
            pool.open(wait=True)
            stack.callback(pool.close)
            saver = PostgresSaver(pool)  # type: ignore[arg-type]
            saver.setup()
        else:
            from langgraph.checkpoint.redis import RedisSaver

            saver = RedisSaver(redis_url=url, ttl=_redis_ttl(settings))
            saver.setup()
        yield saver


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
            from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

            conn = await _asqlite_connect(sqlite_path(url))
            stack.push_async_callback(conn.close)
            saver = AsyncSqliteSaver(conn)
            await saver.setup()
        elif kind == "postgres":
            from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
            from psycopg_pool import AsyncConnectionPool

            pool = AsyncConnectionPool(
                url,
                kwargs=_pg_kwargs(),
                max_size=settings.pool_size,
                open=False,
                check=AsyncConnectionPool.check_connection,
            )
            await pool.open(wait=True)
            stack.push_async_callback(pool.close)
            saver = AsyncPostgresSaver(pool)  # type: ignore[arg-type]
            await saver.setup()
        else:
            from langgraph.checkpoint.redis.aio import AsyncRedisSaver

            saver = await stack.enter_async_context(
                AsyncRedisSaver(redis_url=url, ttl=_redis_ttl(settings))
            )
        yield saver


def _redis_ttl(settings: Settings) -> dict[str, Any] | None:
    if settings.ttl_minutes is None:
        return None
    return {"default_ttl": settings.ttl_minutes, "refresh_on_read": True}


@contextmanager
def open_store(url: str, settings: Settings | None = None) -> Iterator[BaseStore]:
    """Open a sync store for `url` (with the semantic index from settings) and set it up."""
    settings = settings or get_settings()
    kind = scheme_of(url)
    index = index_config(settings)
    with ExitStack() as stack:
        store: BaseStore
        if kind == "memory":
            store = InMemoryStore(index=index)  # type: ignore[arg-type]
        elif kind == "sqlite":
            from langgraph.store.sqlite import SqliteStore

            conn = _sqlite_connect(sqlite_path(url), extensions=True)
            stack.callback(conn.close)
            store = SqliteStore(conn, index=index)  # type: ignore[arg-type]
            store.setup()
        elif kind == "postgres":
            from langgraph.store.postgres import PostgresStore
            from psycopg_pool import ConnectionPool

            pool = ConnectionPool(
                url,
                kwargs=_pg_kwargs(),
                max_size=settings.pool_size,
                open=False,
                check=ConnectionPool.check_connection,
            )
            pool.open(wait=True)
            stack.callback(pool.close)
            store = PostgresStore(pool, index=index)  # type: ignore[arg-type]
            store.setup()
        else:
            from langgraph.store.redis import RedisStore

            store = RedisStore(url, index=index)  # type: ignore[arg-type]
            store.setup()
        yield store


@asynccontextmanager
async def aopen_store(url: str, settings: Settings | None = None) -> AsyncIterator[BaseStore]:
    """Open an async store for `url` (with the semantic index from settings) and set it up."""
    settings = settings or get_settings()
    kind = scheme_of(url)
    index = index_config(settings)
    async with AsyncExitStack() as stack:
        store: BaseStore
        if kind == "memory":
            store = InMemoryStore(index=index)  # type: ignore[arg-type]
        elif kind == "sqlite":
            from langgraph.store.sqlite.aio import AsyncSqliteStore

            conn = await _asqlite_connect(sqlite_path(url), extensions=True)
            stack.push_async_callback(conn.close)
            store = AsyncSqliteStore(conn, index=index)  # type: ignore[arg-type]
            await store.setup()
        elif kind == "postgres":
            from langgraph.store.postgres.aio import AsyncPostgresStore
            from psycopg_pool import AsyncConnectionPool

            pool = AsyncConnectionPool(
                url,
                kwargs=_pg_kwargs(),
                max_size=settings.pool_size,
                open=False,
                check=AsyncConnectionPool.check_connection,
            )
            await pool.open(wait=True)
            stack.push_async_callback(pool.close)
            store = AsyncPostgresStore(pool, index=index)  # type: ignore[arg-type]
            await store.setup()
        else:
            from langgraph.store.redis.aio import AsyncRedisStore

            store = await stack.enter_async_context(
                AsyncRedisStore(url, index=index)  # type: ignore[arg-type]
            )
            await store.setup()
        yield store


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


def _urls(settings: Settings, database_url: str | None, store_url: str | None) -> tuple[str, str]:
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
    db, st = _urls(settings, database_url, store_url)
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
    db, st = _urls(settings, database_url, store_url)
    async with aopen_checkpointer(db, settings) as saver, aopen_store(st, settings) as store:
        yield Backends(saver, store, db, st)
