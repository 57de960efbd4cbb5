"""The sessions API over HTTP: threads, their state and history, memories, auth, probes."""

from __future__ import annotations

import itertools
import uuid
from pathlib import Path

import pytest

from agent.namespaces import Owner
from memory.settings import Settings
from memory.stores.factory import scheme_of
from server.app import create_app
from server.auth import ApiKeyConfigError, KeyRing
from tests.plugins.server import Api, ApiFactory, fresh_id, running

# -- auth --------------------------------------------------------------------------------


async def test_missing_or_unknown_key_is_401(api: Api) -> None:
    missing = await api.client.get("/threads")
    assert missing.status_code == 401
    assert "missing API key" in missing.json()["detail"]
    assert missing.headers["www-authenticate"] == "Bearer"
    unknown = await api.client.get("/threads", headers={"Authorization": "Bearer nope"})
    assert unknown.status_code == 401
    assert unknown.json()["detail"] == "unknown API key"
    wrong_scheme = await api.client.get(
        "/threads", headers={"Authorization": f"Basic {api.keys['alice']}"}
    )
    assert wrong_scheme.status_code == 401
    assert (await api.client.get("/healthz")).status_code == 200


def test_malformed_key_settings_are_refused() -> None:
    assert KeyRing.parse("").dev_mode
    ring = KeyRing.parse(" k1=acme/alice , k2=acme/bob ")
    assert ring.owner_for("Bearer k2").user == "bob"
    for bad in ("k1", "k1=alice", "=acme/alice", "k1=acme/", "k1=acme/\x01", "k=a/b,k=a/c"):
        with pytest.raises(ApiKeyConfigError):
            KeyRing.parse(bad)
    with pytest.raises(ApiKeyConfigError):
        create_app(Settings(database_url="memory://", api_keys="just-a-key"))


# -- threads -------------------------------------------------------------------------------


async def test_create_thread_server_id_client_id_and_conflict(api: Api) -> None:
    made = await api.request("alice", "POST", "/threads", json={"metadata": {"app": "shop"}})
    assert made.status_code == 201
    server_id = made.json()["thread_id"]
    assert str(uuid.UUID(server_id)) == server_id
    assert made.json()["metadata"] == {"app": "shop"}
    assert made.json()["status"] == "active"

    empty = await api.request("alice", "POST", "/threads")
    assert empty.status_code == 201
    assert empty.json()["thread_id"] != server_id

    chosen = fresh_id("support")
    assert (
        await api.request("alice", "POST", "/threads", json={"thread_id": chosen})
    ).status_code == 201
    again = await api.request("alice", "POST", "/threads", json={"thread_id": chosen})
    assert again.status_code == 409
    assert chosen in again.json()["detail"]
    # Client ids are scoped to their owner: bob may use the same one.
    bobs = await api.request("bob", "POST", "/threads", json={"thread_id": chosen})
    assert bobs.status_code == 201


async def test_create_if_exists_do_nothing_is_get_or_create(make_api: ApiFactory) -> None:
    async with make_api(max_open_sessions=2) as api:
        chosen = fresh_id("shop")
        body = {"thread_id": chosen, "metadata": {"app": "shop"}, "if_exists": "do_nothing"}
        made = await api.request("alice", "POST", "/threads", json=body)
        assert made.status_code == 201
        assert made.json()["metadata"] == {"app": "shop"}
        await api.run("alice", chosen, "hello")
        again = await api.request(
            "alice", "POST", "/threads", json={**body, "metadata": {"app": "other"}}
        )
        assert again.status_code == 200
        assert again.json()["thread_id"] == chosen
        assert again.json()["metadata"] == {"app": "shop"}  # the existing session, unchanged
        assert again.json()["message_count"] == made.json()["message_count"] + 2
        # At the cap of open sessions a new id is still refused, with the cap's reason.
        second = await api.request("alice", "POST", "/threads", json={"if_exists": "do_nothing"})
        assert second.status_code == 201
        full = await api.request("alice", "POST", "/threads", json={**body, "thread_id": "x1"})
        assert full.status_code == 409
        assert "open sessions" in full.json()["detail"]
        bad = await api.request("alice", "POST", "/threads", json={**body, "if_exists": "merge"})
        assert bad.status_code == 422
        assert "if_exists" in str(bad.json())


