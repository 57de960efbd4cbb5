"""Pytest fixtures that provide real Postgres and Redis (Valkey) servers, started lazily."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.devservers import (
    POSTGRES_URL_ENV,
    REDIS_URL_ENV,
    ServerHandle,
    ServerStartError,
    start_postgres,
    start_redis,
)


def _serve(
    env_var: str,
    starter: Callable[[Path], ServerHandle],
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
) -> Iterator[str]:
    """Yield the URL from ``env_var`` if set, else start a server for the session.

    Args:
        env_var: Environment variable that may point at an already running server.
        starter: ``start_postgres`` or ``start_redis``.
        tmp_path_factory: Pytest's session temp-dir factory.
        name: Base name for the server's temp directory.

    Yields:
        The server URL.
    """
    url = os.environ.get(env_var)
    if url:
        yield url
        return
    failure: str | None = None
    try:
        handle = starter(tmp_path_factory.mktemp(name))
    except ServerStartError as exc:
        failure = f"{exc}\n(set {env_var} to use an existing server)"
    if failure is not None:  # outside the except block: no duplicated chained traceback
        pytest.fail(failure, pytrace=False)
    try:
        yield handle.url
    finally:
        handle.stop()


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a Postgres server with pgvector (``$MEMORY_AGENT_TEST_POSTGRES_URL`` or throwaway).

    Yields:
        A ``postgresql://`` URL usable by psycopg.
    """
    yield from _serve(POSTGRES_URL_ENV, start_postgres, tmp_path_factory, "postgres")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a Redis-compatible server with JSON and search (env override or throwaway Valkey).

    Yields:
        A ``redis://`` URL usable by redis-py.
    """
    yield from _serve(REDIS_URL_ENV, start_redis, tmp_path_factory, "redis")
