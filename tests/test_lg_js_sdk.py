"""The JavaScript `@langchain/langgraph-sdk` drives `/langgraph` as a `useStream` chat UI does.

`tests/js/usestream.mjs` lists the threads, creates one, loads its history, streams two runs,
stops a third half way and sends a fourth, leaves a fifth mid-reply and rejoins it (a page
reload), aborts a sixth and sends a seventh at once (Stop, then send), then prints a JSON
summary; this test starts a real server for it (one for both SDKs, each run as a user new to
it) and checks the summary. `tests/js/forks.mjs`
sends the checkpoints agent-chat-ui sends (the latest with every message; Regenerate's and
Edit's earlier ones), with the newest SDK and with 1.8.10, the one the UI pins. The SDK is installed from `tests/js/package-lock.json`
(`npm ci --prefer-offline`) into a cache directory named by the hash of the package files
(`$MEMORY_AGENT_TEST_CACHE`, by default `~/.cache/memory-agent-tests`), and
`tests/js/node_modules` links to it: another checkout or a second run installs nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lgserver import LangGraphServer, langgraph_server

pytestmark = pytest.mark.slow

JS_DIR = Path(__file__).resolve().parent / "js"
#: What `npm ci` reads: an installed tree is reused while these are byte for byte the same.
PACKAGE_FILES = ("package.json", "package-lock.json", ".npmrc")
NODE_MODULES = JS_DIR / "node_modules"
_NPM_TIMEOUT = 300
_SCRIPT_TIMEOUT = 60
#: Each model reply takes this long, so the third run can be stopped while it streams.
_PACE_SECONDS = 2.0


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not on PATH: the JavaScript SDK test needs Node 18+ and npm")
    return path


def cache_root() -> Path:
    """Where built test assets are kept between runs and checkouts."""
    configured = os.environ.get("MEMORY_AGENT_TEST_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "memory-agent-tests"


def package_key() -> str:
    """The hash of the package files: the name of the installed tree they make."""
    digest = hashlib.sha256()
    for name in PACKAGE_FILES:
        digest.update(name.encode() + b"\0" + (JS_DIR / name).read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _install(target: Path) -> None:
    """`npm ci` into a fresh directory beside `target`, then renamed to it in one step."""
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{target.name}.", dir=target.parent))
    try:
        for name in PACKAGE_FILES:
            shutil.copy2(JS_DIR / name, work / name)
        env = {**os.environ, "npm_config_update_notifier": "false"}
        command = [_tool("npm"), "ci", "--prefer-offline", "--no-audit", "--no-fund"]
        done = subprocess.run(
            command, cwd=work, env=env, capture_output=True, text=True, timeout=_NPM_TIMEOUT
        )
        if done.returncode != 0 or not (work / "node_modules" / ".package-lock.json").exists():
            pytest.fail(
                f"npm ci for {JS_DIR} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}",
                pytrace=False,
            )
        try:
            work.rename(target)
        except OSError:
            # Another run installed the same tree first; theirs is as good.
            if not (target / "node_modules" / ".package-lock.json").exists():
                raise
    finally:
        if work.exists():
            shutil.rmtree(work)


def link_node_modules() -> Path:
    """`tests/js/node_modules` as a link to the cached tree for these package files."""
    tree = cache_root() / "js" / package_key()
    if not (tree / "node_modules" / ".package-lock.json").exists():
        _install(tree)
    wanted = tree / "node_modules"
    if NODE_MODULES.is_symlink() and NODE_MODULES.resolve() == wanted.resolve():
        return wanted
    if NODE_MODULES.is_symlink() or NODE_MODULES.is_file():
        NODE_MODULES.unlink()
    elif NODE_MODULES.exists():
        shutil.rmtree(NODE_MODULES)
    link = NODE_MODULES.with_name(f"node_modules.{os.getpid()}")
    link.symlink_to(wanted, target_is_directory=True)
    link.replace(NODE_MODULES)
    return wanted


@pytest.fixture(scope="module")
def node() -> str:
    """Node, with the SDK installed from the lockfile (once per set of package files)."""
    node = _tool("node")
    link_node_modules()
    return node


#: The SDKs a chat UI meets: the newest, and the one agent-chat-ui's lockfile pins.
SDKS = ["@langchain/langgraph-sdk", "sdk-1-8"]


#: Each SDK's script runs as a user of its own: each sees a fresh user's empty thread list.
SCRIPT_USERS = dict(zip(SDKS, ("alice", "bob"), strict=True))


@pytest.fixture(scope="module")
def paced_server(
    node: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LangGraphServer, Path]]:
    """A server on SQLite with a paced offline model for both SDKs' `usestream.mjs`; its logs."""
    tmp = tmp_path_factory.mktemp("lg-js")
    with langgraph_server(
        f"sqlite:///{tmp / 'agent.sqlite'}",
        tmp,
        model=f"offline:slow-{_PACE_SECONDS}",
        runs_per_minute="1000",
    ) as server:
        yield server, tmp


