"""The LangGraph server API under `/langgraph`, driven by langgraph-sdk and RemoteGraph
against a real `memory-agent serve` process on every backend."""

from __future__ import annotations

import itertools
import json
import random
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from langgraph.pregel.remote import RemoteGraph
from langgraph_sdk import get_client, get_sync_client

from tests.lgserver import LangGraphServer, langgraph_server, post, sse_events

pytestmark = pytest.mark.slow

#: Small enough that a few turns fold the working window into the summary.
_TOKEN_BUDGET = 100
_STATE_MESSAGES = 6


@pytest.fixture(scope="module")
def server(app_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LangGraphServer]:
    """One server per backend, shared by the module (tests use their own threads)."""
    with langgraph_server(
        app_url,
        tmp_path_factory.mktemp("lg-api"),
        token_budget=str(_TOKEN_BUDGET),
        state_messages=str(_STATE_MESSAGES),
        runs_per_minute="1000",
    ) as running:
        yield running


def _human(text: str) -> dict[str, Any]:
    """A message as a useStream chat UI sends it."""
    return {"id": str(uuid.uuid4()), "type": "human", "content": [{"type": "text", "text": text}]}


async def test_async_sdk_threads_runs_state_and_history(server: LangGraphServer) -> None:
    client = get_client(url=server.url, api_key=server.keys["alice"])
    assert (await client.assistants.get("agent"))["graph_id"] == "agent"
    (found,) = await client.assistants.search(graph_id="agent")
    assert (await client.assistants.get(found["assistant_id"]))["assistant_id"] == found[
        "assistant_id"
    ]
    graph = await client.assistants.get_graph("agent")
    assert {n["id"] for n in graph["nodes"]} >= {"call_model", "save_memories"}
    schemas = await client.assistants.get_schemas("agent")
    assert "messages" in schemas["input_schema"]["properties"]

    thread = await client.threads.create(metadata={"topic": "names"})
    tid = thread["thread_id"]
    assert thread["metadata"]["topic"] == "names"
    again = await client.threads.create(thread_id=tid, if_exists="do_nothing")
    assert again["thread_id"] == tid
    with pytest.raises(httpx.HTTPStatusError) as exists:
        await client.threads.create(thread_id=tid)
    assert exists.value.response.status_code == 409

    parts = [
        part
        async for part in client.runs.stream(
            tid,
            "agent",
            input={"messages": [_human("My name is Sam.")]},
            stream_mode=["values", "updates", "messages-tuple", "custom"],
        )
    ]
    events = [p.event for p in parts]
    assert events[0] == "metadata" and "run_id" in parts[0].data
    assert {"values", "updates", "messages"} <= set(events)
    assert "error" not in events
    chunk, meta = next(p.data for p in parts if p.event == "messages")
    assert chunk["type"] == "AIMessageChunk" and meta["langgraph_node"] == "call_model"
    assert meta.get("thread_id", tid) == tid
    final = [p.data for p in parts if p.event == "values"][-1]
    assert final["messages"][0]["content"] == [{"type": "text", "text": "My name is Sam."}]
    assert final["messages"][-1]["type"] == "ai"

    result = await client.runs.wait(
        tid, "agent", input={"messages": [{"role": "user", "content": "what is my name?"}]}
    )
    assert isinstance(result, dict)
    assert result["messages"][-1]["content"] == "Your name is Sam."

    run = await client.runs.create(
        tid, "agent", input={"messages": [{"type": "human", "content": "hello"}]}
    )
    joined = await client.runs.join(tid, run["run_id"])
    assert isinstance(joined, dict) and joined["messages"][-1]["type"] == "ai"
    assert (await client.runs.get(tid, run["run_id"]))["status"] == "success"
    assert run["run_id"] in [r["run_id"] for r in await client.runs.list(tid)]

    state = await client.threads.get_state(tid)
    assert state["values"]["transcript_len"] >= 8
    assert len(state["values"]["messages"]) == _STATE_MESSAGES
    assert state["values"]["messages"][-1]["id"] == joined["messages"][-1]["id"]
    at = await client.threads.get_state(tid, checkpoint_id=state["checkpoint"]["checkpoint_id"])
    assert at["values"] == state["values"]

    history = await client.threads.get_history(tid, limit=3)
    assert len(history) == 3
    assert history[0]["checkpoint"]["checkpoint_id"] == state["checkpoint"]["checkpoint_id"]
    created = [h["created_at"] for h in history]
    assert created == sorted(created, reverse=True)
    older = await client.threads.get_history(
        tid, limit=2, before={"checkpoint_id": history[0]["checkpoint"]["checkpoint_id"]}
    )
    assert [h["checkpoint"] for h in older] == [h["checkpoint"] for h in history[1:3]]

    update = await client.threads.update_state(
        tid, {"messages": [{"type": "ai", "content": "An imported reply."}]}
    )
    assert update["checkpoint"]["checkpoint_id"]
    after = await client.threads.get_state(tid)
    assert after["values"]["messages"][-1]["content"] == "An imported reply."

    patched = await client.threads.update(tid, metadata={"stage": 2})
    assert patched["metadata"]["stage"] == 2 and patched["metadata"]["topic"] == "names"
    found_threads = await client.threads.search(metadata={"topic": "names", "stage": 2})
    assert [t["thread_id"] for t in found_threads] == [tid]
    assert tid in [
        t["thread_id"] for t in await client.threads.search(metadata={"graph_id": "agent"})
    ]
    got = await client.threads.get(tid)
    assert got["status"] == "idle" and got["values"]["messages"]

    await client.threads.delete(tid)
    with pytest.raises(httpx.HTTPStatusError) as gone:
        await client.threads.get(tid)
    assert gone.value.response.status_code == 404