async def test_list_threads_newest_activity_first_with_paging(api: Api) -> None:
    ids = [fresh_id("t") for _ in range(3)]
    for thread in ids:
        await api.request("alice", "POST", "/threads", json={"thread_id": thread})
    await api.run("alice", ids[0], "hello again")
    listed = (await api.request("alice", "GET", "/threads")).json()
    assert listed["total"] == 3
    assert [t["thread_id"] for t in listed["items"]] == [ids[0], ids[2], ids[1]]
    page = (await api.request("alice", "GET", "/threads?limit=1&offset=1")).json()
    assert page["total"] == 3
    assert [t["thread_id"] for t in page["items"]] == [ids[2]]
    assert (await api.request("bob", "GET", "/threads")).json() == {"items": [], "total": 0}


async def test_thread_detail_has_times_status_and_analytics(api: Api) -> None:
    thread = fresh_id("t")
    await api.run("alice", thread, "my name is Sam")
    await api.run("alice", thread, "I prefer express shipping for shipping orders")
    detail = await api.request("alice", "GET", f"/threads/{thread}")
    assert detail.status_code == 200
    body = detail.json()
    assert body["status"] == "active"
    assert body["created_at"] <= body["last_active_at"]
    assert body["analytics"]["message_counts"] == {"user": 2, "assistant": 4, "tool": 2}
    assert body["analytics"]["duration_seconds"] >= 0
    assert body["analytics"]["top_topics"][0] == {"topic": "shipping", "count": 2}
    assert body["running"] is False


async def test_other_users_thread_answers_exactly_like_a_missing_one(api: Api) -> None:
    thread = fresh_id("t")
    await api.run("alice", thread, "my secret is rosebud")
    missing = fresh_id("t")
    for path in ("", "/messages", "/state", "/history", "/memories"):
        theirs = await api.request("bob", "GET", f"/threads/{thread}{path}")
        absent = await api.request("bob", "GET", f"/threads/{missing}{path}")
        assert theirs.status_code == absent.status_code == 404
        assert theirs.json()["detail"] == absent.json()["detail"].replace(missing, thread)
    for method, path in (("DELETE", ""), ("POST", "/end")):
        response = await api.request("bob", method, f"/threads/{thread}{path}")
        assert response.status_code == 404
    # A run by bob on alice's id creates bob's own thread and sees nothing of alice's.
    run = await api.run("bob", thread, "what is my secret?")
    assert run.status_code == 200
    assert "rosebud" not in run.text
    assert (await api.request("alice", "GET", f"/threads/{thread}/messages")).json()["total"] == 4


async def test_delete_thread_removes_everything_of_it(api: Api) -> None:
    thread = fresh_id("t")
    await api.run("alice", thread, "add milk to my cart")
    assert (await api.request("alice", "GET", f"/threads/{thread}/memories")).json()["total"] == 1
    deleted = await api.request("alice", "DELETE", f"/threads/{thread}")
    assert deleted.status_code == 204
    for path in ("", "/messages", "/state", "/memories"):
        assert (await api.request("alice", "GET", f"/threads/{thread}{path}")).status_code == 404
    assert (await api.request("alice", "DELETE", f"/threads/{thread}")).status_code == 404
    sessions = api.app.state.sessions
    owner = sessions_owner(api, "alice")
    config = sessions.config(owner, thread)
    assert (await sessions.graph.aget_state(config)).values == {}
    recreated = await api.run("alice", thread, "hello")
    assert [m["seq"] for m in recreated.json()["messages"]] == [0, 1]


def sessions_owner(api: Api, user: str) -> Owner:
    tenant, name = api.owners[user]
    return Owner(tenant=tenant, user=name)


async def test_end_saves_the_summary_and_refuses_further_runs(api: Api) -> None:
    thread = fresh_id("t")
    await api.run("alice", thread, "my name is Sam")
    await api.run("alice", thread, "I live in Lisbon")
    ended = await api.request("alice", "POST", f"/threads/{thread}/end")
    assert ended.status_code == 200
    assert ended.json()["status"] == "ended"
    assert ended.json()["ended_at"]
    memory = await api.request("alice", "GET", f"/memories/session-summary-{thread}")
    assert memory.status_code == 200
    content = memory.json()["content"]
    assert "Lisbon" in content
    # Readable: what was said, not the transcript's tool calls.
    assert '"my name is Sam"; "I live in Lisbon"' in content
    assert "[calls" not in content and "save_memory" not in content and "{" not in content
    refused = await api.run("alice", thread, "hello?")
    assert refused.status_code == 409
    assert "ended" in refused.json()["detail"]
    streamed = await api.request(
        "alice", "POST", f"/threads/{thread}/runs/stream", json={"message": "hi"}
    )
    assert streamed.status_code == 409
    assert (await api.request("alice", "GET", f"/threads/{thread}/messages")).json()["total"] == 8