@pytest.fixture(scope="module", params=SDKS)
def summary(
    node: str, paced_server: tuple[LangGraphServer, Path], request: pytest.FixtureRequest
) -> dict[str, Any]:
    """What `usestream.mjs` printed with each SDK, as a user new to the server."""
    sdk = request.param
    server, tmp = paced_server
    done = subprocess.run(
        [node, str(JS_DIR / "usestream.mjs"), server.url, server.keys[SCRIPT_USERS[sdk]], sdk],
        capture_output=True,
        text=True,
        timeout=_SCRIPT_TIMEOUT,
    )
    if done.returncode != 0:
        logs = "\n".join(p.read_text(errors="replace")[-3000:] for p in tmp.glob("*.log"))
        pytest.fail(
            f"usestream.mjs exited with {done.returncode}:\n{done.stderr}\nserver log:\n{logs}",
            pytrace=False,
        )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_sdk_is_the_pinned_version(summary: dict[str, Any]) -> None:
    pinned = json.loads((JS_DIR / "package.json").read_text())["dependencies"]
    versions = {p.removeprefix("npm:@langchain/langgraph-sdk@") for p in pinned.values()}
    assert summary["sdkVersion"] in versions


def test_thread_list_create_and_empty_history(summary: dict[str, Any]) -> None:
    assert summary["info"]["assistantGraphId"] == "agent"
    assert summary["thread"]["status"] == "idle"
    assert {"thread_id", "created_at", "updated_at", "metadata", "status", "values"} <= set(
        summary["thread"]["keys"]
    )
    assert summary["emptyHistory"] == 0
    threads = summary["threads"]
    # A fresh user: nothing listed before, the new thread after, titled by its first message.
    assert threads["before"] == 0 and threads["after"] == 1
    assert threads["listed"] and threads["listedStatus"] == "idle"
    assert threads["title"] == "my name is Sam"


def test_streamed_runs_carry_metadata_values_and_messages(summary: dict[str, Any]) -> None:
    for run in (summary["first"], summary["second"], summary["afterCancel"]):
        assert run["events"] == ["metadata", "values", "messages"], run
        assert run["error"] is None
        # The run id of the metadata event is the one in Content-Location (what Stop uses).
        assert run["runId"] and run["runId"] == run["headerRunId"]
        assert run["messageNode"] == "call_model"
        assert "".join(run["tokens"]) == run["reply"]

    first, second = summary["first"], summary["second"]
    assert first["messageTypes"] == ["human", "ai", "tool", "ai"]
    assert first["firstMessage"] == "my name is Sam"
    assert first["reply"] == "Noted: The user's name is Sam."
    assert second["reply"] == "Your name is Sam."
    assert second["messageTypes"] == [*first["messageTypes"], "human", "ai"]


def test_history_returns_the_thread_states(summary: dict[str, Any]) -> None:
    history = summary["history"]
    assert history["length"] == history["checkpoints"] >= 5
    assert {"values", "next", "checkpoint", "metadata", "created_at", "parent_checkpoint"} <= set(
        history["keys"]
    )
    assert history["newestMessages"] == 6
    assert history["newestReply"] == "Your name is Sam."


def test_stop_ends_the_run_and_the_thread_takes_the_next(summary: dict[str, Any]) -> None:
    cancelled = summary["cancelled"]
    # Stopped after its first token, long before the reply's other tokens were due.
    assert cancelled["cancel"]["tokensBefore"] == 1 and len(cancelled["tokens"]) == 1
    assert cancelled["reply"] is None and cancelled["error"] is None
    assert cancelled["seconds"] < _PACE_SECONDS
    assert summary["cancelledRun"]["run_id"] == cancelled["runId"]
    assert summary["cancelledRun"]["status"] == "interrupted"

    after = summary["afterCancel"]
    assert after["reply"] == "Your name is Sam."
    # The stopped run's question stays in the thread; its unfinished reply does not.
    assert after["messageTypes"][-4:] == ["ai", "human", "human", "ai"]


def test_a_reload_mid_reply_rejoins_where_it_left(summary: dict[str, Any]) -> None:
    reload = summary["reload"]
    assert reload["before"][0] == "metadata" and len(reload["before"]) == 3
    assert reload["lastEventId"]
    after, whole = reload["after"], reload["whole"]
    # The rest of the run, without a gap or a repeat: what was seen plus what came after
    # is the whole stream, which ends with the reply.
    assert reload["before"] + after["events"] == whole["events"]
    assert after["events"][-1] == "values" and after["reply"] == "Your name is Sam."