async def test_state_updates_as_any_node_and_with_no_values(server: LangGraphServer) -> None:
    client = get_client(url=server.url, api_key=server.keys["alice"])
    tid = (await client.threads.create())["thread_id"]
    await client.runs.wait(tid, "agent", input={"messages": [_human("Hello.")]})
    before = await client.threads.get_state(tid)
    # No values: a new checkpoint, written as the node named, and nothing else changes.
    marked = await client.threads.update_state(tid, None, as_node="__start__")
    now = await client.threads.get_state(tid)
    assert marked["checkpoint"]["checkpoint_id"] == now["checkpoint"]["checkpoint_id"]
    assert now["checkpoint"]["checkpoint_id"] != before["checkpoint"]["checkpoint_id"]
    assert now["values"]["messages"] == before["values"]["messages"]
    assert now["metadata"]["source"] == "update"
    # Written as the start, the graph's next step is what follows the start.
    assert now["next"] == ["call_model"]
    # Messages as another node: recorded as any other, in the transcript too.
    await client.threads.update_state(
        tid, {"messages": [{"type": "ai", "content": "Filed."}]}, as_node="save_memories"
    )
    after = await client.threads.get_state(tid)
    assert after["values"]["messages"][-1]["content"] == "Filed."
    page = (await client.http.get(f"/threads/{tid}/state"))["values"]["transcript_len"]
    assert page == before["values"]["transcript_len"] + 1
    # A run from here goes on as usual and the thread ends idle.
    await client.runs.wait(tid, "agent", input={"messages": [_human("Thanks.")]})
    final = await client.threads.get(tid)
    assert final["status"] == "idle"
    assert (await client.threads.get_state(tid))["next"] == []
    with pytest.raises(httpx.HTTPStatusError) as unknown:
        await client.threads.update_state(tid, None, as_node="nowhere")
    assert unknown.value.response.status_code == 422
    assert "nowhere" in unknown.value.response.text


