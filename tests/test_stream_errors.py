"""A run that fails mid-stream ends its server-sent events with `error`, on the native stream
route and on `/langgraph`, and leaves the thread usable with the question recorded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from langchain_core.messages import BaseMessage

from agent import OfflineChatModel
from memory.settings import Settings
from server.app import create_app
from tests.lgserver import sse_events
from tests.plugins.server import fresh_id, running

_TRIGGER = "please fail"


class FailingModel(OfflineChatModel):
    """The offline model, failing after its first streamed chunk when asked to."""

    async def _astream(
        self, messages: list[BaseMessage], *args: Any, **kw: Any
    ) -> AsyncIterator[Any]:
        failing = _TRIGGER in str(messages[-1].content)
        async for chunk in super()._astream(messages, *args, **kw):
            yield chunk
            if failing:
                raise RuntimeError("the model provider went away")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """The app on the failing model, in development mode."""
    settings = Settings(database_url="memory://", embeddings="none", api_keys="")
    async with running(create_app(settings, chat_model=FailingModel())) as client:
        yield client


async def _transcript(client: httpx.AsyncClient, thread: str) -> list[str]:
    listed = await client.get(f"/threads/{thread}/messages", params={"limit": 100})
    return [m["content"] for m in listed.json()["items"] if m["role"] == "user"]


async def test_the_native_stream_ends_with_an_error_event(client: httpx.AsyncClient) -> None:
    thread = fresh_id("t")
    body = {"message": f"hello, {_TRIGGER}"}
    async with client.stream("POST", f"/threads/{thread}/runs/stream", json=body) as response:
        assert response.status_code == 200
        events = sse_events((await response.aread()).decode())
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "metadata" and kinds[1] == "token", kinds  # it failed mid-stream
    assert kinds[-1] == "error" and "done" not in kinds
    assert events[-1][1] == {"detail": "the run failed", "status_code": 500}

    after = await client.post(f"/threads/{thread}/runs", json={"message": "hello again"})
    assert after.status_code == 200, after.text  # the thread was released
    assert (await _transcript(client, thread))[-1] == "hello again"


async def test_the_langgraph_stream_ends_with_an_error_event(client: httpx.AsyncClient) -> None:
    thread = (await client.post("/langgraph/threads", json={})).json()["thread_id"]
    body = {
        "assistant_id": "agent",
        "input": {"messages": [{"role": "user", "content": f"hi, {_TRIGGER}"}]},
        "stream_mode": ["messages-tuple", "values"],
    }
    path = f"/langgraph/threads/{thread}/runs/stream"
    async with client.stream("POST", path, json=body) as response:
        assert response.status_code == 200
        run_id = response.headers["content-location"].rsplit("/", 1)[1]
        events = sse_events((await response.aread()).decode())
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "metadata" and "messages" in kinds, kinds  # it failed mid-stream
    assert kinds[-1] == "error"
    assert events[-1][1] == {
        "error": "RuntimeError",
        "message": "the run failed; the server log has the details",
    }
    run = await client.get(f"/langgraph/threads/{thread}/runs/{run_id}")
    assert run.json()["status"] == "error"

    waited = await client.post(
        f"/langgraph/threads/{thread}/runs/wait",
        json={"assistant_id": "agent", "input": {"messages": [{"role": "user", "content": "ok"}]}},
    )
    assert waited.status_code == 200, waited.text
    assert waited.json()["messages"][-1]["type"] == "ai"