def test_stop_then_send_at_once_queues_and_answers_both(summary: dict[str, Any]) -> None:
    sent = summary["stopThenSend"]
    assert sent["error"] is None and sent["reply"] == "Your name is Sam."
    assert summary["stoppedRun"]["status"] == "success"  # it went on after the fetch ended
    assert summary["runs"][:2] == ["success", "success"]
    # The stopped run answered in full, then the queued one.
    assert sent["messageTypes"][-6:] == ["human", "ai", "tool", "ai", "human", "ai"]
    state = summary["state"]
    assert state["valueKeys"] == ["messages", "summary", "transcript_len"]
    assert state["reply"] == "Your name is Sam."
    assert state["messages"] == len(sent["messageTypes"])


@pytest.fixture(scope="module")
def fork_server(node: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LangGraphServer]:
    """A server on SQLite for the fork scripts, with the offline model at full speed."""
    tmp = tmp_path_factory.mktemp("lg-js-forks")
    with langgraph_server(
        f"sqlite:///{tmp / 'agent.sqlite'}", tmp, runs_per_minute="1000"
    ) as server:
        yield server


@pytest.mark.parametrize("sdk", SDKS)
def test_chat_ui_checkpoints_continue_regenerate_and_edit(
    node: str, fork_server: LangGraphServer, sdk: str
) -> None:
    done = subprocess.run(
        [node, str(JS_DIR / "forks.mjs"), sdk, fork_server.url, fork_server.keys["alice"]],
        capture_output=True,
        text=True,
        timeout=_SCRIPT_TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    pinned = json.loads((JS_DIR / "package.json").read_text())["dependencies"][sdk]
    assert pinned.removeprefix("npm:@langchain/langgraph-sdk@") == summary["sdkVersion"]
    assert summary["errors"] == []
    # Each submit with the latest checkpoint went on with the conversation.
    assert [len(m) for m in summary["latest"]] == [2, 4, 6]
    assert summary["latest"][-1][::2] == ["one", "two", "three"]
    # Regenerate: a new reply in place of the last one; the old one kept in its branch.
    assert summary["regenerate"] == {"messages": 6, "sameText": True, "newId": True, "type": "ai"}
    assert summary["oldBranchLast"] is True
    # Edit: the branch goes on from "one"'s reply with the edited message.
    assert [t for _, t in summary["edit"]][::2] == ["one", "two, edited"]
    assert [r for r, _ in summary["transcript"]] == ["user", "assistant"] * 2
    assert [t for _, t in summary["transcript"]][::2] == ["one", "two, edited"]


def test_node_modules_is_the_cached_tree_for_these_package_files(node: str) -> None:
    tree = cache_root() / "js" / package_key() / "node_modules"
    assert NODE_MODULES.is_symlink() and NODE_MODULES.resolve() == tree.resolve()
    # Linking again installs nothing and leaves the same tree in place.
    before = (tree / ".package-lock.json").stat().st_mtime_ns
    assert link_node_modules() == tree
    assert (tree / ".package-lock.json").stat().st_mtime_ns == before
    installed = json.loads((tree / "@langchain" / "langgraph-sdk" / "package.json").read_text())
    pinned = json.loads((JS_DIR / "package.json").read_text())["dependencies"]
    assert installed["version"] == pinned["@langchain/langgraph-sdk"]


@pytest.fixture(scope="module")
def subgraph_server(
    node: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LangGraphServer]:
    """A server on SQLite serving a graph with a subgraph (`tests.owngraph`)."""
    tmp = tmp_path_factory.mktemp("lg-js-modes")
    with langgraph_server(
        f"sqlite:///{tmp / 'agent.sqlite'}",
        tmp,
        runs_per_minute="1000",
        graph="tests.owngraph:make_checked_graph",
    ) as server:
        yield server


@pytest.mark.parametrize("sdk", SDKS)
def test_older_messages_step_subgraph_modes_and_runs_without_a_thread(
    node: str, subgraph_server: LangGraphServer, sdk: str
) -> None:
    server = subgraph_server
    done = subprocess.run(
        [node, str(JS_DIR / "streammodes.mjs"), sdk, server.url, server.keys["alice"]],
        capture_output=True,
        text=True,
        timeout=_SCRIPT_TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    messages = summary["messages"]
    assert messages["names"] == ["metadata", "messages/metadata", "messages/partial"]
    assert messages["described"] == 2  # the reply, and the model's closing empty chunk
    assert (
        messages["last"]
        == '(offline model) You said: "hi there". I can remember facts you tell me.'
    )
    steps = summary["steps"]
    assert set(steps["names"]) == {"metadata", "tasks", "checkpoints", "debug"}
    assert steps["threadIds"] == [True]
    assert steps["tasks"] == ["call_model", "check", "record_messages"]
    assert summary["subgraphs"] == [
        ["updates", "call_model"],
        ["custom|check", "checked"],
        ["updates|check", "inspect"],
        ["updates", "check"],
        ["updates", "record_messages"],
    ]
    assert summary["stateless"] == {
        "reply": "ai",
        "streamed": ["metadata", "values"],
        "threadsAdded": 0,
    }
