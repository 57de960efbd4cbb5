"""What `/langgraph` keeps of a run's request as LangGraph's server does: thread metadata as
sent, the run's metadata and ids in its checkpoints, its `config` given to the graph, the
`Location` of `wait`. On every backend, through the app in process."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.plugins.server import Api, ApiFactory, fresh_id

LG = "/langgraph"


def _run(text: str, **extra: Any) -> dict[str, Any]:
    return {
        "assistant_id": "agent",
        "input": {"messages": [{"role": "user", "content": text}]},
        "if_not_exists": "create",
        **extra,
    }


@pytest.fixture
async def api(make_api: ApiFactory) -> Any:
    async with make_api() as running:
        yield running


async def test_thread_metadata_is_kept_as_sent_until_a_run(api: Api) -> None:
    created = await api.request("alice", "POST", f"{LG}/threads", json={"metadata": {"n": "x"}})
    assert created.status_code == 200, created.text
    tid = created.json()["thread_id"]
    assert created.json()["metadata"] == {"n": "x"}
    fetched = await api.request("alice", "GET", f"{LG}/threads/{tid}")
    assert fetched.json()["metadata"] == {"n": "x"}
    response = await api.request("alice", "POST", f"{LG}/threads/{tid}/runs/wait", json=_run("hi"))
    assert response.status_code == 200, response.text
    metadata = (await api.request("alice", "GET", f"{LG}/threads/{tid}")).json()["metadata"]
    assert metadata == {"n": "x", "graph_id": "agent", "assistant_id": metadata["assistant_id"]}


async def test_checkpoints_carry_the_runs_metadata_and_ids(api: Api) -> None:
    tid = fresh_id("fid")
    body = _run("hello", metadata={"purpose": "check"})
    response = await api.request("alice", "POST", f"{LG}/threads/{tid}/runs/wait", json=body)
    assert response.status_code == 200, response.text
    run_path = response.headers["content-location"]
    run_id = run_path.rsplit("/", 1)[1]
    assert response.headers["location"] == f"/threads/{tid}/runs/{run_id}/join"
    joined = await api.request("alice", "GET", f"{LG}{response.headers['location']}")
    assert joined.status_code == 200 and joined.json() == response.json()

    history = await api.request(
        "alice", "POST", f"{LG}/threads/{tid}/history", json={"metadata": {"run_id": run_id}}
    )
    assert history.status_code == 200, history.text
    states = history.json()
    assert states, "no checkpoint found by the run's id"
    for state in states:
        metadata = state["metadata"]
        assert metadata["run_id"] == run_id and metadata["purpose"] == "check"
        assert metadata["graph_id"] == "agent" and metadata["thread_id"] == tid
        assert metadata["assistant_id"]
    by_purpose = await api.request(
        "alice", "POST", f"{LG}/threads/{tid}/history", json={"metadata": {"purpose": "check"}}
    )
    assert len(by_purpose.json()) == len(states)
    other = await api.request(
        "alice", "POST", f"{LG}/threads/{tid}/history", json={"metadata": {"purpose": "other"}}
    )
    assert other.json() == []


async def test_the_runs_config_reaches_the_graph(api: Api) -> None:
    tid = fresh_id("fid")
    # The offline model saves a memory on this message: model, tools, model (three steps).
    limited = _run("my name is Sam", config={"recursion_limit": 1})
    response = await api.request("alice", "POST", f"{LG}/threads/{tid}/runs/wait", json=limited)
    assert response.status_code == 200, response.text
    assert response.json()["__error__"]["error"] == "GraphRecursionError"

    tid = fresh_id("fid")
    body = _run(
        "my name is Sam",
        config={
            "recursion_limit": 25,
            "tags": ["t"],
            "configurable": {"thread_id": "elsewhere", "user_id": "mallory", "mine": 1},
        },
    )
    response = await api.request("alice", "POST", f"{LG}/threads/{tid}/runs/wait", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["messages"][-1]["content"] == "Noted: The user's name is Sam."
    # The server's own keys were not taken: the run is on the thread of the path, and
    # its memory is the caller's.
    page = await api.request("alice", "GET", f"/threads/{tid}/messages")
    assert page.json()["total"] == 4
    assert (await api.request("bob", "GET", "/memories")).json()["items"] == []
    memories = (await api.request("alice", "GET", "/memories")).json()["items"]
    assert any("Sam" in str(m) for m in memories)

    for bad in ({"recursion_limit": 0}, {"recursion_limit": "many"}, {"tags": "t"}):
        response = await api.request(
            "alice", "POST", f"{LG}/threads/{tid}/runs/wait", json=_run("x", config=bad)
        )
        assert response.status_code == 422, (bad, response.text)
        assert "config" in response.text


def _events(text: str) -> list[tuple[str, Any]]:
    """Server-sent events of a body, as (event, data) pairs."""
    out = []
    for block in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.split("\n") if ": " in line and line[0] != ":"
        )
        if "event" in fields:
            out.append((fields["event"], json.loads(fields["data"])))
    return out


async def test_older_messages_mode_streams_each_message_so_far(api: Api) -> None:
    tid = fresh_id("partials")
    body = _run("My name is Sam.", stream_mode=["messages", "values"], stream_resumable=True)
    response = await api.request("alice", "POST", f"{LG}/threads/{tid}/runs/stream", json=body)
    assert response.status_code == 200, response.text
    events = _events(response.text)
    (meta,) = [d for n, d in events if n == "metadata"]
    described = [d for n, d in events if n == "messages/metadata"]
    ids = [next(iter(d)) for d in described]
    assert len(ids) == len(set(ids))  # each message described once, before its parts
    for d in described:
        (entry,) = d.values()
        assert entry["metadata"]["run_id"] == meta["run_id"]
        assert entry["metadata"]["thread_id"] == tid
    last: dict[str, dict[str, Any]] = {}
    for name, data in events:
        if name in ("messages/partial", "messages/complete"):
            (message,) = data
            assert message["id"] in ids[: len(last) + 1]
            assert "tool_call_chunks" not in message  # shaped as the message it becomes
            last[message["id"]] = message
    # The last part of each message is the message the thread keeps.
    (final,) = [d for n, d in events if n == "values"][-1:]
    kept = {m["id"]: m for m in final["messages"]}
    replies = [m for i, m in last.items() if i in kept]
    assert [m["type"] for m in replies] == ["ai", "tool", "ai"]
    for m in replies:
        assert m["content"] == kept[m["id"]]["content"]
        assert m.get("tool_calls", []) == kept[m["id"]].get("tool_calls", [])
    assert [n for n, _ in events if n == "messages/complete"] == ["messages/complete"]  # the tool's
    # Rejoined, the same parts again; another user's rejoin finds nothing.
    path = f"{LG}/threads/{tid}/runs/{meta['run_id']}/stream"
    again = await api.request("alice", "GET", path)
    assert [e for e in _events(again.text) if e[0] != "metadata"] == [
        e for e in events if e[0] != "metadata"
    ]
    assert (await api.request("bob", "GET", path)).status_code == 404
    # Both message modes asked for: the tuples alone, as langgraph-api sends them.
    body = _run("hello", stream_mode=["messages", "messages-tuple"])
    both = await api.request("alice", "POST", f"{LG}/threads/{tid}/runs/stream", json=body)
    names = {n for n, _ in _events(both.text)}
    assert names == {"metadata", "messages"}, names


async def test_callback_events_stream_rejoin_and_the_turn_is_kept(api: Api) -> None:
    tid = fresh_id("events")
    body = _run("hi there", stream_mode=["events"], stream_resumable=True)
    response = await api.request("alice", "POST", f"{LG}/threads/{tid}/runs/stream", json=body)
    assert response.status_code == 200, response.text
    events = _events(response.text)
    assert {n for n, _ in events} == {"metadata", "events"}
    feed = [d for n, d in events if n == "events"]
    assert (feed[0]["event"], feed[-1]["event"]) == ("on_chain_start", "on_chain_end")
    assert feed[0]["run_id"] == feed[-1]["run_id"] and feed[0]["parent_ids"] == []
    tokens = "".join(
        d["data"]["chunk"]["content"] for d in feed if d["event"] == "on_chat_model_stream"
    )
    assert tokens.startswith("(offline model) You said")
    assert all(d["metadata"].get("thread_id", tid) == tid for d in feed)
    # The turn is kept as with any other mode.
    page = (await api.request("alice", "GET", f"/threads/{tid}/messages")).json()
    assert [m["role"] for m in page["items"]] == ["user", "assistant"]
    assert page["items"][1]["content"] == tokens
    (meta,) = [d for n, d in events if n == "metadata"]
    path = f"{LG}/threads/{tid}/runs/{meta['run_id']}/stream"
    again = await api.request("alice", "GET", path)
    assert [e for e in _events(again.text) if e[0] != "metadata"] == [
        e for e in events if e[0] != "metadata"
    ]
    assert (await api.request("bob", "GET", path)).status_code == 404


async def test_step_events_stream_and_rejoin_with_the_clients_ids(api: Api) -> None:
    tid = fresh_id("steps")
    modes = ["tasks", "checkpoints", "debug"]
    body = _run("hi there", stream_mode=modes, stream_resumable=True)
    response = await api.request("alice", "POST", f"{LG}/threads/{tid}/runs/stream", json=body)
    assert response.status_code == 200, response.text
    events = _events(response.text)
    (meta,) = [d for n, d in events if n == "metadata"]
    run_id = meta["run_id"]
    checkpoints = [d for n, d in events if n == "checkpoints"]
    debug = [d for n, d in events if n == "debug"]
    tasks = [d for n, d in events if n == "tasks"]
    # Each checkpoint the run wrote, in order, as history lists them (newest first there).
    history = await api.request("alice", "POST", f"{LG}/threads/{tid}/history", json={})
    written = [s["checkpoint"]["checkpoint_id"] for s in history.json()][::-1]
    assert [c["config"]["configurable"]["checkpoint_id"] for c in checkpoints] == written
    for c in checkpoints + [d["payload"] for d in debug if d["type"] == "checkpoint"]:
        conf = c["config"]["configurable"]
        assert conf["thread_id"] == tid and conf["run_id"] == run_id
        assert set(conf) == {
            "thread_id",
            "checkpoint_ns",
            "checkpoint_id",
            "run_id",
            "graph_id",
            "assistant_id",
        }
    # `debug` carries the same checkpoints and tasks, typed and stepped.
    assert [d["payload"] for d in debug if d["type"] == "checkpoint"] == [
        {
            **c,
            "checkpoint": {"checkpoint_id": cid, "thread_id": tid, "checkpoint_ns": ""},
            "parent_checkpoint": (
                None
                if c["parent_config"] is None
                else {
                    "checkpoint_id": c["parent_config"]["configurable"]["checkpoint_id"],
                    "thread_id": tid,
                    "checkpoint_ns": "",
                }
            ),
        }
        for c, cid in zip(checkpoints, written, strict=True)
    ]
    assert [d["payload"] for d in debug if d["type"] != "checkpoint"] == tasks
    started = [t for t in tasks if "input" in t]
    assert [t["name"] for t in started] == ["call_model"]
    assert started[0]["metadata"]["run_id"] == run_id
    (result,) = [t for t in tasks if "result" in t]
    assert result["id"] == started[0]["id"] and result["error"] is None
    assert result["result"]["messages"][0]["type"] == "ai"
    # Rejoined later, the run's stream gives the same events again.
    path = f"{LG}/threads/{tid}/runs/{run_id}/stream"
    again = await api.request("alice", "GET", path, params={"stream_mode": modes})
    assert again.status_code == 200, again.text
    assert [e for e in _events(again.text) if e[0] != "metadata"] == [
        e for e in events if e[0] != "metadata"
    ]
    # Another user's rejoin finds nothing.
    theirs = await api.request("bob", "GET", path)
    assert theirs.status_code == 404, theirs.text
