"""The README's examples run as written, twice, against a real `memory-agent serve`.

Every Python and shell block of the README is either run here or named in `NOT_RUN` with
the reason, so a new example cannot go untested unnoticed. The blocks that keep state (the
Python API, the LangGraph client, the curl session) run twice, each time in a fresh process,
the way a user runs a script again; the server listens where `MEMORY_AGENT_HOST`/`PORT` say
and keeps its data where `MEMORY_AGENT_DATA_DIR` says, on the default database.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_core.messages import AIMessage

from agent import build_graph
from agent.loading import graph_factory
from agent.namespaces import Owner
from memory.sessions import SessionManager
from memory.settings import Settings
from memory.stores.factory import aopen_backends, open_backends
from tests import readme
from tests.forkrun import Forker, clean_env, forker
from tests.scripted import ScriptedChatModel
from tests.test_cli import command

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]

#: Where the README's examples say the server is, and a second loopback address the test
#: server binds instead (so an answer proves `MEMORY_AGENT_HOST` was used).
README_ADDRESS = "127.0.0.1:8000"
HOST = "127.0.0.2"

#: Blocks not run here, by first line, and why.
NOT_RUN = {
    "make run    # create .venv, install, serve the agent on http://127.0.0.1:8000 (SQLite)": (
        "installs and serves; `make test` itself runs the suite, and the server is run here"
    ),
    "pip install 'memory-agent[openai]'        # or [anthropic], [ollama]": (
        "needs the network and a provider key; test_settings_table checks the extras"
    ),
    "MEMORY_AGENT_TOOLS=myapp.tools:TOOLS memory-agent serve     # or chat; build_graph(tools=TOOLS)": (
        "the same loading is run in process by test_the_tools_and_graph_examples_load_and_run"
    ),
    "memory-agent serve --workers 4                       # or MEMORY_AGENT_WORKERS=4; one host": (
        "tests/test_workers.py and tests/test_scale_out.py serve several processes"
    ),
    "MEMORY_AGENT_API_KEYS='k-sam=bakery/sam' memory-agent serve &": (
        "serves on the default port; keys mode is what the curl session runs"
    ),
    "export MEMORY_AGENT_AUTH=jwt MEMORY_AGENT_JWT_SECRET=$(python -c 'import secrets; print(secrets.token_hex(32))')": (
        "serves on the default port; tests/test_auth_modes.py serves jwt mode with tokens "
        "minted as shown"
    ),
    "MEMORY_AGENT_AUTH=gateway MEMORY_AGENT_GATEWAY_SECRET=change-me memory-agent serve &": (
        "serves on the default port; tests/test_auth_modes.py serves gateway mode with "
        "these headers"
    ),
    "# myapp/auth.py, served with MEMORY_AGENT_AUTH=myapp.auth:auth": (
        "calls an application's own session lookup; tests/sdkauth.py is such a module, "
        "served by tests/test_auth_modes.py"
    ),
    'import { Client } from "@langchain/langgraph-sdk";': (
        "tests/test_lg_js_sdk.py runs the JavaScript SDK against the server"
    ),
}

_START_DEADLINE_SECONDS = 60


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class Served:
    """The server process, its address, its working directory and its data directory."""

    proc: subprocess.Popen[bytes]
    address: str
    cwd: Path
    data_dir: Path
    log: Path

    @property
    def base(self) -> str:
        """The server's base URL."""
        return f"http://{self.address}"

    def readme(self, code: str) -> str:
        """An example with the README's server address replaced by this server's."""
        assert README_ADDRESS in code or "localhost:8000" in code, code
        return code.replace(README_ADDRESS, self.address).replace("localhost:8000", self.address)

    def wait_ready(self) -> None:
        """Wait until the server answers `GET /readyz` with 200."""
        deadline = time.monotonic() + _START_DEADLINE_SECONDS
        while True:
            assert self.proc.poll() is None, self.log.read_text(errors="replace")
            try:
                if httpx.get(f"{self.base}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, self.log.read_text(errors="replace")
            time.sleep(0.1)


@pytest.fixture(scope="module")
def starting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`memory-agent serve` with the defaults but for HOST, PORT and DATA_DIR, started (not
    yet ready: a test that needs no server takes this to overlap with the start-up)."""
    cwd = tmp_path_factory.mktemp("serve-cwd")
    data_dir = tmp_path_factory.mktemp("serve-data") / "data"
    port = _free_port(HOST)
    env = clean_env(ROOT)
    env.update(
        MEMORY_AGENT_HOST=HOST, MEMORY_AGENT_PORT=str(port), MEMORY_AGENT_DATA_DIR=str(data_dir)
    )
    log = cwd.parent / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*command(), "serve"], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield Served(proc, f"{HOST}:{port}", cwd, data_dir, log)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(15)


@pytest.fixture
def served(starting: Served) -> Served:
    """The server, ready."""
    starting.wait_ready()
    return starting


#: What the examples import, imported once by the interpreter that forks their runs.
_PRELOADED = (
    "agent",
    "agent.namespaces",
    "memory.sessions",
    "memory.stores",
    "langgraph.pregel.remote",
)


@pytest.fixture(scope="module")
def python(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Forker]:
    """Runs an example in a fresh process (forked from one with the imports done)."""
    with forker(_PRELOADED, ROOT, tmp_path_factory.mktemp("runs")) as running:
        yield running


def _run(python: Forker, code: str, cwd: Path) -> str:
    """Run an example as a user's script; its output."""
    done = python.run(code, cwd)
    assert done.returncode == 0, f"{code}\n{done.stderr}"
    return done.stdout


def _json_values(text: str) -> list[Any]:
    """The JSON values printed one after another (curl adds no newline between them)."""
    decoder, values, at = json.JSONDecoder(), [], 0
    while at < len(text.rstrip()):
        value, at = decoder.raw_decode(text, at)
        values.append(value)
        while at < len(text) and text[at].isspace():
            at += 1
    return values


def _block(lang: str, first_line: str) -> str:
    (found,) = [b.code for b in readme.code_blocks(lang) if b.first_line.startswith(first_line)]
    return found


def test_every_example_is_run_or_says_why_not() -> None:
    run = {
        "from langgraph.pregel.remote import RemoteGraph",
        "from agent import build_graph",
        "# myapp/tools.py",
        "from langgraph.graph import END, START, StateGraph",
        "curl -s localhost:8000/threads/demo/runs -H 'content-type: application/json' \\",
        "curl -s -X PUT localhost:8000/memories/cart -H 'content-type: application/json' \\",
        "# a cart kept right under concurrent writers",
        "curl -s -X POST localhost:8000/threads/demo/undo -H 'content-type: application/json' \\",
    }
    blocks = {b.first_line for b in readme.code_blocks("python", "bash", "sh", "js", "")}
    assert blocks == run | set(NOT_RUN)


@pytest.mark.usefixtures("starting")
def test_the_python_api_example_runs_twice(python: Forker, tmp_path: Path) -> None:
    """Runs first, while the server (which it does not use) starts."""
    code = _block("python", "from agent import build_graph")
    replies = [_run(python, code, tmp_path).strip() for _ in range(2)]
    assert replies[0] == replies[1] and "What are your hours?" in replies[0]
    sam = Owner(tenant="bakery", user="sam")
    database = f"sqlite:///{tmp_path / '.data' / 'app.sqlite'}"
    with open_backends(database, settings=Settings(embeddings="local")) as backends:
        sessions = SessionManager(build_graph(backends.checkpointer, backends.store))
        _, total = sessions.get_messages(sam, "session_123")
        assert total == 4  # one turn per run, both on the one session
        assert sessions.get_memory(sam, "allergies")["value"] == ["penicillin"]


def test_the_conditional_memory_examples_run(
    python: Forker, served: Served, tmp_path: Path
) -> None:
    printed = _run(python, _block("python", "# a cart kept right"), tmp_path)
    assert "refused: the memory already exists" in printed
    assert "operation 0 failed" in printed
    script = served.readme(_block("bash", "curl -s -X PUT localhost:8000/memories/cart"))
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    printed = done.stdout.rstrip()  # three JSON answers, then the DELETE's status code
    values, code = _json_values(printed[:-3]), printed[-3:]
    assert values[0]["value"] == {"items": []} and values[1]["value"] == {"items": ["blue mug"]}
    assert values[2]["value"] == {"items": ["red mug"]} and code == "412"


def test_the_undo_example_runs(served: Served) -> None:
    ran = httpx.post(f"{served.base}/threads/demo/runs", json={"message": "hello"}, timeout=60)
    assert ran.status_code == 200, ran.text
    before = httpx.get(f"{served.base}/threads/demo/messages", timeout=10).json()["total"]
    script = served.readme(_block("bash", "curl -s -X POST localhost:8000/threads/demo/undo"))
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"thread_id": "demo", "removed": 2, "messages": before - 2}