async def test_end_of_a_short_session_saves_no_summary(make_api: ApiFactory) -> None:
    async with make_api(min_messages_for_summary=10) as api:
        thread = fresh_id("t")
        await api.run("alice", thread, "hello")
        assert (await api.request("alice", "POST", f"/threads/{thread}/end")).status_code == 200
        summary = await api.request("alice", "GET", f"/memories/session-summary-{thread}")
        assert summary.status_code == 404


async def test_state_and_history(api: Api) -> None:
    thread = fresh_id("t")
    await api.run("alice", thread, "hello")
    await api.run("alice", thread, "hello again")
    state = (await api.request("alice", "GET", f"/threads/{thread}/state")).json()
    assert [m["content"] for m in state["messages"] if m["role"] == "user"] == [
        "hello",
        "hello again",
    ]
    assert state["transcript_len"] == 4
    assert state["summary"] == ""
    assert state["next"] == []
    history = (await api.request("alice", "GET", f"/threads/{thread}/history?limit=3")).json()
    assert history["total"] > 3
    assert len(history["items"]) == 3
    newest = history["items"][0]
    assert newest["checkpoint_id"] == state["checkpoint_id"]
    assert newest["message_count"] == 4
    # Linear history: each checkpoint's parent is the next older one.
    for newer, older in itertools.pairwise(history["items"]):
        assert newer["parent_checkpoint_id"] == older["checkpoint_id"]


async def test_summarised_messages_stay_in_the_transcript(make_api: ApiFactory) -> None:
    async with make_api(token_budget=200) as api:
        thread = fresh_id("t")
        for i in range(12):
            text = f"message number {i} " + "with some padding words " * 6
            assert (await api.run("alice", thread, text)).status_code == 200
        state = (await api.request("alice", "GET", f"/threads/{thread}/state")).json()
        assert state["summary"]
        assert len(state["messages"]) < 24
        transcript = (
            await api.request("alice", "GET", f"/threads/{thread}/messages?limit=500")
        ).json()
        assert transcript["total"] == 24
        assert transcript["items"][0]["content"].startswith("message number 0 ")
        detail = (await api.request("alice", "GET", f"/threads/{thread}")).json()
        assert detail["summary"] == state["summary"]


async def test_chat_endpoint_starts_or_resumes_a_thread(api: Api) -> None:
    first = await api.request("alice", "POST", "/chat", json={"message": "my name is Zoe"})
    assert first.status_code == 200
    thread = first.json()["thread_id"]
    assert str(uuid.UUID(thread)) == thread
    again = await api.request(
        "alice", "POST", "/chat", json={"thread_id": thread, "message": "what is my name?"}
    )
    assert again.json() | {"messages": None} == {
        "thread_id": thread,
        "reply": "Your name is Zoe.",
        "messages": None,
        "interrupts": [],
        "previous_thread_id": None,
        "reason": None,
    }


# -- memories ------------------------------------------------------------------------------


async def test_user_memories_crud_search_and_clear(api: Api) -> None:
    put = await api.request("alice", "PUT", "/memories/diet", json={"value": "vegetarian"})
    assert put.status_code == 200
    assert put.json()["scope"] == "user"
    structured = {"city": "Porto", "floors": [1, 2], "vip": True}
    await api.request("alice", "PUT", "/memories/address", json={"value": structured})
    await api.request("alice", "PUT", "/memories/pet", json={"value": "a cat called Miso"})
    got = await api.request("alice", "GET", "/memories/address")
    assert got.json()["value"] == structured

    listed = (await api.request("alice", "GET", "/memories")).json()
    assert listed["total"] == 3
    assert {m["key"] for m in listed["items"]} == {"diet", "address", "pet"}
    limited = (await api.request("alice", "GET", "/memories?limit=1")).json()
    assert len(limited["items"]) == 1
    assert limited["total"] == 3
    found = (await api.request("alice", "GET", "/memories?query=animal%20kitten")).json()
    assert found["items"][0]["key"] == "pet"

    assert (await api.request("alice", "DELETE", "/memories/diet")).status_code == 204
    assert (await api.request("alice", "GET", "/memories/diet")).status_code == 404
    assert (await api.request("alice", "DELETE", "/memories/diet")).status_code == 404
    assert (await api.request("bob", "GET", "/memories/pet")).status_code == 404
    cleared = await api.request("alice", "DELETE", "/memories")
    assert (cleared.status_code, cleared.content) == (204, b"")
    assert (await api.request("alice", "GET", "/memories")).json()["total"] == 0


