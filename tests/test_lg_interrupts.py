"""A served graph of the application's own that pauses (`interrupt()`) and is answered
(`command.resume`) over `/langgraph`, as LangGraph's server serves it; breakpoints
(`interrupt_before`). On every backend through the app in process, and with langgraph-sdk
(sync and async) and `RemoteGraph` against a real server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from langgraph.pregel.remote import RemoteGraph
from langgraph.types import Command
from langgraph_sdk import get_client, get_sync_client

from tests.lgserver import LangGraphServer, langgraph_server
from tests.plugins.server import Api, ApiFactory, fresh_id, sse_events

LG = "/langgraph"
GRAPH = "tests.owngraph:make_reviewed_graph"


def _run(text: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"assistant_id": "agent", "if_not_exists": "create", **extra}
    if text is not None:
        body["input"] = {"messages": [{"role": "user", "content": text}]}
    return body


@pytest.fixture
async def api(make_api: ApiFactory) -> Any:
    async with make_api(graph=GRAPH) as running:
        yield running


async def _thread(api: Api, tid: str) -> dict[str, Any]:
    response = await api.request("alice", "GET", f"{LG}/threads/{tid}")
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_graph_that_pauses_twice_is_answered_twice(api: Api) -> None:
    tid = fresh_id("hitl")
    url = f"{LG}/threads/{tid}/runs"
    first = await api.request("alice", "POST", f"{url}/wait", json=_run("hello"))
    assert first.status_code == 200, first.text
    (pause,) = first.json()["__interrupt__"]
    assert pause["value"]["question"] == "Send this reply?" and pause["id"]
    thread = await _thread(api, tid)
    assert thread["status"] == "interrupted"
    state = (await api.request("alice", "GET", f"{LG}/threads/{tid}/state")).json()
    assert state["next"] == ["review"]
    assert state["interrupts"] == [pause]
    assert state["tasks"][0]["interrupts"] == [pause]
    run_id = first.headers["content-location"].rsplit("/", 1)[1]
    run = (await api.request("alice", "GET", f"{url}/{run_id}")).json()
    assert run["status"] == "success"  # as LangGraph's server: the thread waits, the run ended

    # A new message while it waits is refused by nothing: it is the graph's to decide; the
    # answer resumes it. The first answer meets the second pause.
    second = await api.request(
        "alice",
        "POST",
        f"{url}/stream",
        json=_run(command={"resume": "yes"}, stream_mode=["values"]),
    )
    assert second.status_code == 200, second.text
    events = sse_events(second.text)
    paused = [d for e, d in events if e == "values" and "__interrupt__" in d]
    assert paused and paused[-1]["__interrupt__"][0]["value"] == {"question": "Sure?"}
    assert (await _thread(api, tid))["status"] == "interrupted"

    third = await api.request("alice", "POST", f"{url}/wait", json=_run(command={"resume": "sure"}))
    assert third.status_code == 200, third.text
    assert "__interrupt__" not in third.json()
    assert third.json()["messages"][-1]["content"] == "reviewed: yes / sure"
    assert (await _thread(api, tid))["status"] == "idle"
    page = (await api.request("alice", "GET", f"/threads/{tid}/messages")).json()
    assert [m["role"] for m in page["items"]] == ["user", "assistant", "assistant"]
    assert page["items"][-1]["content"] == "reviewed: yes / sure"


async def test_updates_carry_the_pause_and_breakpoints_stop_before_a_node(api: Api) -> None:
    tid = fresh_id("hitl")
    url = f"{LG}/threads/{tid}/runs"
    response = await api.request(
        "alice", "POST", f"{url}/stream", json=_run("hi", stream_mode=["updates"])
    )
    updates = [d for e, d in sse_events(response.text) if e == "updates"]
    assert "__interrupt__" in updates[-1]
    assert updates[-1]["__interrupt__"][0]["value"]["question"] == "Send this reply?"

    tid = fresh_id("hitl")
    url = f"{LG}/threads/{tid}/runs"
    response = await api.request(
        "alice", "POST", f"{url}/wait", json=_run("hi", interrupt_before=["review"])
    )
    assert response.status_code == 200, response.text
    state = (await api.request("alice", "GET", f"{LG}/threads/{tid}/state")).json()
    assert state["next"] == ["review"] and state["interrupts"] == []
    assert (await _thread(api, tid))["status"] == "interrupted"
    # Going on with no input runs the node, which now pauses of its own.
    response = await api.request(
        "alice", "POST", f"{url}/wait", json=_run(command={"resume": None})
    )
    assert response.status_code == 200, response.text

    bad = await api.request(
        "alice", "POST", f"{url}/wait", json=_run("hi", interrupt_after=["no_such_node"])
    )
    assert bad.status_code == 422 and "no_such_node" in bad.json()["detail"]
    both = await api.request(
        "alice", "POST", f"{url}/wait", json=_run("hi", command={"resume": "x"})
    )
    assert both.status_code == 422 and "not both" in both.text


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LangGraphServer]:
    tmp = tmp_path_factory.mktemp("lg-hitl")
    with langgraph_server(f"sqlite:///{tmp / 'agent.sqlite'}", tmp, graph=GRAPH) as running:
        yield running


@pytest.mark.slow
def test_sync_sdk_and_remote_graph_resume(server: LangGraphServer) -> None:
    client = get_sync_client(url=server.url, api_key=server.keys["alice"])
    thread = client.threads.create()
    tid = thread["thread_id"]
    out = client.runs.wait(tid, "agent", input={"messages": [{"role": "user", "content": "hi"}]})
    assert out["__interrupt__"][0]["value"]["question"] == "Send this reply?"
    out = client.runs.wait(tid, "agent", command={"resume": "one"})
    assert out["__interrupt__"][0]["value"] == {"question": "Sure?"}
    out = client.runs.wait(tid, "agent", command={"resume": "two"})
    assert out["messages"][-1]["content"] == "reviewed: one / two"

    remote = RemoteGraph("agent", url=server.url, api_key=server.keys["alice"])
    config = {"configurable": {"thread_id": str(uuid.uuid4())}}
    client.threads.create(thread_id=config["configurable"]["thread_id"])
    chunks = list(remote.stream({"messages": [{"role": "user", "content": "hey"}]}, config))
    assert any("__interrupt__" in c for c in chunks)
    remote.invoke(Command(resume="a"), config)
    final = remote.invoke(Command(resume="b"), config)
    assert final["messages"][-1]["content"] == "reviewed: a / b"


@pytest.mark.slow
async def test_async_sdk_resume_by_interrupt_id(server: LangGraphServer) -> None:
    client = get_client(url=server.url, api_key=server.keys["bob"])
    tid = (await client.threads.create())["thread_id"]
    out = await client.runs.wait(
        tid, "agent", input={"messages": [{"role": "user", "content": "x"}]}
    )
    (pause,) = out["__interrupt__"]
    out = await client.runs.wait(tid, "agent", command={"resume": {pause["id"]: "by id"}})
    (pause,) = out["__interrupt__"]
    out = await client.runs.wait(tid, "agent", command={"resume": {pause["id"]: "again"}})
    assert out["messages"][-1]["content"] == "reviewed: by id / again"
    # Another user cannot answer it.
    other = get_client(url=server.url, api_key=server.keys["carol"])
    with pytest.raises(Exception, match="404"):
        await other.runs.wait(tid, "agent", command={"resume": "mine"})
