"""`memory-agent serve --workers N`: several processes on one SQLite file keep the guarantees."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.test_cli import command
from tests.test_server_restart import free_port

pytestmark = pytest.mark.slow


def test_workers_are_refused_on_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMORY_AGENT_DATABASE_URL", "memory://")
    result = subprocess.run(
        [*command(), "serve", "--workers", "2", "--port", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "memory:// keeps sessions inside one process" in result.stderr


def test_two_workers_on_sqlite_share_runs_limits_and_creates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {
        **os.environ,
        "MEMORY_AGENT_DATABASE_URL": f"sqlite:///{tmp_path / 'agent.sqlite'}",
        "MEMORY_AGENT_EMBEDDINGS": "none",
        "MEMORY_AGENT_API_KEYS": "",
        "MEMORY_AGENT_RUNS_PER_MINUTE": "12",
        "MEMORY_AGENT_MODEL": "offline",
    }
    port = free_port()
    proc = subprocess.Popen(
        [*command(), "serve", "--workers", "2", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.2)
        asyncio.run(_races(base))
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


async def _races(base: str) -> None:
    # Fresh connections per request, so the kernel spreads them over both workers.
    async def post(path: str, body: dict) -> int:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            return (await client.post(path, json=body)).status_code

    created = await asyncio.gather(*(post("/threads", {"thread_id": "same"}) for _ in range(20)))
    assert Counter(created) == {201: 1, 409: 19}

    ran = await asyncio.gather(*(post("/threads/same/runs", {"message": "hi"}) for _ in range(6)))
    assert ran.count(200) >= 1 and set(ran) <= {200, 409}
    async with httpx.AsyncClient(base_url=base) as client:
        page = (await client.get("/threads/same/messages")).json()
    assert page["total"] == 2 * ran.count(200) == len(page["items"])

    # A run refused as busy never counts; every accepted one does, in whichever worker.
    limited = await asyncio.gather(
        *(post(f"/threads/r{i}/runs", {"message": "hi"}) for i in range(20))
    )
    assert ran.count(200) + limited.count(200) == 12
    assert set(limited) == {200, 429}
