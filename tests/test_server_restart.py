"""A real `memory-agent serve` process: replies survive a restart on SQLite."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.test_cli import command

pytestmark = pytest.mark.slow
_START_DEADLINE_SECONDS = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve(port: int) -> Iterator[str]:
    """Start `memory-agent serve` on `port`, wait until it answers, stop it on exit."""
    proc = subprocess.Popen(
        [*command(), "serve", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=os.environ.copy(),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + _START_DEADLINE_SECONDS
        while True:
            if proc.poll() is not None:
                pytest.fail(f"server exited early:\n{proc.stdout.read() if proc.stdout else ''}")
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("server did not answer /healthz in time")
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=30)
        # uvicorn re-raises SIGTERM once it has shut down cleanly.
        assert proc.returncode in (0, -signal.SIGTERM), output
        assert "Application shutdown complete" in output


def test_reply_survives_a_server_restart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMORY_AGENT_DATABASE_URL", f"sqlite:///{tmp_path / 'serve.sqlite'}")
    monkeypatch.setenv("MEMORY_AGENT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MEMORY_AGENT_API_KEYS", "")
    port = free_port()
    with serve(port) as base:
        run = httpx.post(
            f"{base}/threads/restart-1/runs", json={"message": "my name is Sam"}, timeout=60
        )
        assert run.status_code == 200, run.text
        reply = run.json()["reply"]
    with serve(port) as base:
        listed = httpx.get(f"{base}/threads/restart-1/messages", timeout=30).json()
        assert listed["total"] == 4
        assert listed["items"][0]["content"] == "my name is Sam"
        assert listed["items"][-1]["content"] == reply
        again = httpx.post(
            f"{base}/threads/restart-1/runs", json={"message": "what is my name?"}, timeout=60
        )
        assert again.json()["reply"] == "Your name is Sam."