async def test_a_thread_created_with_supersteps_holds_that_history(
    server: LangGraphServer,
) -> None:
    client = get_client(url=server.url, api_key=server.keys["alice"])
    steps = [
        {"updates": [{"values": {"messages": [_human("Is A-1 ready?")]}, "as_node": "__start__"}]},
        {
            "updates": [
                {
                    "values": {"messages": [{"type": "ai", "content": "Yes, at 9."}]},
                    "as_node": "call_model",
                }
            ]
        },
        {"updates": [{"values": {"summary": "Sam asked about A-1."}, "as_node": "call_model"}]},
    ]
    thread = await client.threads.create(supersteps=steps)
    tid = thread["thread_id"]
    state = await client.threads.get_state(tid)
    assert [m["content"] for m in state["values"]["messages"]] == [
        [{"type": "text", "text": "Is A-1 ready?"}],
        "Yes, at 9.",
    ]
    assert state["values"]["summary"] == "Sam asked about A-1."
    history = await client.threads.get_history(tid, limit=10)
    assert len(history) >= 3
    page = await client.http.get(f"/threads/{tid}/state")
    assert page["values"]["transcript_len"] == 2
    # An existing thread is left as it is by do_nothing; a bad step leaves no thread.
    same = await client.threads.create(thread_id=tid, if_exists="do_nothing", supersteps=steps)
    assert same["thread_id"] == tid
    assert (await client.threads.get_state(tid))["values"]["transcript_len"] == 2
    bad = [*steps, {"updates": [{"values": {"summary": "x"}, "as_node": "nowhere"}]}]
    with pytest.raises(httpx.HTTPStatusError) as refused:
        await client.threads.create(thread_id=f"{tid}-bad", supersteps=bad)
    assert refused.value.response.status_code == 422
    with pytest.raises(httpx.HTTPStatusError) as gone:
        await client.threads.get(f"{tid}-bad")
    assert gone.value.response.status_code == 404


def test_sync_sdk_and_store(server: LangGraphServer) -> None:
    client = get_sync_client(url=server.url, api_key=server.keys["alice"])
    thread = client.threads.create()
    result = client.runs.wait(
        thread["thread_id"],
        "agent",
        input={"messages": [{"role": "user", "content": "I'm allergic to penicillin."}]},
        if_not_exists="create",
    )
    assert isinstance(result, dict) and result["messages"][-1]["type"] == "ai"
    created = client.runs.wait(
        str(uuid.uuid4()),
        "agent",
        input={"messages": [{"role": "user", "content": "hi"}]},
        if_not_exists="create",
    )
    assert isinstance(created, dict) and len(created["messages"]) == 2

    client.store.put_item(["prefs", "ui"], "theme", {"content": "dark"})
    assert client.store.get_item(["prefs", "ui"], "theme")["value"] == {"content": "dark"}
    found = client.store.search_items(["prefs"], filter={"content": "dark"})
    assert [(i["namespace"], i["key"]) for i in found["items"]] == [(["prefs", "ui"], "theme")]
    assert client.store.list_namespaces(prefix=["prefs"])["namespaces"] == [["prefs", "ui"]]
    client.store.delete_item(["prefs", "ui"], "theme")
    assert client.store.get_item(["prefs", "ui"], "theme") is None


def test_remote_graph(server: LangGraphServer) -> None:
    remote = RemoteGraph("agent", url=server.url, api_key=server.keys["bob"])
    config: Any = {"configurable": {"thread_id": str(uuid.uuid4())}}
    out = remote.invoke({"messages": [{"role": "user", "content": "My name is Ada."}]}, config)
    assert out["messages"][-1]["type"] == "ai"
    chunks = list(
        remote.stream(
            {"messages": [{"role": "user", "content": "what is my name?"}]},
            config,
            stream_mode="values",
        )
    )
    assert chunks[-1]["messages"][-1]["content"] == "Your name is Ada."
    state = remote.get_state(config)
    assert state.values["messages"][-1]["content"] == "Your name is Ada."
    assert state.config["configurable"]["checkpoint_id"]
    history = list(remote.get_state_history(config, limit=4))
    assert len(history) == 4
    assert (
        history[0].config["configurable"]["checkpoint_id"]
        == state.config["configurable"]["checkpoint_id"]
    )
    remote.update_state(config, {"messages": [{"role": "user", "content": "noted offline"}]})
    assert remote.get_state(config).values["messages"][-1]["content"] == "noted offline"
    assert remote.get_graph().nodes


