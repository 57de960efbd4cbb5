"""Isolation between users, as a property over random API traffic, and erasure of a user."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.namespaces import Owner
from tests.plugins.server import Api, ApiFactory, fresh_id

USERS = ("alice", "bob", "carol")
THREADS = ("t1", "t2", "t3")
KEYS = ("k1", "k2")

_user = st.sampled_from(USERS)
_thread = st.sampled_from(THREADS)
_ops = st.one_of(
    st.tuples(st.just("create"), _user, _thread),
    st.tuples(st.just("run"), _user, _thread),
    st.tuples(st.just("stream"), _user, _thread),
    st.tuples(
        st.just("read"),
        _user,
        _thread,
        st.sampled_from(["", "/messages", "/state", "/history", "/memories"]),
    ),
    st.tuples(st.just("end"), _user, _thread),
    st.tuples(st.just("delete"), _user, _thread),
    st.tuples(st.just("list"), _user),
    st.tuples(st.just("search"), _user, _user),
    st.tuples(st.just("remember"), _user, st.sampled_from(KEYS), st.none() | _thread),
    st.tuples(st.just("recall"), _user, st.sampled_from(KEYS), st.none() | _thread),
    st.tuples(st.just("erase"), _user),
)


async def _apply(api: Api, op: tuple[Any, ...], marks: dict[str, str]) -> httpx.Response:
    kind, user = op[0], op[1]
    mark = marks[user]
    if kind == "create":
        body = {"thread_id": op[2], "metadata": {"note": mark}}
        return await api.request(user, "POST", "/threads", json=body)
    if kind == "run":
        return await api.run(user, op[2], f"my secret is {mark}")
    if kind == "stream":
        body = {"message": f"remember that my code is {mark}"}
        return await api.request(user, "POST", f"/threads/{op[2]}/runs/stream", json=body)
    if kind == "read":
        return await api.request(user, "GET", f"/threads/{op[2]}{op[3]}")
    if kind == "end":
        return await api.request(user, "POST", f"/threads/{op[2]}/end")
    if kind == "delete":
        return await api.request(user, "DELETE", f"/threads/{op[2]}")
    if kind == "list":
        return await api.request(user, "GET", "/threads?limit=100")
    if kind == "search":
        # Search with another user's secret: the best match must still be one's own.
        return await api.request(user, "GET", "/memories", params={"query": marks[op[2]]})
    if kind == "erase":
        return await api.request(user, "DELETE", "/users/me")
    scope = f"/threads/{op[3]}" if op[3] else ""
    if kind == "remember":
        value = {"secret": mark, "scope": scope}
        return await api.request(user, "PUT", f"{scope}/memories/{op[2]}", json={"value": value})
    return await api.request(user, "GET", f"{scope}/memories/{op[2]}")


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=st.lists(_ops, min_size=1, max_size=14))
async def test_no_response_reveals_another_users_data(
    make_api: ApiFactory, ops: list[tuple[Any, ...]]
) -> None:
    marks = {user: f"zq{uuid.uuid4().hex[:12]}" for user in USERS}
    async with make_api(users=USERS, runs_per_minute=10**6, max_open_sessions=10**4) as api:
        for op in ops:
            response = await _apply(api, op, marks)
            assert response.status_code < 500, (op, response.text)
            if op[0] in ("run", "stream"):
                # Runs work (or meet an ended session): the property is not vacuous.
                assert response.status_code in (200, 409), (op, response.text)
                assert response.status_code == 409 or marks[op[1]] in response.text
            for other, mark in marks.items():
                if other != op[1]:
                    assert mark not in response.text, (op, other)
            for other in USERS:
                if other != op[1]:
                    assert api.owners[other][1] not in response.text, (op, other)


async def _owned_leftovers(api: Api, owner: Owner) -> list[str]:
    """Everything in the store and checkpointer that still belongs to `owner`."""
    store = api.app.state.backends.store
    found: list[str] = []
    for prefix in ("sessions", "memories", "session_memories", "transcript"):
        items = await store.asearch((prefix,), limit=10_000)
        found += [".".join(i.namespace) for i in items if owner.user in ".".join(i.namespace)]
    async for saved in api.app.state.backends.checkpointer.alist(None):
        thread_key = saved.config["configurable"]["thread_id"]
        if thread_key.startswith(f"{owner.tenant}/{owner.user}/"):
            found.append(thread_key)
    return found


async def test_erasing_a_user_leaves_nothing_behind(api: Api) -> None:
    alice = Owner(*api.owners["alice"])
    bob = Owner(*api.owners["bob"])
    one, two = fresh_id("t"), fresh_id("t")
    await api.run("alice", one, "my name is Sam")
    await api.run("alice", one, "add milk to my cart")
    await api.run("alice", two, "I prefer tea")
    await api.request("alice", "PUT", "/memories/extra", json={"value": {"a": 1}})
    await api.request("alice", "POST", f"/threads/{two}/end")
    await api.run("bob", one, "my name is Bob")
    assert await _owned_leftovers(api, alice)

    erased = await api.request("alice", "DELETE", "/users/me")
    assert (erased.status_code, erased.content) == (204, b"")
    assert (await api.request("alice", "GET", "/threads")).json()["total"] == 0
    assert (await api.request("alice", "GET", "/memories")).json()["total"] == 0
    assert (await api.request("alice", "GET", f"/threads/{one}")).status_code == 404
    assert await _owned_leftovers(api, alice) == []
    assert await _owned_leftovers(api, bob)
    bobs = await api.request("bob", "GET", f"/threads/{one}/messages")
    assert bobs.json()["total"] == 4
    again = await api.run("alice", one, "what is my name?")
    assert "Sam" not in again.json()["reply"]
