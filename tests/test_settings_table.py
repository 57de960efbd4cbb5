"""The README's settings table, held to `memory.settings.Settings`, and what each setting does.

Every row's variables and documented defaults must match the settings object, every setting
must have a row, and every row must name the tests that show its value changing behaviour
(`BEHAVIOUR`); the settings no other test exercised are tested here.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import sqlite3
import subprocess
import sys
import time
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from langchain_core.messages import AIMessage, SystemMessage
from langchain_core.messages.utils import count_tokens_approximately

from agent import OfflineChatModel, build_graph, prompts
from agent.context import Context
from agent.model import ModelConfigError, load_chat_model
from agent.namespaces import Owner
from memory.embeddings import (
    LOCAL_DIMS,
    EmbeddingsUnavailableError,
    LocalEmbeddings,
    load_embeddings,
)
from memory.errors import ConflictError
from memory.sessions import SessionManager
from memory.settings import Settings
from memory.stores.factory import aopen_backends, default_store_url, index_config, open_backends
from server.app import create_app
from server.auth import DEV_OWNER
from server.cli import main as cli_main
from tests import readme
from tests.devservers import start_redis
from tests.plugins.server import fresh_id, running
from tests.scripted import ScriptedChatModel

ROOT = Path(__file__).resolve().parents[1]

#: Settings with no row: the owner a graph run acts for when no session service gives one
#: (`langgraph dev`, a bare `graph.invoke`); the server and the Python API always give one.
UNDOCUMENTED = {"user_id", "tenant_id"}

_HERE = "tests/test_settings_table.py"

#: For each documented variable, tests in which an explicit value changes what happens.
BEHAVIOUR: dict[str, tuple[str, ...]] = {
    "MEMORY_AGENT_MODEL": (
        f"{_HERE}::test_model_is_offline_by_default",
        f"{_HERE}::test_a_provider_model_picks_its_class_or_names_the_extra",
        "tests/test_offline_model.py::test_slow_spec_paces_the_same_reply",
    ),
    "MEMORY_AGENT_EMBEDDINGS": (
        f"{_HERE}::test_embeddings_local_by_default_none_turns_semantic_search_off",
        f"{_HERE}::test_embeddings_from_a_provider_name_the_value_and_the_extra",
    ),
    "MEMORY_AGENT_DATABASE_URL": (
        f"{_HERE}::test_the_default_database_is_sqlite_under_the_data_dir",
        "tests/test_cli.py::test_one_shot_messages_share_a_thread_across_processes",
    ),
    "MEMORY_AGENT_STORE_URL": (f"{_HERE}::test_store_url_moves_the_store_alone",),
    "MEMORY_AGENT_DATA_DIR": (
        f"{_HERE}::test_the_default_database_is_sqlite_under_the_data_dir",
        "tests/test_readme_examples.py::test_serve_listens_where_the_settings_say",
    ),
    "MEMORY_AGENT_HOST": (
        "tests/test_readme_examples.py::test_serve_listens_where_the_settings_say",
    ),
    "MEMORY_AGENT_PORT": (
        "tests/test_readme_examples.py::test_serve_listens_where_the_settings_say",
    ),
    "MEMORY_AGENT_WORKERS": (
        f"{_HERE}::test_workers_setting_is_what_serve_starts",
        "tests/test_workers.py::test_two_workers_on_sqlite_share_runs_limits_and_creates",
    ),
    "MEMORY_AGENT_METRICS": (
        "tests/test_observability.py::test_metrics_off_is_a_404_and_keys_guard_it",
    ),
    "MEMORY_AGENT_LOG_FORMAT": (
        "tests/test_observability.py::test_two_workers_count_together_and_log_json_lines",
    ),
    "MEMORY_AGENT_LEASE_SECONDS": (
        "tests/test_scale_out.py::test_a_killed_run_frees_its_thread_within_the_lease",
    ),
    "MEMORY_AGENT_RUN_CONCURRENCY": (
        "tests/test_lg_runs_durable.py::test_run_concurrency_bounds_the_runs_a_process_executes",
    ),
    "MEMORY_AGENT_SHUTDOWN_GRACE_SECONDS": (
        "tests/test_lg_runs_cluster.py::test_sigterm_lets_runs_within_the_grace_finish",
        "tests/test_lg_runs_cluster.py::test_sigterm_hands_runs_past_the_grace_to_another_process",
    ),
    "MEMORY_AGENT_SHUTDOWN_DELAY_SECONDS": (
        "tests/test_lg_runs_cluster.py::test_sigterm_lets_runs_within_the_grace_finish",
    ),
    "MEMORY_AGENT_RUN_EVENTS_KEEP_SECONDS": (
        "tests/test_lg_runs_durable.py::"
        "test_run_events_keep_seconds_zero_drops_the_events_once_a_run_ends",
        "tests/test_lg_runs_durable.py::test_a_background_run_is_rejoined_from_any_event",
    ),
    "MEMORY_AGENT_TOKEN_BUDGET": (
        "tests/test_server_threads.py::test_summarised_messages_stay_in_the_transcript",
    ),
    "MEMORY_AGENT_CHECKPOINT_KEEP": (f"{_HERE}::test_checkpoint_keep_bounds_the_history",),
    "MEMORY_AGENT_DURABILITY": (
        f"{_HERE}::test_durability_exit_writes_once_and_a_killed_turn_restarts",
    ),
    "MEMORY_AGENT_POOL_SIZE": (f"{_HERE}::test_pool_size_sizes_both_postgres_pools",),
    "MEMORY_AGENT_BACKEND_TIMEOUT_SECONDS": (
        "tests/test_outages.py::test_a_database_outage_answers_503_in_time_and_recovers",
    ),
    "MEMORY_AGENT_HEADER_TIMEOUT_SECONDS": (
        "tests/test_server_connections.py::test_headers_sent_byte_by_byte_are_cut_at_the_deadline",
        "tests/test_server_connections.py::test_explicit_settings_set_the_limits_of_a_single_process",
    ),
    "MEMORY_AGENT_BODY_TIMEOUT_SECONDS": (
        "tests/test_server_connections.py::test_a_body_slower_than_the_deadline_gets_408",
    ),
    "MEMORY_AGENT_MAX_HEADER_BYTES": (
        "tests/test_server_connections.py::test_a_one_megabyte_header_is_refused_with_431",
        "tests/test_server_connections.py::test_explicit_settings_set_the_limits_of_a_single_process",
    ),
    "MEMORY_AGENT_MAX_HEADERS": (
        "tests/test_server_connections.py::test_twenty_thousand_headers_are_refused_with_431",
        "tests/test_server_connections.py::test_explicit_settings_set_the_limits_of_a_single_process",
    ),
    "MEMORY_AGENT_TTL_MINUTES": (
        "tests/test_backends.py::test_every_redis_key_expires_when_a_ttl_is_set",
        f"{_HERE}::test_redis_ttl_is_refreshed_by_reads",
    ),
    "MEMORY_AGENT_CORS_ORIGINS": (
        "tests/test_server_ui.py::test_cors_origins_are_read_from_the_environment",
    ),
    "MEMORY_AGENT_API_KEYS": (
        "tests/test_server_threads.py::test_missing_or_unknown_key_is_401",
        "tests/test_server.py::test_dev_mode_acts_as_local_without_a_key",
    ),
    "MEMORY_AGENT_AUTH": (
        "tests/test_auth_modes.py::test_jwt_mode_over_http_answers_401_with_the_reason",
        "tests/test_auth_modes.py::test_gateway_mode_needs_the_shared_secret",
        "tests/test_auth_modes.py::test_a_bad_combination_of_auth_settings_is_refused",
        "tests/test_auth_modes.py::test_a_langgraph_sdk_auth_handler_names_the_caller",
    ),
    "MEMORY_AGENT_JWT_SECRET": (
        "tests/test_auth_modes.py::test_jwt_mode_over_http_answers_401_with_the_reason",
    ),
    "MEMORY_AGENT_JWT_JWKS_URL": (
        "tests/test_auth_modes.py::test_jwks_keys_verify_and_a_rotated_key_is_fetched_once",
    ),
    "MEMORY_AGENT_JWT_ISSUER": (
        "tests/test_auth_modes.py::test_issuer_and_audience_are_checked_only_when_set",
    ),
    "MEMORY_AGENT_JWT_AUDIENCE": (
        "tests/test_auth_modes.py::test_issuer_and_audience_are_checked_only_when_set",
    ),
    "MEMORY_AGENT_JWT_TENANT_CLAIM": (
        "tests/test_auth_modes.py::test_claims_the_settings_name_and_the_default_tenant",
    ),
    "MEMORY_AGENT_JWT_USER_CLAIM": (
        "tests/test_auth_modes.py::test_claims_the_settings_name_and_the_default_tenant",
    ),
    "MEMORY_AGENT_JWT_DEFAULT_TENANT": (
        "tests/test_auth_modes.py::test_claims_the_settings_name_and_the_default_tenant",
    ),
    "MEMORY_AGENT_JWT_LEEWAY_SECONDS": (
        "tests/test_auth_modes.py::test_leeway_accepts_a_token_just_expired",
    ),
    "MEMORY_AGENT_JWT_JWKS_REFRESH_SECONDS": (
        "tests/test_auth_modes.py::test_jwks_keys_verify_and_a_rotated_key_is_fetched_once",
    ),
    "MEMORY_AGENT_JWT_JWKS_TIMEOUT_SECONDS": (
        "tests/test_auth_modes.py::test_an_unreachable_or_hung_jwks_is_a_503_within_the_timeout",
    ),
    "MEMORY_AGENT_GATEWAY_SECRET": (
        "tests/test_auth_modes.py::test_gateway_mode_needs_the_shared_secret",
    ),
    "MEMORY_AGENT_GATEWAY_TENANT_HEADER": (
        "tests/test_auth_modes.py::test_gateway_mode_needs_the_shared_secret",
    ),
    "MEMORY_AGENT_GATEWAY_USER_HEADER": (
        "tests/test_auth_modes.py::test_gateway_mode_needs_the_shared_secret",
    ),
    "MEMORY_AGENT_IDLE_TIMEOUT_HOURS": (
        "tests/test_server_limits.py::test_idle_session_expires_on_read",
    ),
    "MEMORY_AGENT_SWEEP_INTERVAL_SECONDS": (f"{_HERE}::test_the_sweeper_runs_every_interval",),
    "MEMORY_AGENT_MAX_OPEN_SESSIONS": (
        "tests/test_server_limits.py::test_open_session_cap_is_409_until_one_ends",
    ),
    "MEMORY_AGENT_RUNS_PER_MINUTE": (
        "tests/test_server_limits.py::test_rate_limit_is_per_user_with_retry_after",
    ),
    "MEMORY_AGENT_MAX_MESSAGE_CHARS": (
        "tests/test_server_limits.py::test_bad_input_is_a_4xx_naming_the_problem",
    ),
    "MEMORY_AGENT_MAX_MESSAGES_PER_REQUEST": (
        "tests/test_server_limits.py::test_bad_input_is_a_4xx_naming_the_problem",
    ),
    "MEMORY_AGENT_MAX_BODY_BYTES": (
        "tests/test_server_limits.py::test_bad_input_is_a_4xx_naming_the_problem",
        "tests/test_attachments.py::test_the_body_limit_makes_room_for_attachments_on_runs_only",
    ),
    "MEMORY_AGENT_MAX_ATTACHMENT_BYTES": (
        "tests/test_attachments.py::test_too_much_binary_data_is_a_422_naming_the_setting",
        "tests/test_attachments.py::test_the_body_limit_makes_room_for_attachments_on_runs_only",
    ),
    "MEMORY_AGENT_STATE_MESSAGES": (
        "tests/test_lg_api.py::test_values_never_jump_back_when_the_window_folds",
    ),
    "MEMORY_AGENT_MIN_MESSAGES_FOR_SUMMARY": (
        "tests/test_server_threads.py::test_end_of_a_short_session_saves_no_summary",
    ),
    "MEMORY_AGENT_TOOLS": (f"{_HERE}::test_tools_and_their_timeout_come_from_the_settings",),
    "MEMORY_AGENT_TOOL_TIMEOUT_SECONDS": (
        f"{_HERE}::test_tools_and_their_timeout_come_from_the_settings",
    ),
    "MEMORY_AGENT_APPROVE_TOOLS": ("tests/test_tool_approval.py::test_an_approved_call_runs",),
    "MEMORY_AGENT_GRAPH": ("tests/test_own_graph.py::test_served_by_memory_agent_serve",),
    "MEMORY_AGENT_KEEP_RATIO": (f"{_HERE}::test_keep_ratio_and_summary_max_tokens_shape_the_fold",),
    "MEMORY_AGENT_SUMMARY_MAX_TOKENS": (
        f"{_HERE}::test_keep_ratio_and_summary_max_tokens_shape_the_fold",
    ),
    "MEMORY_AGENT_MEMORY_SEARCH_LIMIT": (
        f"{_HERE}::test_system_prompt_and_memory_search_limit_shape_the_prompt",
    ),
    "MEMORY_AGENT_SYSTEM_PROMPT": (
        f"{_HERE}::test_system_prompt_and_memory_search_limit_shape_the_prompt",
    ),
}

#: How the table writes a default that is not a literal value.
_WORDS: dict[str, Any] = {"unset": None, "empty": "", "derived": None, "built in": None}


def _field(variable: str) -> str:
    return variable.removeprefix("MEMORY_AGENT_").lower()


def _documented() -> dict[str, str]:
    """Each documented variable and its default as the table writes it."""
    table: dict[str, str] = {}
    for row in readme.settings_rows():
        for name, default in zip(row.names, row.defaults, strict=True):
            assert name not in table, f"{name} has two rows"
            table[name] = default
    return table


def _matches(documented: str, actual: Any) -> bool:
    if documented in _WORDS:
        return actual == _WORDS[documented]
    if isinstance(actual, bool):
        return documented == str(actual).lower()
    if isinstance(actual, int | float):
        return float(documented) == actual
    return documented == str(actual)


# -- the table -------------------------------------------------------------------------------


def test_every_row_names_a_setting_and_its_default(fresh_env: pytest.MonkeyPatch) -> None:
    settings = Settings()
    documented = _documented()
    assert documented, "no settings table in the README"
    for name, default in documented.items():
        field = _field(name)
        assert field in Settings.model_fields, f"{name} is documented but is no setting"
        if field == "database_url":  # documented as what it resolves to
            assert settings.database_url is None
            assert default == settings.resolved_database_url, name
        else:
            assert _matches(default, getattr(settings, field)), (name, default)
    assert default_store_url(settings.resolved_database_url) == (
        "sqlite:///.data/memory-agent.store.sqlite"
    )
    assert Context.from_settings(settings).system_prompt == prompts.SYSTEM_PROMPT


def test_every_setting_is_documented() -> None:
    documented = {_field(name) for name in _documented()}
    assert set(Settings.model_fields) - UNDOCUMENTED - documented == set()


def test_every_row_has_a_behaviour_test() -> None:
    assert set(BEHAVIOUR) == set(_documented())
    for tests in BEHAVIOUR.values():
        for node in tests:
            path, name = node.split("::")
            source = (ROOT / path).read_text(encoding="utf-8")
            assert re.search(rf"^(async )?def {name}\(", source, re.M), f"no test {node}"


# -- the model and the embeddings ---------------------------------------------------------------

#: The README's `provider:model` examples and the chat model class each one loads.
_PROVIDERS = {
    "openai:gpt-4o-mini": "ChatOpenAI",
    "anthropic:claude-sonnet-4-5": "ChatAnthropic",
    "ollama:llama3.2": "ChatOllama",
}


def _extra(provider: str) -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return project["optional-dependencies"][provider]


def test_model_is_offline_by_default(fresh_env: pytest.MonkeyPatch) -> None:
    model = load_chat_model(Settings().model)
    assert isinstance(model, OfflineChatModel)
    assert model.pace_seconds == 0


@pytest.mark.parametrize("spec", sorted(_PROVIDERS))
def test_a_provider_model_picks_its_class_or_names_the_extra(
    spec: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert f"`{spec}`" in readme.text() or f"MEMORY_AGENT_MODEL={spec}" in readme.text()
    provider = spec.split(":", 1)[0]
    package = f"langchain-{provider}"
    assert [r for r in _extra(provider) if r.startswith(package)], f"no {package} in the extra"
    if importlib.util.find_spec(package.replace("-", "_")) is not None:
        monkeypatch.setenv(f"{provider.upper()}_API_KEY", "not-a-real-key")  # no call is made
        assert type(load_chat_model(spec)).__name__ == _PROVIDERS[spec]
        return
    with pytest.raises(ModelConfigError) as raised:
        load_chat_model(spec)
    message = str(raised.value)
    assert f"MEMORY_AGENT_MODEL={spec!r}" in message
    assert _PROVIDERS[spec] in message and package in message  # the provider's class was chosen
    assert f"pip install 'memory-agent[{provider}]'" in message


async def test_embeddings_local_by_default_none_turns_semantic_search_off(
    fresh_env: pytest.MonkeyPatch, owner: Owner
) -> None:
    default = index_config(Settings())
    assert default is not None
    assert default["dims"] == LOCAL_DIMS and isinstance(default["embed"], LocalEmbeddings)
    facts = {"allergy": "I am allergic to penicillin", "shipping": "I prefer express shipping"}
    for embeddings, semantic in (("local", True), ("none", False)):
        settings = Settings(database_url="memory://", embeddings=embeddings)
        async with aopen_backends(settings=settings) as backends:
            sessions = SessionManager(build_graph(backends.checkpointer, backends.store))
            for key, fact in facts.items():
                await sessions.asave_memory(owner, key, fact)
            found = await sessions.alist_memories(owner, query="which antibiotics should I avoid?")
        assert sorted(m["key"] for m in found) == sorted(facts)
        assert all("score" in m for m in found) is semantic
        if semantic:
            assert found[0]["key"] == "allergy"


def test_embeddings_from_a_provider_name_the_value_and_the_extra() -> None:
    spec = "openai:text-embedding-3-small"
    if importlib.util.find_spec("langchain_openai") is None:
        with pytest.raises(EmbeddingsUnavailableError) as raised:
            load_embeddings(spec)
        message = str(raised.value)
        assert f"MEMORY_AGENT_EMBEDDINGS={spec!r}" in message and "langchain-openai" in message
        assert "pip install 'memory-agent[openai]'" in message
    with pytest.raises(EmbeddingsUnavailableError, match="MEMORY_AGENT_EMBEDDINGS='nowhere:x'"):
        load_embeddings("nowhere:x")  # a provider init_embeddings does not know
    with pytest.raises(EmbeddingsUnavailableError, match="'local', 'none' or 'provider:model'"):
        load_embeddings("nonsense")


# -- where the data lives ---------------------------------------------------------------------


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def test_the_default_database_is_sqlite_under_the_data_dir(
    fresh_env: pytest.MonkeyPatch, tmp_path: Path, owner: Owner
) -> None:
    fresh_env.chdir(tmp_path)
    fresh_env.setenv("MEMORY_AGENT_EMBEDDINGS", "none")
    with open_backends(settings=Settings()) as backends:
        assert (backends.database_url, backends.store_url) == (
            "sqlite:///.data/memory-agent.sqlite",
            "sqlite:///.data/memory-agent.store.sqlite",
        )
        SessionManager(build_graph(backends.checkpointer, backends.store)).run(
            owner, "t", [{"role": "user", "content": "hello"}]
        )
    assert {p.name for p in (tmp_path / ".data").glob("*.sqlite")} == {
        "memory-agent.sqlite",
        "memory-agent.store.sqlite",
    }

    fresh_env.setenv("MEMORY_AGENT_DATA_DIR", str(tmp_path / "elsewhere"))
    with open_backends(settings=Settings()) as backends:
        assert (
            backends.database_url == f"sqlite:///{tmp_path / 'elsewhere' / 'memory-agent.sqlite'}"
        )
    assert (tmp_path / "elsewhere" / "memory-agent.sqlite").exists()


def test_store_url_moves_the_store_alone(
    fresh_env: pytest.MonkeyPatch, tmp_path: Path, owner: Owner
) -> None:
    checkpoints, store = tmp_path / "checkpoints.sqlite", tmp_path / "memories.sqlite"
    fresh_env.setenv("MEMORY_AGENT_DATABASE_URL", f"sqlite:///{checkpoints}")
    fresh_env.setenv("MEMORY_AGENT_STORE_URL", f"sqlite:///{store}")
    fresh_env.setenv("MEMORY_AGENT_EMBEDDINGS", "none")
    with open_backends(settings=Settings()) as backends:
        assert backends.store_url == f"sqlite:///{store}"
        sessions = SessionManager(build_graph(backends.checkpointer, backends.store))
        sessions.run(owner, "t", [{"role": "user", "content": "My name is Sam."}])
    # The checkpoints stay in the database; memories and the session database move.
    assert "checkpoints" in _tables(checkpoints) and "store" not in _tables(checkpoints)
    assert "store" in _tables(store) and "checkpoints" not in _tables(store)
    assert not (tmp_path / "checkpoints.store.sqlite").exists()
    with sqlite3.connect(store) as conn:
        assert conn.execute("SELECT count(*) FROM store WHERE key = 'name'").fetchone() == (1,)
    # Derived when unset: the same server, or a sibling file for SQLite.
    for url in ("memory://", "postgresql://u@h/db", "redis://h:6379/0"):
        assert default_store_url(url) == url
    assert default_store_url("sqlite:///x/a.sqlite") == "sqlite:///x/a.store.sqlite"


async def test_pool_size_sizes_both_postgres_pools(postgres_url: str) -> None:
    for size in (Settings().pool_size, 3):
        settings = Settings(embeddings="none", pool_size=size)
        async with aopen_backends(postgres_url, settings=settings) as backends:
            pools = [backends.checkpointer.conn, backends.store.conn]  # type: ignore[attr-defined]
            assert [pool.max_size for pool in pools] == [size, size]


# -- serving --------------------------------------------------------------------------------


def test_workers_setting_is_what_serve_starts(
    fresh_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fresh_env.setenv("MEMORY_AGENT_DATABASE_URL", "memory://")
    fresh_env.setenv("MEMORY_AGENT_WORKERS", "3")
    assert cli_main(["serve"]) == 2  # refused before anything binds
    assert "--workers 3 needs a database the processes share" in capsys.readouterr().err


async def _until(check: Callable[[], Awaitable[bool]], what: str, limit: float = 20.0) -> None:
    """Wait until `check` holds; `limit` is a generous bound against a hang, not a timing."""
    try:
        async with asyncio.timeout(limit):
            while not await check():
                await asyncio.sleep(0.02)
    except TimeoutError:
        pytest.fail(f"waited {limit} s for {what}")


def _later(hours: float) -> Callable[[], datetime]:
    """A clock `hours` ahead of the real one."""
    return lambda: datetime.now(UTC) + timedelta(hours=hours)


async def test_the_sweeper_runs_every_interval() -> None:
    settings = Settings(
        database_url="memory://",
        embeddings="none",
        api_keys="",
        idle_timeout_hours=1,
        sweep_interval_seconds=0.05,
    )
    app = create_app(settings)
    async with running(app) as client:
        sessions: SessionManager = app.state.sessions
        db = app.state.backends.sessions
        for hours in (2, 4):  # twice: the loop keeps sweeping, it does not stop after one
            thread = fresh_id("t")
            assert (await client.post("/threads", json={"thread_id": thread})).status_code == 201
            sessions.clock = _later(hours)

            async def ended(thread: str = thread) -> bool:
                record = await db.aget(DEV_OWNER, thread)  # the raw record: no expiry on read
                return record["status"] == "ended"

            await _until(ended, "the sweeper to expire the idle session")
            assert (await db.aget(DEV_OWNER, thread))["end_reason"] == "idle"


# -- checkpoints ----------------------------------------------------------------------------


async def test_checkpoint_keep_bounds_the_history(owner: Owner) -> None:
    lengths = {}
    for keep in (Settings().checkpoint_keep, 3, 0):
        settings = Settings(database_url="memory://", embeddings="none", checkpoint_keep=keep)
        async with aopen_backends(settings=settings) as backends:
            sessions = SessionManager(build_graph(backends.checkpointer, backends.store))
            for turn in range(16):
                await sessions.arun(owner, "t", [{"role": "user", "content": f"turn {turn}"}])
            lengths[keep] = len([c async for c in sessions.ahistory(owner, "t")])
    # A thread is pruned back to `keep` after every `keep` checkpoints written to it.
    assert 3 <= lengths[3] <= 2 * 3
    assert 20 <= lengths[20] <= 2 * 20
    assert lengths[0] >= 3 * 16 > 2 * 20  # 0 keeps every checkpoint: 3 or more a turn


# Runs two turns on SQLite, the second calling a tool that ends the process the way a kill
# would (nothing after it runs: no flush, no exit handler), once per durability, each in a
# forked child of one interpreter so the imports are paid once.
_KILLED_TURN = """
import os, sys
from langchain_core.messages import AIMessage
from agent import build_graph
from agent.namespaces import Owner
from memory.sessions import SessionManager
from memory.settings import Settings
from memory.stores.factory import open_backends
from tests.scripted import ScriptedChatModel

