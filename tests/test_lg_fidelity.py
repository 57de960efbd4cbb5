"""What `/langgraph` keeps of a run's request as LangGraph's server does: thread metadata as
sent, the run's metadata and ids in its checkpoints, its `config` given to the graph, the
`Location` of `wait`. On every backend, through the app in process."""

from __future__ import annotations

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
