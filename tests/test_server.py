"""The HTTP server: runs, streaming, transcripts and start-up, on every backend."""

from __future__ import annotations

import logging

import pytest

from agent import OFFLINE_NOTICE
from memory.settings import Settings
from memory.stores.factory import scheme_of
from server.app import DEV_MODE_WARNING, create_app
from tests.plugins.server import Api, fresh_id, running, sse_events


async def test_run_creates_the_thread_and_remembers_across_runs(api: Api) -> None:
    thread = fresh_id("t")
    first = await api.run("alice", thread, "my name is Sam")
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["thread_id"] == thread
    assert "Sam" in body["reply"]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "tool", "assistant"]
    assert body["messages"][0]["content"] == "my name is Sam"

    second = await api.run("alice", thread, "what is my name?")
    assert second.status_code == 200
    assert second.json()["reply"] == "Your name is Sam."
    assert [m["seq"] for m in second.json()["messages"]] == [4, 5]


async def test_run_accepts_a_list_of_messages(api: Api) -> None:
    thread = fresh_id("t")
    response = await api.request(
        "alice",
        "POST",
        f"/threads/{thread}/runs",
        json={
            "messages": [
                {"role": "user", "content": "hello"},
                {"role": "assistant", "content": "hi, how can I help?"},
                {"role": "user", "content": "my favourite colour is green"},
            ]
        },
    )
    assert response.status_code == 200, response.text
    roles = [m["role"] for m in response.json()["messages"]]
    assert roles[:3] == ["user", "assistant", "user"]
    assert "green" in response.json()["reply"]


async def test_stream_sends_tokens_then_the_full_result(api: Api) -> None:
    thread = fresh_id("t")
    await api.run("alice", thread, "my name is Ada")
    response = await api.request(
        "alice", "POST", f"/threads/{thread}/runs/stream", json={"message": "what is my name?"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    run_id = response.headers["content-location"].split("/")[-2]
    assert events[0] == ("metadata", {"thread_id": thread, "run_id": run_id})
    tokens = [data["text"] for name, data in events if name == "token"]
    assert len(tokens) > 1
    name, done = events[-1]
    assert name == "done"
    assert "".join(tokens) == done["reply"] == "Your name is Ada."
    assert [m["role"] for m in done["messages"]] == ["user", "assistant"]
    listed = await api.request("alice", "GET", f"/threads/{thread}/messages")
    assert listed.json()["total"] == 6


async def test_messages_are_paged_oldest_first_with_total(api: Api) -> None:
    thread = fresh_id("t")
    for text in ("one", "two", "three"):
        assert (await api.run("alice", thread, text)).status_code == 200
    everything = (await api.request("alice", "GET", f"/threads/{thread}/messages")).json()
    assert everything["total"] == 6
    assert [m["seq"] for m in everything["items"]] == list(range(6))
    page = (
        await api.request("alice", "GET", f"/threads/{thread}/messages?limit=2&offset=2")
    ).json()
    assert page["total"] == 6
    assert page["items"][0]["content"] == "two"
    assert [m["seq"] for m in page["items"]] == [2, 3]


async def test_messages_of_an_unknown_thread_is_404(api: Api) -> None:
    response = await api.request("alice", "GET", f"/threads/{fresh_id('nope')}/messages")
    assert response.status_code == 404
    assert "not found" in response.json()["detail"]


async def test_healthz(api: Api) -> None:
    response = await api.client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_startup_logs_backend_model_and_modes(
    app_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="memory_agent.server")
    app = create_app(Settings(database_url=app_url, model="offline", api_keys=""))
    async with running(app) as client:
        assert (await client.get("/healthz")).status_code == 200
    text = caplog.text
    kind = scheme_of(app_url)
    assert f"checkpointer {kind}" in text
    assert "model: offline" in text
    assert OFFLINE_NOTICE in text
    assert DEV_MODE_WARNING in text


async def test_dev_mode_acts_as_local_without_a_key(app_url: str) -> None:
    app = create_app(Settings(database_url=app_url, api_keys=""))
    async with running(app) as client:
        thread = fresh_id("t")
        response = await client.post(f"/threads/{thread}/runs", json={"message": "hi"})
        assert response.status_code == 200
        detail = (await client.get(f"/threads/{thread}")).json()
        assert detail["user"] == "local"


async def test_create_app_accepts_plain_storage_settings(app_url: str) -> None:
    from memory.settings import Settings

    app = create_app(Settings(database_url=app_url))
    assert isinstance(app.state.settings, Settings)
    assert app.state.settings.database_url == app_url
