"""Runs without a thread (`/runs/stream`, `/runs/wait`, `/runs`, `/runs/batch`), as
LangGraph's server runs them: each on a thread made for it, deleted once the run ends
(`on_completion: "delete"`, the default) or kept for its caller (`keep`). On every backend
through the app in process, and with langgraph-sdk (sync and async) and `RemoteGraph`
against a real server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from langgraph.pregel.remote import RemoteGraph
from langgraph_sdk import get_client, get_sync_client

from tests.lgserver import LangGraphServer, langgraph_server
from tests.plugins.server import Api, sse_events

LG = "/langgraph"


def _run(text: str, **extra: Any) -> dict[str, Any]:
    return {
        "assistant_id": "agent",
        "input": {"messages": [{"role": "user", "content": text}]},
        **extra,
    }


def _thread_of(response: Any) -> str:
    """The thread a run was given, from the response's `Content-Location`."""
    return response.headers["content-location"].split("/threads/")[1].split("/")[0]


async def _gone(api: Api, tid: str) -> bool:
    thread = await api.request("alice", "GET", f"{LG}/threads/{tid}")
    transcript = await api.request("alice", "GET", f"/threads/{tid}/messages")
    return thread.status_code == 404 and transcript.status_code == 404


async def _count(api: Api, user: str = "alice") -> int:
    response = await api.request(user, "POST", f"{LG}/threads/count", json={})
    assert response.status_code == 200, response.text
    return int(response.json())


async def test_wait_answers_and_the_thread_goes(api: Api) -> None:
    before = await _count(api)
    response = await api.request("alice", "POST", f"{LG}/runs/wait", json=_run("My name is Sam."))
    assert response.status_code == 200, response.text
    assert response.json()["messages"][-1]["content"] == "Noted: The user's name is Sam."
    assert await _gone(api, _thread_of(response))
    assert await _count(api) == before
    # What the model saved about the user is the user's, and outlives the thread.
    again = await api.request("alice", "POST", f"{LG}/runs/wait", json=_run("what is my name?"))
    assert again.json()["messages"][-1]["content"] == "Your name is Sam."


async def test_keep_leaves_the_thread_to_its_caller_only(api: Api) -> None:
    body = _run("hello", on_completion="keep", metadata={"job": "nightly"})
    response = await api.request("alice", "POST", f"{LG}/runs/wait", json=body)
    assert response.status_code == 200, response.text
    tid = _thread_of(response)
    thread = await api.request("alice", "GET", f"{LG}/threads/{tid}")
    assert thread.status_code == 200 and thread.json()["status"] == "idle"
    (run,) = (await api.request("alice", "GET", f"{LG}/threads/{tid}/runs")).json()
    assert run["metadata"] == {"job": "nightly"} and run["status"] == "success"
    page = (await api.request("alice", "GET", f"/threads/{tid}/messages")).json()
    assert [m["role"] for m in page["items"]] == ["user", "assistant"]
    # Another user's thread: not theirs to read, nor to continue.
    assert (await api.request("bob", "GET", f"{LG}/threads/{tid}")).status_code == 404
    theirs = await api.request("bob", "POST", f"{LG}/threads/{tid}/runs/wait", json=_run("hi"))
    assert theirs.status_code == 404, theirs.text


async def test_stream_streams_then_the_thread_goes(api: Api) -> None:
    body = _run("hi there", stream_mode=["values", "messages-tuple"])
    response = await api.request("alice", "POST", f"{LG}/runs/stream", json=body)
    assert response.status_code == 200, response.text
    events = sse_events(response.text)
    assert events[0][0] == "metadata"
    names = {n for n, _ in events}
    assert names == {"metadata", "values", "messages"}, names
    final = [d for n, d in events if n == "values"][-1]
    assert final["messages"][-1]["content"].startswith("(offline model) You said")
    assert await _gone(api, _thread_of(response))


async def test_background_runs_are_joined_and_their_threads_go(api: Api) -> None:
    kept = await api.request("alice", "POST", f"{LG}/runs", json=_run("one", on_completion="keep"))
    assert kept.status_code == 200, kept.text
    run = kept.json()
    assert run["status"] in ("pending", "running")
    path = f"{LG}/threads/{run['thread_id']}/runs/{run['run_id']}"
    joined = await api.request("alice", "GET", f"{path}/join")
    assert joined.json()["messages"][-1]["content"].startswith("(offline model)")
    assert (await api.request("alice", "GET", path)).json()["status"] == "success"

    dropped = (await api.request("alice", "POST", f"{LG}/runs", json=_run("two"))).json()
    for _ in range(200):  # the run ends in the background; then its thread goes
        if await _gone(api, dropped["thread_id"]):
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the thread of a finished run with on_completion delete is still there")


