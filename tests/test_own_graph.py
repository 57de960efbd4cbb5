"""A graph of the application's own, built from the pieces and served by MEMORY_AGENT_GRAPH:
ownership, one run per thread, a bounded window and a complete transcript still hold."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest
from langchain_core.messages import AIMessage
from langchain_core.messages.utils import count_tokens_approximately

from agent.loading import AppConfigError
from agent.namespaces import Owner
from memory.settings import Settings
from server.app import create_app
from tests.lgserver import langgraph_server, post
from tests.plugins.server import ApiFactory, GatedModel, fresh_id
from tests.scripted import ScriptedChatModel
from tests.test_cli import command

GRAPH = "tests.owngraph:make_graph"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def app_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The backends this module serves the graph on."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('own') / 'agent.sqlite'}"
    return request.getfixturevalue("postgres_url")


def _order_call(call_id: str) -> AIMessage:
    return AIMessage(
        "", tool_calls=[{"id": call_id, "name": "order_status", "args": {"order_id": "A-1"}}]
    )


async def test_runs_call_the_applications_tool_and_record_it(make_api: ApiFactory) -> None:
    model = ScriptedChatModel(replies=[_order_call("c1"), AIMessage("Ready at 9.")])
    async with make_api(graph=GRAPH, chat_model=model) as api:
        assert list(api.app.state.sessions.graph.nodes)[1:] == [
            "summarize_conversation",
            "call_model",
            "tools",
        ]
        thread = fresh_id("t")
        ran = await api.run("alice", thread, "is order A-1 ready?")
        assert ran.status_code == 200, ran.text
        assert ran.json()["reply"] == "Ready at 9."
        listed = (await api.request("alice", "GET", f"/threads/{thread}/messages")).json()
        assert [m["role"] for m in listed["items"]] == ["user", "assistant", "tool", "assistant"]
        assert listed["items"][2]["content"] == "two croissants, ready at 9:00"
        assert model.prompts[0][0].content.startswith("Bakery.")  # the graph's own prompt
        for path in (f"/threads/{thread}", f"/threads/{thread}/messages"):
            assert (await api.request("bob", "GET", path)).status_code == 404


async def test_one_run_per_thread(make_api: ApiFactory) -> None:
    model = GatedModel()
    async with make_api(graph=GRAPH, chat_model=model) as api:
        thread = fresh_id("t")
        first = asyncio.create_task(api.run("alice", thread, "hello"))
        await asyncio.wait_for(model.entered.wait(), 10)
        second = await api.run("alice", thread, "again")
        assert second.status_code == 409, second.text
        assert "already active" in second.json()["detail"]
        model.gate.set()
        assert (await first).status_code == 200
        assert (await api.run("alice", thread, "again")).status_code == 200


async def test_window_stays_within_budget(make_api: ApiFactory) -> None:
    budget = 300
    async with make_api(graph=GRAPH, token_budget=budget) as api:
        thread = fresh_id("t")
        turns = 15
        for i in range(turns):
            ran = await api.run("alice", thread, f"note {i} " + "flour " * 25)
            assert ran.status_code == 200, ran.text
        sessions = api.app.state.sessions
        tenant, user = api.owners["alice"]
        values = (
            await sessions.graph.aget_state(sessions.config(Owner(tenant, user), thread))
        ).values
        assert count_tokens_approximately(values["messages"]) <= budget
        assert values["summary"]
        listed = (await api.request("alice", "GET", f"/threads/{thread}/messages?limit=1")).json()
        assert listed["total"] == values["transcript_len"] >= 2 * turns
        everything = await api.request(
            "alice", "GET", f"/threads/{thread}/messages?limit={listed['total']}"
        )
        texts = [m["content"] for m in everything.json()["items"] if m["role"] == "user"]
        assert texts == [f"note {i} " + "flour " * 25 for i in range(turns)]


def test_a_graph_without_the_recording_piece_is_refused_at_start(app_url: str) -> None:
    for name, says in (
        ("no_transcript", "its state has no summary, transcript_len, recorded_id"),
        ("no_recording", "none of its nodes records the transcript"),
    ):
        with pytest.raises(AppConfigError, match=says):
            create_app(Settings(database_url=app_url, graph=f"tests.owngraph:{name}"))


@pytest.mark.slow
def test_chat_talks_to_the_graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMORY_AGENT_DATABASE_URL", f"sqlite:///{tmp_path / 'chat.sqlite'}")
    monkeypatch.setenv("MEMORY_AGENT_GRAPH", GRAPH)
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[1]))
    result = subprocess.run(
        [*command(), "chat", "-m", "My name is Sam."], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "Sam" in result.stdout


@pytest.mark.slow
def test_served_by_memory_agent_serve(app_url: str, tmp_path: Path) -> None:
    with langgraph_server(app_url, tmp_path, graph=GRAPH) as server:
        native = httpx.post(
            f"{server.base}/threads/{fresh_id('t')}/runs",
            json={"message": "My name is Sam."},
            headers=server.headers("alice"),
            timeout=60,
        )
        assert native.status_code == 200, native.text
        assert "Sam" in native.json()["reply"]
        tid = str(uuid.uuid4())
        body = {
            "assistant_id": "agent",
            "input": {"messages": [{"role": "user", "content": "what is my name?"}]},
            "if_not_exists": "create",
        }
        waited = post(server, "alice", f"/threads/{tid}/runs/wait", body)
        assert waited.status_code == 200, waited.text
        last = waited.json()["messages"][-1]
        assert last["type"] == "ai" and last["content"]  # this graph's prompt has no memories
        again = post(server, "alice", f"/threads/{tid}/runs/wait", body)
        assert [m["type"] for m in again.json()["messages"]][-4:] == ["human", "ai"] * 2
        graph = httpx.get(
            f"{server.url}/assistants/agent/graph", headers=server.headers("alice"), timeout=10
        ).json()
        assert {n["id"] for n in graph["nodes"]} >= {"call_model", "tools"}
        sneaky = {k: v for k, v in body.items() if k != "if_not_exists"}
        assert post(server, "bob", f"/threads/{tid}/runs/wait", sneaky).status_code == 404
        theirs = httpx.get(f"{server.url}/threads/{tid}", headers=server.headers("bob"), timeout=10)
        assert theirs.status_code == 404


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "variable", "value", "says"),
    [
        (["serve", "--port", "1"], "MEMORY_AGENT_TOOLS", "tests.owngraph:NOT_A_TOOL", "42 is not"),
        (["serve", "--port", "1"], "MEMORY_AGENT_TOOLS", "tests.nowhere:TOOLS", "not found"),
        (["serve", "--port", "1"], "MEMORY_AGENT_GRAPH", "tests.owngraph:no_recording", "record"),
        (["chat", "-m", "hi"], "MEMORY_AGENT_GRAPH", "tests.owngraph:no_transcript", "State"),
    ],
)
def test_bad_settings_stop_serve_and_chat_with_the_value_named(
    args: list[str], variable: str, value: str, says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, value)
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[1]))
    result = subprocess.run([*command(), *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert f"{variable}={value!r}" in result.stderr
    assert says in result.stderr
