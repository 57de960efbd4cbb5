"""Tests for tests.devservers against real Postgres+pgvector and Valkey+JSON+search servers."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from redis.commands.search.field import TextField
from redis.commands.search.index_definition import IndexDefinition, IndexType
from redis.commands.search.query import Query

from tests.devservers import (
    POSTGRES_URL_ENV,
    REDIS_URL_ENV,
    STATE_FILE,
    ServerHandle,
    ServerStartError,
    start_postgres,
    start_redis,
)

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_postgres_has_working_pgvector(postgres_url: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        assert conn.execute("SELECT '[1,2,3]'::vector").fetchone() == ("[1,2,3]",)
        distance = conn.execute("SELECT '[1,2,3]'::vector <-> '[1,2,5]'::vector").fetchone()
        assert distance == (2.0,)
        extensions = conn.execute("SELECT extname FROM pg_extension").fetchall()
        assert ("vector",) in extensions


def test_redis_has_json_and_search(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    prefix = f"devservers-test:{uuid.uuid4().hex}:"
    index = f"idx-{uuid.uuid4().hex}"
    try:
        assert isinstance(client.execute_command("FT._LIST"), list)
        client.ft(index).create_index(
            [TextField("$.name", as_name="name")],
            definition=IndexDefinition(prefix=[prefix], index_type=IndexType.JSON),
        )
        doc: dict[str, Any] = {"name": "ada lovelace", "tags": ["math", "engines"], "n": 1}
        assert client.json().set(f"{prefix}1", "$", doc)
        assert client.json().get(f"{prefix}1") == doc
        assert index in client.execute_command("FT._LIST")
        result = client.ft(index).search(Query("@name:lovelace"))
        assert [d.id for d in result.docs] == [f"{prefix}1"]
    finally:
        client.ft(index).dropindex(delete_documents=True)
        client.close()


def test_stop_ends_process_and_removes_directory(tmp_path: Path) -> None:
    handle = start_redis(tmp_path)
    assert handle.log_path.is_file()
    assert redis.Redis.from_url(handle.url).ping()
    handle.stop()
    assert not handle.is_running()
    assert not handle.work_dir.exists()
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(handle.url, socket_connect_timeout=1).ping()
    handle.stop()  # idempotent


def test_postgres_start_failure_reports_log_tail(tmp_path: Path) -> None:
    with pytest.raises(ServerStartError, match="no_such_setting") as info:
        start_postgres(tmp_path, extra_args=["--no_such_setting=1"])
    assert "tail of" in str(info.value)


def test_redis_start_failure_reports_log_tail(tmp_path: Path) -> None:
    with pytest.raises(ServerStartError, match="no-such-directive") as info:
        start_redis(tmp_path, extra_args=["--no-such-directive", "1"])
    assert "tail of" in str(info.value)


def _cli(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.devservers", *args, "--dir", str(state_dir)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _env_lines(stdout: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in stdout.splitlines() if "=" in line)
    return {key: value for key, value in pairs if not key.startswith("#")}


def test_cli_start_status_stop_round_trip(tmp_path: Path) -> None:
    state_dir = tmp_path / "services"
    try:
        started = _cli(state_dir, "start")
        assert started.returncode == 0, started.stderr
        urls = _env_lines(started.stdout)
        pg_url, redis_url = urls[POSTGRES_URL_ENV], urls[REDIS_URL_ENV]
        assert "export MEMORY_AGENT_DATABASE_URL=" in started.stdout

        with psycopg.connect(pg_url) as conn:
            assert conn.execute("SELECT '[1,2]'::vector").fetchone() == ("[1,2]",)
        assert redis.Redis.from_url(redis_url).ping()

        state = json.loads((state_dir / STATE_FILE).read_text())
        handles = [ServerHandle.from_dict(entry) for entry in state["servers"].values()]
        assert {h.kind for h in handles} == {"postgres", "redis"}
        assert all(h.is_running() for h in handles)

        again = _cli(state_dir, "start")
        assert again.returncode == 0, again.stderr
        assert _env_lines(again.stdout) == urls
        assert "already running" in again.stderr

        status = _cli(state_dir, "status")
        assert status.returncode == 0, status.stdout
        assert "postgres: up" in status.stdout
        assert "redis: up" in status.stdout
    finally:
        stopped = _cli(state_dir, "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert "postgres: stopped" in stopped.stdout
    assert "redis: stopped" in stopped.stdout
    assert not any(h.is_running() for h in handles)
    assert not any(h.work_dir.exists() for h in handles)
    assert not (state_dir / STATE_FILE).exists()

    down = _cli(state_dir, "status")
    assert down.returncode != 0
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(pg_url, connect_timeout=2)