async def test_session_memories_are_scoped_to_their_thread(api: Api) -> None:
    one, two = fresh_id("t"), fresh_id("t")
    await api.request("alice", "POST", "/threads", json={"thread_id": one})
    await api.request("alice", "POST", "/threads", json={"thread_id": two})
    put = await api.request("alice", "PUT", f"/threads/{one}/memories/cart", json={"value": [1]})
    assert put.status_code == 200
    assert put.json()["scope"] == "session"
    assert (await api.request("alice", "GET", f"/threads/{one}/memories/cart")).status_code == 200
    assert (await api.request("alice", "GET", f"/threads/{two}/memories/cart")).status_code == 404
    assert (await api.request("alice", "GET", "/memories/cart")).status_code == 404
    assert (await api.request("alice", "GET", f"/threads/{one}/memories")).json()["total"] == 1
    missing = await api.request(
        "alice", "PUT", f"/threads/{fresh_id('t')}/memories/cart", json={"value": 1}
    )
    assert missing.status_code == 404
    assert (
        await api.request("alice", "DELETE", f"/threads/{one}/memories/cart")
    ).status_code == 204
    await api.request("alice", "PUT", f"/threads/{one}/memories/a", json={"value": "x"})
    cleared = await api.request("alice", "DELETE", f"/threads/{one}/memories")
    assert (cleared.status_code, cleared.content) == (204, b"")
    assert (await api.request("alice", "GET", f"/threads/{one}/memories")).json()["total"] == 0


# -- probes and docs -----------------------------------------------------------------------


async def test_readyz_reports_each_backend_by_name(api: Api, app_url: str) -> None:
    response = await api.client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["backends"]) == {"checkpointer", "store"}
    kind = scheme_of(app_url)
    assert body["backends"]["checkpointer"] == {"backend": kind, "ok": True}


async def test_readyz_is_503_when_a_backend_is_unreachable(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'gone.sqlite'}", api_keys="")
    app = create_app(settings)
    async with running(app) as client:
        assert (await client.get("/readyz")).status_code == 200
        app.state.backends.store.conn.close()  # the store's database goes away
        response = await client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["backends"]["store"]["ok"] is False
    assert body["backends"]["store"]["error"]
    assert body["backends"]["checkpointer"]["ok"] is True


async def test_openapi_documents_every_route_and_its_errors(api: Api) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    paths = spec["paths"]
    expected = {
        ("post", "/threads"),
        ("get", "/threads"),
        ("get", "/threads/{thread_id}"),
        ("delete", "/threads/{thread_id}"),
        ("post", "/threads/{thread_id}/runs"),
        ("post", "/threads/{thread_id}/runs/stream"),
        ("post", "/chat"),
        ("get", "/threads/{thread_id}/messages"),
        ("get", "/threads/{thread_id}/state"),
        ("get", "/threads/{thread_id}/history"),
        ("post", "/threads/{thread_id}/end"),
        ("get", "/memories"),
        ("put", "/memories/{key}"),
        ("get", "/memories/{key}"),
        ("delete", "/memories/{key}"),
        ("delete", "/memories"),
        ("get", "/threads/{thread_id}/memories"),
        ("put", "/threads/{thread_id}/memories/{key}"),
        ("delete", "/users/me"),
        ("get", "/healthz"),
        ("get", "/readyz"),
    }
    present = {(m, p) for p, ops in paths.items() for m in ops}
    assert expected <= present
    for method, path in expected - {("get", "/healthz")}:
        operation = paths[path][method]
        assert operation.get("summary") or operation.get("description")
        assert set(operation["responses"]) - {"200", "201", "204"}, (method, path)
    run_op = paths["/threads/{thread_id}/runs"]["post"]
    assert {"401", "409", "422", "429"} <= set(run_op["responses"])
    assert "bearer" in str(spec["components"]["securitySchemes"]).lower()
    assert (await api.client.get("/docs")).status_code == 200
