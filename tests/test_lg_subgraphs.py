"""A served graph with a subgraph, streamed with `stream_subgraphs` as LangGraph's server
streams it: each subgraph part named `mode|namespace`, the graph's own parts unchanged;
without it, the subgraph's parts stay inside. On every backend through the app in process,
and with `RemoteGraph` (`subgraphs=True`) against a real server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from langgraph.pregel.remote import RemoteGraph

from tests.lgserver import LangGraphServer, langgraph_server
from tests.plugins.server import Api, ApiFactory, fresh_id, sse_events

LG = "/langgraph"
GRAPH = "tests.owngraph:make_checked_graph"


def _run(text: str, **extra: Any) -> dict[str, Any]:
    return {
        "assistant_id": "agent",
        "if_not_exists": "create",
        "input": {"messages": [{"role": "user", "content": text}]},
        **extra,
    }


@pytest.fixture
async def api(make_api: ApiFactory) -> Any:
    async with make_api(graph=GRAPH) as running:
        yield running


async def test_subgraph_parts_come_under_their_namespace(api: Api) -> None:
    tid = fresh_id("subgraphs")
    modes = ["updates", "custom", "checkpoints", "messages-tuple"]
    body = _run("hi there", stream_mode=modes, stream_subgraphs=True, stream_resumable=True)
    response = await api.request("alice", "POST", f"{LG}/threads/{tid}/runs/stream", json=body)
    assert response.status_code == 200, response.text
    events = sse_events(response.text)
    inner = [(n, d) for n, d in events if "|" in n]
    spaces = {n.split("|", 1)[1] for n, _ in inner}
    assert len(spaces) == 1, spaces
    (space,) = spaces
    assert space.startswith("check:")
    named = {(n.split("|", 1)[0], str(d)) for n, d in inner if not n.startswith("checkpoints")}
    assert named == {("updates", "{'inspect': {'checks': 1}}"), ("custom", "{'checked': 2}")}
    # The subgraph's checkpoints carry its namespace and the client's thread id.
    for name, data in inner:
        if name.startswith("checkpoints|"):
            conf = data["config"]["configurable"]
            assert conf["checkpoint_ns"] == space and conf["thread_id"] == tid
    # The graph's own parts are as without subgraphs: the subgraph node's update among them.
    outer = [n for n, _ in events if "|" not in n]
    assert "messages" in outer and "custom" not in outer
    updates = [next(iter(d)) for n, d in events if n == "updates"]
    assert updates == ["call_model", "check", "record_messages"]
    # The subgraph's count stays its own: not in the thread's state.
    state = (await api.request("alice", "GET", f"{LG}/threads/{tid}/state")).json()
    assert "checks" not in state["values"]
    # Rejoined, the same events again.
    (meta,) = [d for n, d in events if n == "metadata"]
    path = f"{LG}/threads/{tid}/runs/{meta['run_id']}/stream"
    again = sse_events((await api.request("alice", "GET", path)).text)
    assert [e for e in again if e[0] != "metadata"] == [e for e in events if e[0] != "metadata"]

    # Without stream_subgraphs nothing of the subgraph's comes out.
    body = _run("and again", stream_mode=modes)
    plain = await api.request("alice", "POST", f"{LG}/threads/{tid}/runs/stream", json=body)
    assert plain.status_code == 200, plain.text
    names = [n for n, _ in sse_events(plain.text)]
    assert not [n for n in names if "|" in n] and "custom" not in names
    assert [next(iter(d)) for n, d in sse_events(plain.text) if n == "updates"] == updates


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LangGraphServer]:
    tmp = tmp_path_factory.mktemp("lg-subgraphs")
    with langgraph_server(f"sqlite:///{tmp / 'agent.sqlite'}", tmp, graph=GRAPH) as running:
        yield running


@pytest.mark.slow
async def test_remote_graph_streams_the_subgraphs(server: LangGraphServer) -> None:
    """`RemoteGraph.astream(subgraphs=True)` reads the namespaces back as the tuples a local
    graph gives: `()` for the graph's own parts, `("check:<task>",)` for the subgraph's."""
    remote = RemoteGraph("agent", url=server.url, api_key=server.keys["alice"])
    config = {"configurable": {"thread_id": str(uuid.uuid4())}}
    parts = [
        part
        async for part in remote.astream(
            {"messages": [{"role": "user", "content": "hello"}]},
            config,
            stream_mode=["updates", "custom"],
            subgraphs=True,
        )
    ]
    spaces = {ns for ns, _, _ in parts}
    assert () in spaces and len(spaces) == 2
    (inner,) = spaces - {()}
    assert len(inner) == 1 and inner[0].startswith("check:")
    assert (inner, "custom", {"checked": 2}) in parts
    assert (inner, "updates", {"inspect": {"checks": 1}}) in parts
    own = [next(iter(chunk)) for ns, mode, chunk in parts if ns == () and mode == "updates"]
    assert own == ["call_model", "check", "record_messages"]
