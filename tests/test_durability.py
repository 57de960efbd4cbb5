"""Durability across processes: a turn one process wrote is read intact by a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[1]

# The writer ends with os._exit, skipping every close and flush a clean shutdown would do:
# whatever the reader finds was durable when the turn returned.
_SCRIPT = """
import asyncio, json, os, sys
from agent import build_graph
from memory.stores.factory import aopen_backends
from agent.namespaces import Owner
from memory.sessions import SessionManager
from memory.settings import Settings

url, tenant, user, thread, role = sys.argv[1:6]

async def main():
    async with aopen_backends(url, settings=Settings(embeddings="local")) as backends:
        sessions = SessionManager(build_graph(backends.checkpointer, backends.store))
        owner = Owner(tenant, user)
        if role == "writer":
            result = await sessions.arun(
                owner, thread, [{"role": "user", "content": "My name is Sam."}]
            )
            print(json.dumps({"reply": result.reply, "messages": result.messages}), flush=True)
            os._exit(0)
        messages, total = await sessions.aget_messages(owner, thread, limit=100)
        record = await sessions.aget(owner, thread)
        memories = await sessions.alist_memories(owner, query="what is the user called?")
        answer = await sessions.arun(owner, thread, [{"role": "user", "content": "what is my name?"}])
        print(json.dumps({
            "messages": messages,
            "total": total,
            "message_count": record["message_count"],
            "memories": [m["key"] for m in memories],
            "answer": answer.reply,
        }), flush=True)

asyncio.run(main())
"""


def _run(url: str, owner: tuple[str, str], thread: str, role: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORY_AGENT_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, url, *owner, thread, role],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def durable_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'agent.sqlite'}"
    return request.getfixturevalue(f"{request.param}_url")


def test_a_fresh_process_reads_the_turn_intact(durable_url: str) -> None:
    owner = (f"t{uuid.uuid4().hex[:8]}", f"u{uuid.uuid4().hex[:8]}")
    written = _run(durable_url, owner, "durable", "writer")
    assert [m["role"] for m in written["messages"]] == ["user", "assistant", "tool", "assistant"]

    read = _run(durable_url, owner, "durable", "reader")
    assert read["messages"] == written["messages"]
    assert read["total"] == read["message_count"] == len(written["messages"])
    assert read["memories"] == ["name"]
    assert read["answer"] == "Your name is Sam."
