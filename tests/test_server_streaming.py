"""Streaming over a real socket: a client that disconnects mid-stream leaves the thread usable."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from agent import OfflineChatModel
from memory.settings import Settings
from server.app import create_app
from tests.plugins.server import GatedModel, fresh_id, sse_events

_DEADLOCK_GUARD_SECONDS = 60


class StallingModel(GatedModel):
    """Streams its first token, then waits at the gate before the rest."""

    async def _astream(self, messages: Any, stop: Any = None, run_manager: Any = None, **kw: Any):
        first = True
        async for chunk in OfflineChatModel._astream(self, messages, stop, run_manager, **kw):
            yield chunk
            if first:
                first = False
                self.entered.set()
                await self.gate.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
async def served(app_url: str) -> AsyncIterator[tuple[FastAPI, str, StallingModel]]:
    """The app under uvicorn on a free loopback port, in this event loop."""
    model = StallingModel()
    app = create_app(Settings(database_url=app_url, api_keys=""), chat_model=model)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(_DEADLOCK_GUARD_SECONDS):
        while not server.started:
            assert not task.done(), "uvicorn exited during start-up"
            await asyncio.sleep(0.02)
    try:
        yield app, f"http://127.0.0.1:{port}", model
    finally:
        model.gate.set()
        server.should_exit = True
        await task


async def test_disconnect_mid_stream_leaves_the_thread_usable(
    served: tuple[FastAPI, str, StallingModel],
) -> None:
    app, base, model = served
    thread = fresh_id("t")
    async with httpx.AsyncClient(base_url=base, timeout=_DEADLOCK_GUARD_SECONDS) as client:
        seen: list[str] = []
        async with client.stream(
            "POST",
            f"/threads/{thread}/runs/stream",
            json={"message": "tell me a long story please"},
        ) as response:
            assert response.status_code == 200
            async for line in response.aiter_lines():
                seen.append(line)
                if line.startswith("event: token"):
                    break  # leave after the first token: the connection closes here
        assert "event: metadata" in seen
        await asyncio.wait_for(model.entered.wait(), _DEADLOCK_GUARD_SECONDS)

        # The run is still going: the thread is busy, not broken.
        busy = await client.post(f"/threads/{thread}/runs", json={"message": "hello?"})
        assert busy.status_code == 409
        model.gate.set()
        await asyncio.wait_for(app.state.runner.drain(), _DEADLOCK_GUARD_SECONDS)

        transcript = (await client.get(f"/threads/{thread}/messages")).json()
        assert transcript["total"] == 2
        assert transcript["items"][1]["content"].startswith("(offline model) You said")
        after = await client.post(f"/threads/{thread}/runs/stream", json={"message": "again"})
        events = sse_events(after.text)
        assert events[-1][0] == "done"
        assert [m["seq"] for m in events[-1][1]["messages"]] == [2, 3]


async def test_stream_over_a_socket_delivers_tokens_before_the_end(
    served: tuple[FastAPI, str, StallingModel],
) -> None:
    _, base, model = served
    thread = fresh_id("t")
    async with httpx.AsyncClient(base_url=base, timeout=_DEADLOCK_GUARD_SECONDS) as client:
        text = ""
        async with client.stream(
            "POST", f"/threads/{thread}/runs/stream", json={"message": "hello there"}
        ) as response:
            async for chunk in response.aiter_text():
                text += chunk
                if "event: token" in text and not model.gate.is_set():
                    # A token arrived while the model is still held: it was streamed.
                    assert "event: done" not in text
                    model.gate.set()
        events = sse_events(text)
        tokens = "".join(d["text"] for name, d in events if name == "token")
        assert events[-1][0] == "done"
        assert tokens == events[-1][1]["reply"]