def test_values_never_jump_back_when_the_window_folds(server: LangGraphServer) -> None:
    client = get_sync_client(url=server.url, api_key=server.keys["carol"])
    tid = client.threads.create()["thread_id"]
    shown: list[list[str]] = []
    for turn in range(6):
        text = f"Turn {turn}: please remember that my favourite number is {turn * 7}."
        for part in client.runs.stream(
            tid, "agent", input={"messages": [_human(text)]}, stream_mode="values"
        ):
            if part.event == "values":
                shown.append([m["id"] for m in part.data["messages"]])
    state = client.threads.get_state(tid)["values"]
    assert state["summary"], "the budget is small enough that the window folded"
    # Every screen holds the newest messages: nothing once shown at the end disappears
    # while the messages before it are still shown.
    for before, after in itertools.pairwise(shown):
        assert before[-1] in after, (before, after)
        kept = [i for i in before if i in after]
        assert kept == after[: len(kept)], "order is preserved"
    assert len(state["messages"]) == _STATE_MESSAGES
    assert [m["id"] for m in state["messages"]] == shown[-1]


def test_another_users_thread_is_404_everywhere(server: LangGraphServer) -> None:
    alice = get_sync_client(url=server.url, api_key=server.keys["alice"])
    tid = alice.threads.create(metadata={"secret": 1})["thread_id"]
    run = alice.runs.create(tid, "agent", input={"messages": [{"role": "user", "content": "hi"}]})
    alice.runs.join(tid, run["run_id"])
    checkpoint = alice.threads.get_state(tid)["checkpoint"]["checkpoint_id"]
    body = {"assistant_id": "agent", "input": {"messages": [{"role": "user", "content": "x"}]}}
    calls: list[tuple[str, str, Any]] = [
        ("GET", f"/threads/{tid}", None),
        ("PATCH", f"/threads/{tid}", {"metadata": {"a": 1}}),
        ("GET", f"/threads/{tid}/state", None),
        ("GET", f"/threads/{tid}/state/{checkpoint}", None),
        ("POST", f"/threads/{tid}/state/checkpoint", {"checkpoint": {"checkpoint_id": checkpoint}}),
        ("POST", f"/threads/{tid}/state", {"values": {"summary": "mine now"}}),
        ("POST", f"/threads/{tid}/history", {"limit": 10}),
        ("POST", f"/threads/{tid}/runs/stream", body),
        ("POST", f"/threads/{tid}/runs/wait", body),
        ("POST", f"/threads/{tid}/runs", body),
        ("GET", f"/threads/{tid}/runs", None),
        ("GET", f"/threads/{tid}/runs/{run['run_id']}", None),
        ("GET", f"/threads/{tid}/runs/{run['run_id']}/join", None),
        ("POST", f"/threads/{tid}/runs/{run['run_id']}/cancel", None),
        ("DELETE", f"/threads/{tid}", None),
    ]
    missing = str(uuid.uuid4())
    for method, path, payload in calls:
        theirs = httpx.request(
            method, f"{server.url}{path}", json=payload, headers=server.headers("bob"), timeout=30
        )
        nobody = httpx.request(
            method,
            f"{server.url}{path.replace(tid, missing)}",
            json=payload,
            headers=server.headers("bob"),
            timeout=30,
        )
        assert theirs.status_code == 404, (method, path, theirs.text)
        assert nobody.status_code == 404, (method, path)
        assert theirs.json()["detail"] == nobody.json()["detail"].replace(missing, tid)
    assert tid not in [
        t["thread_id"]
        for t in get_sync_client(url=server.url, api_key=server.keys["bob"]).threads.search(
            limit=100
        )
    ]
    # Context and metadata cannot choose the owner.
    bob_tid = str(uuid.uuid4())
    sneaky = {
        **body,
        "if_not_exists": "create",
        "context": {"user_id": "alice", "tenant_id": "acme"},
        "config": {"configurable": {"thread_id": tid, "user_id": "alice"}},
        "metadata": {"user_id": "alice"},
    }
    assert post(server, "bob", f"/threads/{bob_tid}/runs/wait", sneaky).status_code == 200
    assert alice.threads.get_state(tid)["values"]["transcript_len"] == 2
    unauthenticated = httpx.get(f"{server.url}/threads/{tid}", timeout=10)
    assert unauthenticated.status_code == 401


