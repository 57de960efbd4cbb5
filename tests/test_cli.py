"""The `memory-agent` command: one-shot and interactive chat persisted to SQLite."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from agent import OFFLINE_NOTICE
from server.cli import main

pytestmark = pytest.mark.slow


def command() -> list[str]:
    """The installed console script, or the module when the project is not installed."""
    script = shutil.which("memory-agent", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "server"]


def chat(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command(), "chat", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def sqlite_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the command at a fresh SQLite database and the offline model."""
    db = tmp_path / "chat.sqlite"
    monkeypatch.setenv("MEMORY_AGENT_DATABASE_URL", f"sqlite:///{db}")
    monkeypatch.setenv("MEMORY_AGENT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MEMORY_AGENT_MODEL", "offline")
    return db


def test_one_shot_messages_share_a_thread_across_processes(sqlite_env: Path) -> None:
    thread = f"cli-{uuid.uuid4().hex[:8]}"
    first = chat("--thread", thread, "--user", "sam", "-m", "my name is Sam")
    assert first.returncode == 0, first.stderr
    assert "Sam" in first.stdout
    assert OFFLINE_NOTICE in first.stderr
    assert f"--thread {thread}" in first.stderr

    second = chat("--thread", thread, "--user", "sam", "-m", "what is my name?")
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "Your name is Sam."
    assert "resuming thread" in second.stderr
    assert sqlite_env.exists()


def test_interactive_chat_prints_a_new_thread_and_replies(sqlite_env: Path) -> None:
    result = chat("--user", "ada", stdin="my name is Ada\nwhat is my name?\n/exit\n")
    assert result.returncode == 0, result.stderr
    assert "new thread " in result.stderr
    assert "resume with: memory-agent chat --thread " in result.stderr
    assert "Your name is Ada." in result.stdout


def test_invalid_thread_id_is_refused(sqlite_env: Path) -> None:
    result = chat("--thread", "bad id!", "-m", "hi")
    assert result.returncode == 2
    assert "invalid thread id" in result.stderr


def test_invalid_settings_stop_serve_with_a_message(
    sqlite_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMORY_AGENT_API_KEYS", "a-key-without-owner")
    result = subprocess.run(
        [*command(), "serve", "--port", "1"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert "MEMORY_AGENT_API_KEYS entry 1 is not key=tenant/user" in result.stderr


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"MEMORY_AGENT_AUTH": "gateway"}, "needs MEMORY_AGENT_GATEWAY_SECRET"),
        ({"MEMORY_AGENT_AUTH": "jwt"}, "exactly one of MEMORY_AGENT_JWT_SECRET"),
    ],
)
def test_an_auth_mode_without_its_secret_stops_serve(
    sqlite_env: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], says: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = subprocess.run(
        [*command(), "serve", "--port", "1"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert "invalid settings" in result.stderr
    assert says in result.stderr


@pytest.mark.parametrize(
    ("model", "named"),
    [
        ("nosuchprovider:some-model", "nosuchprovider:some-model"),
        ("no-colon-here", "no-colon-here"),
        ("offline:fast", "offline:fast"),
    ],
)
def test_a_model_that_cannot_be_loaded_stops_serve_and_chat(
    sqlite_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    model: str,
    named: str,
) -> None:
    monkeypatch.setenv("MEMORY_AGENT_MODEL", model)
    for code, stderr in _stopped_at_start(capsys, subprocesses=model.startswith("nosuch")):
        assert code == 2, stderr
        assert f"MEMORY_AGENT_MODEL={named!r}" in stderr
        assert "Traceback" not in stderr


def _stopped_at_start(
    capsys: pytest.CaptureFixture[str], *, subprocesses: bool
) -> list[tuple[int, str]]:
    """Exit codes and error output of `chat` run in this process, and with `subprocesses`
    of the `serve` and `chat` commands too (each costs a few seconds of imports)."""
    results = [(main(["chat", "-m", "hi"]), capsys.readouterr().err)]
    if subprocesses:
        for args in (["serve", "--port", "1"], ["chat", "-m", "hi"]):
            done = subprocess.run(
                [*command(), *args], capture_output=True, text=True, timeout=120, check=False
            )
            results.append((done.returncode, done.stderr))
    return results


@pytest.mark.parametrize(
    ("embeddings", "named"),
    [
        ("openai:text-embedding-3-small", "memory-agent[openai]"),
        ("nosuchprovider:model", "cannot be loaded"),
        ("no-colon", "use 'local', 'none' or 'provider:model'"),
    ],
)
def test_embeddings_that_cannot_be_loaded_stop_serve_and_chat(
    sqlite_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    embeddings: str,
    named: str,
) -> None:
    monkeypatch.setenv("MEMORY_AGENT_EMBEDDINGS", embeddings)
    for code, stderr in _stopped_at_start(capsys, subprocesses="openai" in embeddings):
        assert code == 2, stderr
        assert f"MEMORY_AGENT_EMBEDDINGS={embeddings!r}" in stderr
        assert named in stderr
        assert "Traceback" not in stderr
