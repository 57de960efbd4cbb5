"""`langgraph dev` serves the graph from langgraph.json, with memories and the local embedder."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from agent import namespaces

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[1]
#: What `langgraph.json`'s relative paths need in the server's working directory.
_PROJECT_ENTRIES = ("agent", "memory")
_STARTUP_TIMEOUT = 90.0
_STOP_TIMEOUT = 15.0
#: Variables from the developer's shell that must not reach the server: settings that would
#: swap the offline model or embedder, LangSmith keys that would enable tracing, and
#: LangGraph server settings that would change what the CLI configures.
_DROPPED_PREFIXES = ("MEMORY_AGENT_", "LANGSMITH_", "LANGCHAIN_", "LANGGRAPH_")
#: Switches that keep the CLI and the server off the network.
_OFFLINE_ENV = {
    "LANGGRAPH_CLI_NO_ANALYTICS": "1",  # the CLI's usage report
    "LANGGRAPH_NO_VERSION_CHECK": "true",  # the server's PyPI version check
    "LANGSMITH_TRACING": "false",
    "LANGCHAIN_TRACING_V2": "false",
    "PYTHONUNBUFFERED": "1",
}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DROPPED_PREFIXES)}
    env.update(_OFFLINE_ENV)
    return env


def _workdir(root: Path, auth: str | None = None) -> Path:
    """A working directory that holds the project as `langgraph.json` sees it.

    The in-memory runtime persists threads, runs and the store under `.langgraph_api/` in
    its working directory; running from a temporary copy of the layout keeps the test's
    state out of the checkout (and away from `make dev` and other test runs), while the
    committed `langgraph.json` is used unchanged. With `auth` (a file of this repository,
    `tests/x.py:attribute`), the copy names it as its `auth.path`.
    """
    shutil.copy(REPO_ROOT / "langgraph.json", root / "langgraph.json")
    if auth is not None:
        config = json.loads((root / "langgraph.json").read_text())
        config["auth"] = {"path": f"./{auth}"}
        (root / "langgraph.json").write_text(json.dumps(config))
        path = auth.partition(":")[0]
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).symlink_to(REPO_ROOT / path)
    for entry in _PROJECT_ENTRIES:
        (root / entry).symlink_to(REPO_ROOT / entry, target_is_directory=True)
    return root


def _log_tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + _STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(
                f"langgraph dev exited with code {proc.returncode}:\n{_log_tail(log)}",
                pytrace=False,
            )
        try:
            if httpx.get(f"{url}/ok", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    pytest.fail(
        f"langgraph dev not ready after {_STARTUP_TIMEOUT:.0f}s:\n{_log_tail(log)}", pytrace=False
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the server and every process it started (it runs in its own process group)."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=_STOP_TIMEOUT)


@contextmanager
def langgraph_dev(workdir: Path, auth: str | None = None) -> Iterator[str]:
    """Run `langgraph dev` in `workdir` on a free loopback port; yields its base URL.
    `auth`: an auth handler file of this repository for its `langgraph.json`."""
    _workdir(workdir, auth)
    log = workdir / "server.log"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    cli = Path(sys.executable).parent / "langgraph"
    if not cli.exists():
        pytest.fail(f"{cli} is missing: install the dev extras (pip install -e '.[dev]')")
    command = [
        str(cli),
        "dev",
        "--no-browser",
        "--no-reload",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command,
            cwd=workdir,
            env=_server_env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_ready(proc, url, log)
        yield url
    finally:
        _stop(proc)


@pytest.fixture
def dev_server(langgraph_dev_url: str) -> str:
    """The session's `langgraph dev` (shared with `test_lg_parity.py`); its base URL."""
    return langgraph_dev_url


@pytest.fixture
def client(dev_server: str) -> LangGraphClient:
    """An SDK client for the dev server."""
    return get_client(url=dev_server)


async def _say(client: LangGraphClient, thread_id: str, text: str, user: str) -> dict[str, Any]:
    result = await client.runs.wait(
        thread_id,
        "agent",
        input={"messages": [{"role": "user", "content": text}]},
        context={"user_id": user, "model": "offline"},
    )
    assert isinstance(result, dict), result
    return result


def _reply(values: dict[str, Any]) -> str:
    last = values["messages"][-1]
    assert last["type"] == "ai", last
    return last["content"]


async def test_graph_is_served_with_its_context_schema(client: LangGraphClient) -> None:
    assistants = await client.assistants.search(graph_id="agent")
    assert len(assistants) == 1
    schemas = await client.assistants.get_schemas(assistants[0]["assistant_id"])
    properties = schemas["context_schema"]["properties"]
    assert {"user_id", "tenant_id", "model", "token_budget"} <= set(properties)
    # Defaults come from MEMORY_AGENT_* at run time, so the schema documents, not fixes, them.
    assert "required" not in schemas["context_schema"] or not schemas["context_schema"]["required"]
    assert properties["token_budget"]["description"].startswith("Tokens of working messages")


async def test_name_said_once_is_remembered(client: LangGraphClient) -> None:
    thread_id = (await client.threads.create())["thread_id"]

    first = await _say(client, thread_id, "My name is Sam.", "sam")
    calls = [c for m in first["messages"] if m["type"] == "ai" for c in m["tool_calls"]]
    assert [c["name"] for c in calls] == ["save_memory"]
    assert calls[0]["args"]["key"] == "name"

    second = await _say(client, thread_id, "what is my name?", "sam")
    assert "Sam" in _reply(second)

    state = (await client.threads.get_state(thread_id))["values"]
    # user, tool call, tool result, acknowledgement; then question and answer.
    assert [m["type"] for m in state["messages"]] == ["human", "ai", "tool", "ai", "human", "ai"]
    assert state["transcript_len"] == 6
    assert state["recorded_id"] == state["messages"][-1]["id"]

    transcript = await client.store.search_items(list(namespaces.transcript(thread_id)), limit=50)
    blocks = sorted(transcript["items"], key=lambda i: i["key"])
    records = [r for block in blocks for r in json.loads(block["value"]["records"])]
    assert [r["seq"] for r in records] == list(range(6))
    assert records[0]["content"] == "My name is Sam."

    found = await client.store.search_items(list(namespaces.user_memories("default", "sam")))
    assert [(i["key"], i["value"]["content"]) for i in found["items"]] == [
        ("name", "The user's name is Sam.")
    ]


async def test_memories_are_per_user_and_searchable_by_meaning(client: LangGraphClient) -> None:
    await _say(client, (await client.threads.create())["thread_id"], "My name is Ada.", "ada")
    await _say(
        client, (await client.threads.create())["thread_id"], "I'm allergic to peanuts.", "ada"
    )

    # A new thread of the same user knows the name; another user does not.
    ada = await _say(client, (await client.threads.create())["thread_id"], "who am I?", "ada")
    assert "Ada" in _reply(ada)
    other = await _say(client, (await client.threads.create())["thread_id"], "who am I?", "bob")
    assert "Ada" not in _reply(other)

    prefix = list(namespaces.user_memories("default", "ada"))
    for query, key in (
        ("what is the user called?", "name"),
        ("food the user must avoid", "allergy-peanuts"),
    ):
        found = await client.store.search_items(prefix, query=query, limit=2)
        items = found["items"]
        assert len(items) == 2
        assert items[0]["key"] == key, (query, items)
        assert items[0]["score"] is not None
        assert items[0]["score"] > items[1]["score"]