def test_serve_listens_where_the_settings_say(served: Served) -> None:
    assert httpx.get(f"{served.base}/healthz", timeout=10).status_code == 200
    port = served.address.rsplit(":", 1)[1]
    with pytest.raises(httpx.ConnectError):  # bound to HOST, not to every loopback address
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
    ran = httpx.post(f"{served.base}/threads/where/runs", json={"message": "hello"}, timeout=60)
    assert ran.status_code == 200, ran.text
    # The default database: SQLite under the data directory, the store in a sibling file.
    assert sorted(p.name for p in served.data_dir.glob("*.sqlite")) == [
        "memory-agent.sqlite",
        "memory-agent.store.sqlite",
    ]
    assert not (served.cwd / ".data").exists()


def test_the_curl_session_runs_twice(served: Served) -> None:
    script = served.readme(_block("bash", "curl -s localhost:8000/threads/demo/runs"))
    promised = [
        line.split("# -> ", 1)[1].strip().strip('"')
        for line in script.splitlines()
        if "# -> " in line
    ]
    assert promised == ["Your name is Sam."]
    for _ in range(2):
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        first, other, page = _json_values(done.stdout)
        assert first["thread_id"] == "demo" and "Sam" in first["reply"]
        assert other["reply"] == promised[0]
        assert page["total"] >= 5 and page["items"][0]["content"] == first["messages"][0]["content"]