def test_store_namespaces_are_private(server: LangGraphServer) -> None:
    rng = random.Random(11)
    users = ("alice", "bob", "carol")
    clients = {u: get_sync_client(url=server.url, api_key=server.keys[u]) for u in users}
    written: dict[str, set[tuple[tuple[str, ...], str]]] = {u: set() for u in users}
    root = f"iso{uuid.uuid4().hex[:6]}"
    for _ in range(24):
        user = rng.choice(users)
        namespace = (
            root,
            *rng.sample(["a", "b", "c", "memories", "transcript"], rng.randint(0, 2)),
        )
        key = rng.choice(["k1", "k2", "k3"])
        clients[user].store.put_item(list(namespace), key, {"owner": user})
        written[user].add((namespace, key))
    for user in users:
        found = clients[user].store.search_items([root], limit=100)["items"]
        assert {(tuple(i["namespace"]), i["key"]) for i in found} == written[user]
        assert all(i["value"] == {"owner": user} for i in found)
        spaces = clients[user].store.list_namespaces(prefix=[root], limit=100)["namespaces"]
        assert {tuple(ns) for ns in spaces} == {ns for ns, _ in written[user]}
    # The agent's own records are out of reach: a client's ("memories", ...) is its own.
    assert clients["alice"].store.search_items(["memories"], limit=100)["items"] == []
    assert clients["alice"].store.search_items(["transcript"], limit=100)["items"] == []


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/threads", {"thread_id": "bad id!"}),
        ("POST", "/threads", '{"metadata": {"k": Infinity}}'),
        ("POST", "/threads", "not json"),
        ("POST", "/threads/search", {"limit": 0}),
        ("POST", "/threads/search", {"sort_by": "nonsense"}),
        ("POST", "/threads/{tid}/runs/wait", {"assistant_id": "agent"}),
        ("POST", "/threads/{tid}/runs/wait", {"assistant_id": "agent", "input": {"x": 1}}),
        ("POST", "/threads/{tid}/runs/wait", {"assistant_id": "agent", "input": {"messages": []}}),
        (
            "POST",
            "/threads/{tid}/runs/wait",
            {"assistant_id": "agent", "input": {"messages": [{"role": "robot", "content": "x"}]}},
        ),
        (
            "POST",
            "/threads/{tid}/runs/stream",
            {"assistant_id": "agent", "input": {"messages": ["x"]}, "stream_mode": "tokens"},
        ),
        (
            "POST",
            "/threads/{tid}/runs",
            {
                "assistant_id": "agent",
                "command": {"resume": 1},
                "input": {"messages": [{"role": "user", "content": "x"}]},
            },
        ),
        (
            "POST",
            "/threads/{tid}/runs/wait",
            {"assistant_id": "nope", "input": {"messages": [{"role": "user", "content": "x"}]}},
        ),
        (
            "POST",
            "/threads/{tid}/runs/wait",
            {
                "assistant_id": "agent",
                "input": {"messages": [{"role": "user", "content": "x" * 20_001}]},
            },
        ),
        (
            "POST",
            "/threads/{tid}/runs/wait",
            {
                "assistant_id": "agent",
                "input": {"messages": [{"role": "user", "content": "x"}]},
                "context": {"token_budget": 1},
            },
        ),
        ("POST", "/threads/{tid}/state", {"values": {"other": 1}}),
        ("POST", "/threads/{tid}/state", {"values": {"summary": "s"}, "as_node": "elsewhere"}),
        ("POST", "/threads/{tid}/state/checkpoint", {"checkpoint": {"checkpoint_id": "nope"}}),
        ("POST", "/threads/{tid}/history", {"limit": -1}),
        ("PUT", "/store/items", {"namespace": ["a.b"], "key": "k", "value": {}}),
        ("PUT", "/store/items", {"namespace": [""], "key": "k", "value": {}}),
        ("PUT", "/store/items", {"namespace": ["a"], "key": "k", "value": "not an object"}),
        ("POST", "/store/items/search", {"namespace_prefix": ["a"], "limit": 100_000}),
        ("POST", "/store/namespaces", {"max_depth": 0}),
        ("GET", "/assistants/nope", None),
        ("POST", "/threads/{tid}/runs/{tid}/cancel?action=explode", None),
    ],
)
def test_bad_input_is_a_4xx_naming_the_problem(
    server: LangGraphServer, method: str, path: str, body: Any
) -> None:
    tid = post(server, "dave", "/threads", {}).json()["thread_id"]
    response = httpx.request(
        method,
        f"{server.url}{path.format(tid=tid)}",
        content=body if isinstance(body, str) else json.dumps(body) if body is not None else None,
        headers={**server.headers("dave"), "content-type": "application/json"},
        timeout=30,
    )
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["detail"]