async def test_batch_starts_each_on_its_own_thread_or_none(api: Api) -> None:
    body = [_run(f"job {i}", on_completion="keep") for i in range(3)]
    response = await api.request("alice", "POST", f"{LG}/runs/batch", json=body)
    assert response.status_code == 200, response.text
    runs = response.json()
    assert len({r["thread_id"] for r in runs}) == 3
    for run, i in zip(runs, range(3), strict=True):
        path = f"{LG}/threads/{run['thread_id']}/runs/{run['run_id']}/join"
        final = (await api.request("alice", "GET", path)).json()
        assert f'"job {i}"' in final["messages"][-1]["content"]
    # One bad run in a batch: none starts.
    before = await _count(api)
    bad = [_run("fine", on_completion="keep"), {**_run("x"), "assistant_id": "nobody"}]
    refused = await api.request("alice", "POST", f"{LG}/runs/batch", json=bad)
    assert refused.status_code == 404 and "nobody" in refused.json()["detail"]
    too_long = [_run("x", on_completion="keep")] * 101
    assert (
        await api.request("alice", "POST", f"{LG}/runs/batch", json=too_long)
    ).status_code == 422
    assert (await api.request("alice", "POST", f"{LG}/runs/batch", json=[])).status_code == 422
    assert await _count(api) == before


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({**_run("x"), "checkpoint_id": "1ef"}, "checkpoint"),
        ({"assistant_id": "agent", "command": {"resume": "yes"}}, "resume"),
        ({**_run("x"), "on_completion": "archive"}, "on_completion"),
        ({"assistant_id": "agent"}, "input"),
    ],
)
async def test_what_a_run_without_a_thread_cannot_do_is_a_422(
    api: Api, body: dict[str, Any], named: str
) -> None:
    before = await _count(api)
    for route in ("runs/wait", "runs/stream", "runs"):
        response = await api.request("alice", "POST", f"{LG}/{route}", json=body)
        assert response.status_code == 422, response.text
        assert named in response.text
    assert await _count(api) == before


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LangGraphServer]:
    tmp = tmp_path_factory.mktemp("lg-stateless")
    with langgraph_server(f"sqlite:///{tmp / 'agent.sqlite'}", tmp) as running:
        yield running


@pytest.mark.slow
def test_sync_sdk_and_remote_graph_without_a_thread(server: LangGraphServer) -> None:
    client = get_sync_client(url=server.url, api_key=server.keys["alice"])
    final = client.runs.wait(None, "agent", input={"messages": [{"role": "user", "content": "hi"}]})
    assert isinstance(final, dict) and final["messages"][-1]["type"] == "ai"
    parts = list(
        client.runs.stream(None, "agent", input={"messages": [{"role": "user", "content": "hey"}]})
    )
    assert parts[0].event == "metadata" and parts[-1].event == "values"
    assert client.threads.search() == []  # both threads went with their runs
    # RemoteGraph with no thread in its config runs without one.
    remote = RemoteGraph("agent", url=server.url, api_key=server.keys["alice"])
    out = remote.invoke({"messages": [{"role": "user", "content": "hello"}]})
    assert out["messages"][-1]["content"].startswith("(offline model)")
    assert client.threads.search() == []


@pytest.mark.slow
async def test_async_sdk_batch_and_keep(server: LangGraphServer) -> None:
    client = get_client(url=server.url, api_key=server.keys["bob"])
    payloads = [
        {
            "assistant_id": "agent",
            "input": {"messages": [{"role": "user", "content": f"job {i}"}]},
            "on_completion": "keep",
        }
        for i in range(2)
    ]
    runs = await client.runs.create_batch(payloads)  # type: ignore[arg-type]
    for run in runs:
        await client.runs.join(run["thread_id"], run["run_id"])
    threads = await client.threads.search()
    assert {t["thread_id"] for t in threads} == {r["thread_id"] for r in runs}
    kept = await client.runs.create(
        None,
        "agent",
        input={"messages": [{"role": "user", "content": "later"}]},
        on_completion="keep",
    )
    final = await client.runs.join(kept["thread_id"], kept["run_id"])
    assert final["messages"][-1]["type"] == "ai"
    other = get_client(url=server.url, api_key=server.keys["alice"])
    assert kept["thread_id"] not in {t["thread_id"] for t in await other.threads.search()}
