"""Runs from a checkpoint over `/langgraph`: the latest one (what agent-chat-ui sends with
every submit), and earlier ones: a regenerated reply and an edited message, as a `useStream`
UI asks for them. On every backend, through the app in process."""

from __future__ import annotations

from typing import Any

import pytest

from tests.plugins.server import Api, ApiFactory, fresh_id

LG = "/langgraph"


def _human(text: str) -> dict[str, Any]:
    return {"type": "human", "content": [{"type": "text", "text": text}]}


def _run(
    messages: list[dict[str, Any]] | None, checkpoint: dict[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "assistant_id": "agent",
        "input": None if messages is None else {"messages": messages},
        "stream_mode": ["values"],
        "if_not_exists": "create",
    }
    if checkpoint is not None:
        body["checkpoint"] = checkpoint
    return body


async def _wait(api: Api, user: str, tid: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await api.request(user, "POST", f"{LG}/threads/{tid}/runs/wait", json=body)
    assert response.status_code == 200, response.text
    values = response.json()
    assert "__error__" not in values, values
    return values


async def _history(api: Api, user: str, tid: str) -> list[dict[str, Any]]:
    response = await api.request(user, "POST", f"{LG}/threads/{tid}/history", json={"limit": 100})
    assert response.status_code == 200, response.text
    return response.json()


def _first_seen(history: list[dict[str, Any]], message_id: str) -> dict[str, Any]:
    """The oldest state showing `message_id`, as `useStream` finds a message's branch point."""
    seen = [s for s in history if any(m["id"] == message_id for m in s["values"]["messages"])]
    return seen[-1]  # history is newest first


async def _transcript(api: Api, user: str, tid: str) -> list[dict[str, Any]]:
    response = await api.request(user, "GET", f"/threads/{tid}/messages")
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["total"] == len(page["items"])
    assert [m["seq"] for m in page["items"]] == list(range(page["total"]))
    return page["items"]


def _texts(messages: list[dict[str, Any]]) -> list[str]:
    out = []
    for m in messages:
        content = m["content"]
        if isinstance(content, list):
            content = "".join(b.get("text", "") for b in content if isinstance(b, dict))
        out.append(content)
    return out


@pytest.fixture
async def api(make_api: ApiFactory) -> Any:
    async with make_api() as running:
        yield running


async def test_every_submit_with_the_latest_checkpoint_holds_a_conversation(api: Api) -> None:
    tid = fresh_id("fork")
    await _wait(api, "alice", tid, _run([_human("one")]))
    for text in ("two", "three"):
        state = (await api.request("alice", "GET", f"{LG}/threads/{tid}/state")).json()
        head = {**state["checkpoint"], "checkpoint_map": None}  # as langgraph-sdk 1.8 sends it
        head.pop("thread_id", None)
        values = await _wait(api, "alice", tid, _run([_human(text)], head))
        assert _texts(values["messages"])[-2] == text
    records = await _transcript(api, "alice", tid)
    assert [r["role"] for r in records] == ["user", "assistant"] * 3
    assert _texts(records)[::2] == ["one", "two", "three"]


async def test_regenerate_and_edit_fork_the_thread(api: Api) -> None:
    tid = fresh_id("fork")
    await _wait(api, "alice", tid, _run([_human("one")]))
    values = await _wait(api, "alice", tid, _run([_human("two")]))
    first_reply = values["messages"][-1]
    assert first_reply["type"] == "ai"

    # Regenerate: no input, from the checkpoint before the reply first appeared.
    history = await _history(api, "alice", tid)
    parent = _first_seen(history, first_reply["id"])["parent_checkpoint"]
    values = await _wait(api, "alice", tid, _run(None, parent))
    again = values["messages"][-1]
    assert again["type"] == "ai" and again["id"] != first_reply["id"]
    assert len(values["messages"]) == 4 and _texts(values["messages"])[::2] == ["one", "two"]
    records = await _transcript(api, "alice", tid)
    assert [r["id"] for r in records][-1] == again["id"]
    assert first_reply["id"] not in [r["id"] for r in records]
    assert len(records) == 4

    # The branch left behind is still readable at its checkpoint.
    old = _first_seen(history, first_reply["id"])["checkpoint"]["checkpoint_id"]
    response = await api.request("alice", "GET", f"{LG}/threads/{tid}/state/{old}")
    assert response.status_code == 200, response.text
    assert response.json()["values"]["messages"][-1]["id"] == first_reply["id"]

    # Edit: "two" replaced, from the checkpoint before it first appeared.
    history = await _history(api, "alice", tid)
    two = values["messages"][2]
    parent = _first_seen(history, two["id"])["parent_checkpoint"]
    values = await _wait(api, "alice", tid, _run([_human("two, edited")], parent))
    assert _texts(values["messages"])[2] == "two, edited"
    records = await _transcript(api, "alice", tid)
    assert _texts(records)[::2] == ["one", "two, edited"]
    assert len(records) == 4
    thread = (await api.request("alice", "GET", f"/threads/{tid}")).json()
    assert thread["message_count"] == 4

    # And the thread goes on from the edit.
    values = await _wait(api, "alice", tid, _run([_human("three")]))
    records = await _transcript(api, "alice", tid)
    assert _texts(records)[::2] == ["one", "two, edited", "three"]


async def test_a_checkpoint_that_is_not_the_threads_is_404(api: Api) -> None:
    tid, other = fresh_id("fork"), fresh_id("fork")
    await _wait(api, "alice", tid, _run([_human("one")]))
    await _wait(api, "bob", other, _run([_human("mine")]))
    bobs = (await api.request("bob", "GET", f"{LG}/threads/{other}/state")).json()["checkpoint"]
    for user, thread, checkpoint in (
        ("alice", tid, {"checkpoint_id": "1f0-no-such-checkpoint"}),
        ("alice", tid, {"checkpoint_id": bobs["checkpoint_id"]}),
        ("alice", other, {"checkpoint_id": bobs["checkpoint_id"]}),
    ):
        response = await api.request(
            user, "POST", f"{LG}/threads/{thread}/runs/wait", json=_run(None, checkpoint)
        )
        assert response.status_code == 404, response.text
        assert "not found" in response.json()["detail"]
    records = await _transcript(api, "alice", tid)
    assert len(records) == 2
    no_input = {**_run(None), "input": None}
    response = await api.request("alice", "POST", f"{LG}/threads/{tid}/runs/wait", json=no_input)
    assert response.status_code == 422