def test_the_langgraph_client_example_runs_twice(
    served: Served, python: Forker, tmp_path: Path
) -> None:
    code = served.readme(_block("python", "from langgraph.pregel.remote import RemoteGraph"))
    for _ in range(2):
        _run(python, code, tmp_path)
    thread = "5f0c9b1e-2d7a-4f8e-9c61-0b7d2a4e8f13"
    listed = httpx.get(f"{served.base}/threads/{thread}/messages", timeout=10).json()
    assert [m["content"] for m in listed["items"] if m["role"] == "user"] == ["My name is Sam."] * 2


async def test_the_tools_and_graph_examples_load_and_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fragments, completed with the names they leave to the application, loaded the
    way `MEMORY_AGENT_TOOLS` and `MEMORY_AGENT_GRAPH` load them."""
    package = tmp_path / "myapp"
    package.mkdir()
    (package / "__init__.py").write_text("")
    tools_prelude = (
        'ORDERS = {"A-1": "two croissants, ready at 9:00"}\n\n\n'
        "def search_faq(query: str) -> str:\n"
        '    """Search the bakery\'s FAQ."""\n'
        '    return "We open at 7."\n\n\n'
    )
    (package / "tools.py").write_text(tools_prelude + _block("python", "# myapp/tools.py"))
    graph_prelude = (
        "from myapp.tools import TOOLS\n"
        'BAKERY_PROMPT = "You are the bakery\'s assistant. {summary}"\n\n'
    )
    (package / "graph.py").write_text(
        graph_prelude + _block("python", "from langgraph.graph import END, START, StateGraph")
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    call = {"id": "c1", "name": "order_status", "args": {"order_id": "A-1"}}
    owner = Owner("bakery", "sam")
    try:
        for setting in ({"tools": "myapp.tools:TOOLS"}, {"graph": "myapp.graph:make_graph"}):
            model = ScriptedChatModel(
                replies=[AIMessage("", tool_calls=[call]), AIMessage("Ready at 9.")]
            )
            make = graph_factory(**setting, chat_model=model)
            settings = Settings(database_url="memory://", embeddings="none")
            async with aopen_backends(settings=settings) as backends:
                sessions = SessionManager(make(backends.checkpointer, backends.store))
                result = await sessions.arun(owner, "t", [{"role": "user", "content": "A-1?"}])
            tool = next(m for m in result.messages if m["role"] == "tool")
            assert tool["content"] == "two croissants, ready at 9:00", setting
            assert result.reply == "Ready at 9."
    finally:
        for name in [m for m in sys.modules if m == "myapp" or m.startswith("myapp.")]:
            del sys.modules[name]