def order_status(order_id: str) -> str:
    '''Look up an order by its id.'''
    os._exit(0)

def turns(url, durability):
    settings = Settings(
        embeddings="none", checkpoint_keep=0, durability=durability, lease_seconds=0.5
    )
    call = {"id": "c1", "name": "order_status", "args": {"order_id": "A-1"}}
    model = ScriptedChatModel(replies=[AIMessage("Hello!"), AIMessage("", tool_calls=[call])])
    with open_backends(url, settings=settings) as backends:
        graph = build_graph(
            backends.checkpointer, backends.store, chat_model=model, tools=[order_status]
        )
        sessions = SessionManager.from_settings(graph, settings)
        owner = Owner("acme", "sam")
        sessions.run(owner, "t", [{"role": "user", "content": "hello"}])
        sessions.run(owner, "t", [{"role": "user", "content": "is order A-1 ready?"}])

for durability, url in zip(sys.argv[1::2], sys.argv[2::2]):
    child = os.fork()
    if child == 0:
        try:
            turns(url, durability)
        finally:
            os._exit(1)  # the tool should have ended the child
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0, (durability, status)
"""


def _resume(url: str) -> tuple[list[str], int, list[str]]:
    """After the kill: the state's messages, the checkpoints, and the transcript after the
    next turn (once the dead run's half-second lease has run out)."""
    owner = Owner("acme", "sam")
    settings = Settings(embeddings="none", checkpoint_keep=0)
    with open_backends(url, settings=settings) as backends:
        sessions = SessionManager(build_graph(backends.checkpointer, backends.store))
        _, snapshot = sessions.get_state(owner, "t")
        state = [str(m.content) for m in snapshot.values["messages"]]
        count = len(list(backends.checkpointer.list(sessions.config(owner, "t"))))
        for _ in range(400):  # at most ~20 s, against a hang
            try:
                sessions.run(owner, "t", [{"role": "user", "content": "hello again"}])
                break
            except ConflictError:  # the killed run's lease has not run out yet
                time.sleep(0.05)
        items, _ = sessions.get_messages(owner, "t", limit=100)
    return state, count, [str(m["content"]) for m in items]


@pytest.mark.slow
def test_durability_exit_writes_once_and_a_killed_turn_restarts(tmp_path: Path) -> None:
    urls = {mode: f"sqlite:///{tmp_path / mode}.sqlite" for mode in ("exit", "sync")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORY_AGENT_")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-c", _KILLED_TURN, *[part for pair in urls.items() for part in pair]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr

    state, checkpoints, transcript = _resume(urls["exit"])
    # One checkpoint for the finished turn, none for the killed one: it left nothing to
    # resume, so the next turn starts again from the first turn's end.
    assert checkpoints == 1
    assert state == ["hello", "Hello!"]
    assert transcript[:2] == ["hello", "Hello!"] and transcript[2] == "hello again"
    assert "is order A-1 ready?" not in transcript

    state, checkpoints, transcript = _resume(urls["sync"])
    # A checkpoint per step: the killed turn's question and its cut tool call were saved,
    # and the next turn resumes after them.
    assert checkpoints > 3
    assert state == ["hello", "Hello!", "is order A-1 ready?", ""]
    assert transcript[:3] == ["hello", "Hello!", "is order A-1 ready?"]
    assert "hello again" in transcript


# -- Redis TTL --------------------------------------------------------------------------------


async def test_redis_ttl_is_refreshed_by_reads(tmp_path: Path) -> None:
    handle = start_redis(tmp_path)  # a server of its own: every key on it is this test's
    try:
        client = redis.Redis.from_url(handle.url)
        owner = Owner("acme", "sam")
        settings = Settings(embeddings="none", ttl_minutes=5)
        async with aopen_backends(handle.url, settings=settings) as backends:
            sessions = SessionManager(build_graph(backends.checkpointer, backends.store))
            await sessions.arun(owner, "t", [{"role": "user", "content": "My name is Sam."}])
            await sessions.asave_memory(owner, "allergy", "penicillin")
            for key in client.scan_iter(count=1000):
                client.pexpire(key, 20_000)  # as if most of the five minutes had passed

            def refreshed() -> set[str]:
                return {
                    key.decode()
                    for key in client.scan_iter(count=1000)
                    if client.pttl(key) > 60_000
                }

            await sessions.aget_state(owner, "t")
            assert "checkpoint_latest:acme/sam/t:__empty__" in refreshed()
            await sessions.aget_messages(owner, "t")
            assert "memory_agent:transcript:acme/sam/t" in refreshed()
            await sessions.aget(owner, "t")
            assert "memory_agent:session:acme/sam/t" in refreshed()
            await sessions.alist(owner)
            assert "memory_agent:sessions:acme/sam" in refreshed()
            before = refreshed()
            assert (await sessions.aget_memory(owner, "allergy"))["value"] == "penicillin"
            (memory_key,) = refreshed() - before
            assert memory_key.startswith("memory-agent:store:")
        assert all(
            client.pttl(key) <= 5 * 60_000
            for key in client.scan_iter(count=1000)
            if key != b"memory_agent:schema"  # kept as long as the data it describes
        )
        client.close()
    finally:
        handle.stop()


# -- the run context -------------------------------------------------------------------------


def test_context_defaults_follow_the_environment(fresh_env: pytest.MonkeyPatch) -> None:
    values = {
        "KEEP_RATIO": "0.3",
        "SUMMARY_MAX_TOKENS": "64",
        "MEMORY_SEARCH_LIMIT": "2",
        "SYSTEM_PROMPT": "Bakery bot. {user_memories}",
        "TOOL_TIMEOUT_SECONDS": "1.5",
    }
    for name, value in values.items():
        fresh_env.setenv(f"MEMORY_AGENT_{name}", value)
    expected = Context(
        keep_ratio=0.3,
        summary_max_tokens=64,
        memory_search_limit=2,
        system_prompt="Bakery bot. {user_memories}",
        tool_timeout_seconds=1.5,
    )
    assert Context() == expected == Context.from_settings(Settings())


@asynccontextmanager
async def _service(settings: Settings, model: Any = None) -> AsyncIterator[SessionManager]:
    """The session service opened from `settings` as the server opens it."""
    async with aopen_backends(settings=settings) as backends:
        graph = build_graph(backends.checkpointer, backends.store, chat_model=model)
        yield SessionManager.from_settings(graph, settings)


async def test_system_prompt_and_memory_search_limit_shape_the_prompt(owner: Owner) -> None:
    prompts_seen = {}
    for limit, prompt in (
        (Settings().memory_search_limit, None),
        (1, "Bakery bot.\n{user_memories}"),
    ):
        model = ScriptedChatModel(replies=[AIMessage("ok")])
        settings = Settings(
            database_url="memory://",
            embeddings="none",
            memory_search_limit=limit,
            system_prompt=prompt,
        )
        async with _service(settings, model) as sessions:
            for fact in ("likes rye", "likes spelt", "likes oats"):
                await sessions.asave_memory(owner, fact.replace(" ", "-"), fact)
            await sessions.arun(owner, "t", [{"role": "user", "content": "hello"}])
        system = model.prompts[0][0]
        assert isinstance(system, SystemMessage)
        prompts_seen[limit] = str(system.content)
    default, custom = prompts_seen[5], prompts_seen[1]
    assert default.startswith(prompts.SYSTEM_PROMPT.split("\n", 1)[0])
    assert sum(f"likes {g}" in default for g in ("rye", "spelt", "oats")) == 3
    assert custom.startswith("Bakery bot.\n")
    assert sum(f"likes {g}" in custom for g in ("rye", "spelt", "oats")) == 1


async def test_keep_ratio_and_summary_max_tokens_shape_the_fold(owner: Owner) -> None:
    folds = {}
    for keep_ratio, summary_max_tokens in ((0.1, 16), (0.9, Settings().summary_max_tokens)):
        settings = Settings(
            database_url="memory://",
            embeddings="none",
            token_budget=400,
            keep_ratio=keep_ratio,
            summary_max_tokens=summary_max_tokens,
        )
        async with _service(settings) as sessions:
            for turn in range(40):  # until the first fold
                text = f"Turn {turn}: the weather is fine today."
                await sessions.arun(owner, "t", [{"role": "user", "content": text}])
                _, snapshot = await sessions.aget_state(owner, "t")
                if snapshot.values.get("summary"):
                    break
        folds[keep_ratio] = (
            count_tokens_approximately(snapshot.values["messages"]),
            snapshot.values["summary"],
        )
    (kept_small, summary_small), (kept_large, summary_large) = folds[0.1], folds[0.9]
    assert summary_small and summary_large
    # Right after the fold: ~10% of the budget kept plus the new turn, against ~90%.
    assert kept_small < 0.25 * 400 < 0.75 * 400 < kept_large
    assert len(summary_small) <= 16 * 4 < len(summary_large)  # clipped to about 16 tokens


async def test_tools_and_their_timeout_come_from_the_settings() -> None:
    calls = [
        {"id": "c1", "name": "order_status", "args": {"order_id": "A-1"}},
        {"id": "c2", "name": "slow_supplier", "args": {"item": "flour"}},  # sleeps 5 s
    ]
    model = ScriptedChatModel(replies=[AIMessage("", tool_calls=calls), AIMessage("Done.")])
    settings = Settings(
        database_url="memory://",
        embeddings="none",
        api_keys="",
        tools="tests.owngraph:TOOLS",
        tool_timeout_seconds=0.2,
    )
    app = create_app(settings, chat_model=model)
    async with running(app) as client:
        ran = await client.post(f"/threads/{fresh_id('t')}/runs", json={"message": "A-1?"})
    assert ran.status_code == 200, ran.text
    results = {m["tool_call_id"]: m for m in ran.json()["messages"] if m["role"] == "tool"}
    assert results["c1"]["content"] == "two croissants, ready at 9:00"
    assert results["c2"]["status"] == "error" and "0.2" in results["c2"]["content"]
