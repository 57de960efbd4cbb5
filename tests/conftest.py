"""Shared fixtures: every backend, real servers started by the tests, a scripted chat model."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from agent.namespaces import Owner
from memory.settings import Settings

pytest_plugins = ["tests.plugins.services", "tests.plugins.server"]
# Scenario modules shared by test files: their asserts explain failures like a test's.
pytest.register_assert_rewrite("tests.races")

#: The backends every behaviour is asserted on.
BACKENDS = ["memory", "sqlite", "postgres", "redis"]


@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database URL for each backend; the servers are shared, so tests use unique owners."""
    kind = request.param
    if kind == "memory":
        return "memory://"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'agent.sqlite'}"
    if kind == "postgres":
        return request.getfixturevalue("postgres_url")
    return request.getfixturevalue("redis_url")


@pytest.fixture
def owner() -> Owner:
    """A tenant/user pair no other test uses."""
    return Owner(tenant=f"t{uuid.uuid4().hex[:8]}", user=f"u{uuid.uuid4().hex[:8]}")


@pytest.fixture
def fresh_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Clear every MEMORY_AGENT_* setting so a test starts from the defaults."""
    import os

    for name in list(os.environ):
        if name.startswith("MEMORY_AGENT_") and not name.startswith("MEMORY_AGENT_TEST_"):
            monkeypatch.delenv(name)
    yield monkeypatch


@pytest.fixture
def backend_settings() -> Settings:
    """Deployment settings of the backend tests: local embeddings, no default TTL."""
    return Settings(embeddings="local", ttl_minutes=None, pool_size=4)


@pytest.fixture
def fresh_postgres_url(postgres_url: str) -> Iterator[str]:
    """A database of its own on the test Postgres server (no tables yet), dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    parts = urlsplit(postgres_url)
    yield urlunsplit(parts._replace(path=f"/{name}"))
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def langgraph_dev_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One `langgraph dev` for the session (started once, about 12 s); tests use own ids."""
    from tests.test_langgraph_dev import langgraph_dev

    with langgraph_dev(tmp_path_factory.mktemp("langgraph-dev")) as url:
        yield url