def test_stream_events_follow_the_server_framing(server: LangGraphServer) -> None:
    tid = str(uuid.uuid4())
    body = {
        "assistant_id": "agent",
        "input": {"messages": [{"role": "user", "content": "hello"}]},
        "stream_mode": ["messages-tuple", "values"],
        "if_not_exists": "create",
    }
    with httpx.stream(
        "POST",
        f"{server.url}/threads/{tid}/runs/stream",
        json=body,
        headers=server.headers("dave"),
        timeout=30,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        location = response.headers["content-location"]
        text = response.read().decode()
    events = sse_events(text)
    assert events[0][0] == "metadata"
    assert location == f"/langgraph/threads/{tid}/runs/{events[0][1]['run_id']}"
    assert {name for name, _ in events} == {"metadata", "messages", "values"}
    assert events[-1][0] == "values"


def test_the_connection_check_fails_for_a_wrong_key(server: LangGraphServer) -> None:
    # agent-chat-ui and SDK callers check a server with `GET /info` and trust `res.ok`.
    good = httpx.get(f"{server.url}/info", headers={"x-api-key": server.keys["bob"]}, timeout=10)
    assert good.status_code == 200
    assert good.json()["flags"]["assistants"] is True
    for headers in ({"x-api-key": "not-a-key"}, {}):
        refused = httpx.get(f"{server.url}/info", headers=headers, timeout=10)
        assert refused.status_code == 401, headers
        assert "key" in refused.json()["detail"]
    # Liveness stays open for load balancers.
    assert httpx.get(f"{server.url}/ok", timeout=10).status_code == 200


def test_threads_are_counted_by_metadata_and_status(server: LangGraphServer) -> None:
    carol = get_sync_client(url=server.url, api_key=server.keys["carol"])
    dave = get_sync_client(url=server.url, api_key=server.keys["dave"])
    tag = uuid.uuid4().hex
    for topic in ("bread", "bread", "cake"):
        carol.threads.create(metadata={"tag": tag, "topic": topic})
    dave.threads.create(metadata={"tag": tag, "topic": "bread"})  # another user's
    idle = carol.threads.create(metadata={"tag": tag, "topic": "tea"})
    carol.runs.wait(
        idle["thread_id"], "agent", input={"messages": [{"role": "user", "content": "hi"}]}
    )
    assert carol.threads.count(metadata={"tag": tag}) == 4
    assert carol.threads.count(metadata={"tag": tag, "topic": "bread"}) == 2
    assert carol.threads.count(metadata={"tag": tag}, status="idle") == 4
    assert carol.threads.count(metadata={"tag": tag}, status="busy") == 0
    assert dave.threads.count(metadata={"tag": tag}) == 1
    assert carol.threads.count(metadata={"tag": uuid.uuid4().hex}) == 0
    everything = carol.threads.count()
    assert everything == len(carol.threads.search(limit=1000)) >= 4
    refused = post(server, "carol", "/threads/count", {"values": {"a": 1}})
    assert refused.status_code == 422 and "values" in str(refused.json()["detail"])
    assert post(server, "carol", "/threads/count", {"status": "asleep"}).status_code == 422


def test_threads_are_pruned_by_deleting_or_keeping_the_latest_checkpoint(
    server: LangGraphServer,
) -> None:
    carol = get_sync_client(url=server.url, api_key=server.keys["carol"])
    dave = get_sync_client(url=server.url, api_key=server.keys["dave"])
    threads = [carol.threads.create()["thread_id"] for _ in range(3)]
    for tid in threads:
        for text in ("one", "two"):
            carol.runs.wait(tid, "agent", input={"messages": [{"role": "user", "content": text}]})
    daves = dave.threads.create()["thread_id"]
    before = len(carol.threads.get_history(threads[0], limit=100))
    assert before > 1
    latest = carol.threads.get_state(threads[0])

    kept = carol.threads.prune([threads[0], daves, str(uuid.uuid4())], strategy="keep_latest")
    assert kept == {"pruned_count": 1}  # another user's and an unknown id are passed over
    history = carol.threads.get_history(threads[0], limit=100)
    assert [h["checkpoint"]["checkpoint_id"] for h in history] == [
        latest["checkpoint"]["checkpoint_id"]
    ]
    after = carol.threads.get_state(threads[0])
    assert after["values"]["messages"] == latest["values"]["messages"]
    assert [m["content"] for m in after["values"]["messages"] if m["type"] == "human"] == [
        "one",
        "two",
    ]
    # The thread goes on from its latest checkpoint.
    carol.runs.wait(threads[0], "agent", input={"messages": [{"role": "user", "content": "3"}]})
    assert carol.threads.get_state(threads[0])["values"]["transcript_len"] == 6

    deleted = carol.threads.prune([threads[1], threads[2], threads[1], daves])
    assert deleted == {"pruned_count": 2}
    for tid in threads[1:]:
        assert (
            httpx.get(f"{server.url}/threads/{tid}", headers=server.headers("carol")).status_code
            == 404
        )
    assert dave.threads.get(daves)["thread_id"] == daves
    assert len(carol.threads.get_history(threads[0], limit=100)) >= 1
    for bad in ({"thread_ids": []}, {"thread_ids": ["a"], "strategy": "shrink"}, {}):
        assert post(server, "carol", "/threads/prune", bad).status_code == 422, bad


def test_a_copied_thread_has_the_state_history_transcript_and_memories(
    server: LangGraphServer,
) -> None:
    carol = get_sync_client(url=server.url, api_key=server.keys["carol"])
    tid = carol.threads.create(metadata={"topic": "bread"})["thread_id"]
    for text in ("my name is Ines", "I like rye"):
        carol.runs.wait(tid, "agent", input={"messages": [{"role": "user", "content": text}]})
    headers = server.headers("carol")
    base = server.url.removesuffix("/langgraph")
    saved = httpx.put(
        f"{base}/threads/{tid}/memories/cart", json={"value": {"items": ["rye"]}}, headers=headers
    )
    assert saved.status_code in (200, 201), saved.text

    copied = carol.threads.copy(tid)
    new = copied["thread_id"]
    assert new != tid and copied["metadata"]["topic"] == "bread"
    original, copy = carol.threads.get_state(tid), carol.threads.get_state(new)
    assert copy["values"]["messages"] == original["values"]["messages"]
    old_history = carol.threads.get_history(tid, limit=100)
    new_history = carol.threads.get_history(new, limit=100)
    assert [h["checkpoint"]["checkpoint_id"] for h in new_history] == [
        h["checkpoint"]["checkpoint_id"] for h in old_history
    ]
    assert [h["values"] for h in new_history] == [h["values"] for h in old_history]

    def transcript(thread_id: str) -> list[tuple[str, Any]]:
        page = httpx.get(f"{base}/threads/{thread_id}/messages", headers=headers).json()
        return [(m["role"], m["content"]) for m in page["items"]]

    assert transcript(new) == transcript(tid)
    assert [c for r, c in transcript(new) if r == "user"] == ["my name is Ines", "I like rye"]
    memory = httpx.get(f"{base}/threads/{new}/memories/cart", headers=headers)
    assert memory.status_code == 200 and memory.json()["value"] == {"items": ["rye"]}

    # The copy goes on by itself; the original is untouched.
    length = original["values"]["transcript_len"]
    carol.runs.wait(new, "agent", input={"messages": [{"role": "user", "content": "and oats"}]})
    assert carol.threads.get_state(new)["values"]["transcript_len"] == length + 2
    assert carol.threads.get_state(tid)["values"]["transcript_len"] == length
    assert transcript(new)[-2] == ("user", "and oats")
    assert ("user", "and oats") not in transcript(tid)
    # An earlier checkpoint of the copy forks as on the original.
    first = new_history[-1]["checkpoint"]["checkpoint_id"]
    assert carol.threads.get_state(new, checkpoint_id=first)["checkpoint"]["checkpoint_id"] == first

    dave = get_sync_client(url=server.url, api_key=server.keys["dave"])
    refused = post(server, "dave", f"/threads/{tid}/copy")
    assert refused.status_code == 404, refused.text
    assert tid not in [t["thread_id"] for t in dave.threads.search(limit=1000)]
    assert post(server, "carol", f"/threads/{uuid.uuid4()}/copy").status_code == 404
