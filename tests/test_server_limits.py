"""Limits and lifecycle: one run per thread, rate limit, idle expiry, session cap, bounded input."""

from __future__ import annotations

import asyncio
import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from agent.namespaces import Owner
from memory.stores.sessiondb import RateLimit
from tests.plugins.server import Api, ApiFactory, GatedModel, fresh_id

#: Guards against a hang when a test's expectation is broken; never a timing assertion.
_DEADLOCK_GUARD_SECONDS = 60


def owner_of(api: Api, user: str) -> Owner:
    tenant, name = api.owners[user]
    return Owner(tenant=tenant, user=name)


async def first_finished(tasks: list[asyncio.Task[Any]], count: int) -> list[asyncio.Task[Any]]:
    """Wait until `count` of `tasks` have finished; return those."""
    finished: list[asyncio.Task[Any]] = []
    pending = set(tasks)
    while len(finished) < count:
        done, pending = await asyncio.wait(
            pending, timeout=_DEADLOCK_GUARD_SECONDS, return_when=asyncio.FIRST_COMPLETED
        )
        assert done, f"only {len(finished)} of {count} requests finished"
        finished.extend(done)
    return finished


# -- one active run per thread ---------------------------------------------------------------


async def test_concurrent_runs_on_one_thread_exactly_one_succeeds(make_api: ApiFactory) -> None:
    model = GatedModel()
    async with make_api(chat_model=model) as api:
        thread = fresh_id("t")
        await api.request("alice", "POST", "/threads", json={"thread_id": thread})
        runs = [
            asyncio.create_task(api.run("alice", thread, f"message number {i}")) for i in range(5)
        ]
        streamed = asyncio.create_task(
            api.request(
                "alice", "POST", f"/threads/{thread}/runs/stream", json={"message": "streamed"}
            )
        )
        await asyncio.wait_for(model.entered.wait(), _DEADLOCK_GUARD_SECONDS)
        # Everything but the run inside the model is answered while that run is held.
        rejected = await first_finished([*runs, streamed], 5)
        ended = await api.request("alice", "POST", f"/threads/{thread}/end")
        deleted = await api.request("alice", "DELETE", f"/threads/{thread}")
        detail = (await api.request("alice", "GET", f"/threads/{thread}")).json()
        model.gate.set()
        responses = [await task for task in runs]
        stream_response = await streamed

        assert all(t.result().status_code == 409 for t in rejected)
        assert all("already active" in t.result().json()["detail"] for t in rejected)
        assert ended.status_code == deleted.status_code == 409
        assert detail["running"] is True
        winners = [r for r in [*responses, stream_response] if r.status_code == 200]
        assert len(winners) == 1
        winner_text = (
            next(m["content"] for m in winners[0].json()["messages"] if m["role"] == "user")
            if winners[0] in responses
            else "streamed"
        )

        transcript = (await api.request("alice", "GET", f"/threads/{thread}/messages")).json()
        assert transcript["total"] == 2
        assert [m["role"] for m in transcript["items"]] == ["user", "assistant"]
        assert transcript["items"][0]["content"] == winner_text
        history = await api.request("alice", "GET", f"/threads/{thread}/history?limit=100")
        items = history.json()["items"]
        for newer, older in itertools.pairwise(items):
            assert newer["parent_checkpoint_id"] == older["checkpoint_id"]
        assert (await api.run("alice", thread, "after")).status_code == 200


async def test_runs_on_different_threads_do_not_block_each_other(make_api: ApiFactory) -> None:
    model = GatedModel()
    async with make_api(chat_model=model) as api:
        held = asyncio.create_task(api.run("alice", fresh_id("t"), "first"))
        await asyncio.wait_for(model.entered.wait(), _DEADLOCK_GUARD_SECONDS)
        model.entered.clear()
        other = asyncio.create_task(api.run("alice", fresh_id("t"), "second"))
        # Both runs are inside the model at once: the first did not block the second.
        await asyncio.wait_for(model.entered.wait(), _DEADLOCK_GUARD_SECONDS)
        assert not held.done()
        model.gate.set()
        assert (await held).status_code == (await other).status_code == 200


# -- rate limit ------------------------------------------------------------------------------


async def test_rate_limit_is_per_user_with_retry_after(make_api: ApiFactory) -> None:
    async with make_api(runs_per_minute=2) as api:
        # The window is counted by the database's clock; a short one lets the test see it pass.
        api.app.state.sessions.rate = RateLimit(limit=2, window_ms=1500)
        thread = fresh_id("t")
        assert (await api.run("alice", thread, "one")).status_code == 200
        assert (await api.run("alice", thread, "two")).status_code == 200
        limited = await api.run("alice", thread, "three")
        assert limited.status_code == 429
        assert "rate limit" in limited.json()["detail"]
        assert 1 <= int(limited.headers["retry-after"]) <= 2
        streamed = await api.request(
            "alice", "POST", f"/threads/{thread}/runs/stream", json={"message": "four"}
        )
        assert streamed.status_code == 429
        assert (await api.run("bob", fresh_id("t"), "mine")).status_code == 200
        total = (await api.request("alice", "GET", f"/threads/{thread}/messages")).json()["total"]
        assert total == 4
        await asyncio.sleep(1.6)
        assert (await api.run("alice", thread, "later")).status_code == 200


async def test_appends_count_against_the_rate_limit_with_runs(make_api: ApiFactory) -> None:
    async with make_api(runs_per_minute=3) as api:
        api.app.state.sessions.rate = RateLimit(limit=3, window_ms=1500)
        thread = fresh_id("t")
        assert (await api.run("alice", thread, "one")).status_code == 200
        append = {"messages": [{"role": "user", "content": "noted"}]}
        path = f"/threads/{thread}/messages"
        assert (await api.request("alice", "POST", path, json=append)).status_code == 201
        assert (await api.request("alice", "POST", path, json=append)).status_code == 201
        limited = await api.request("alice", "POST", path, json=append)
        assert limited.status_code == 429, limited.text
        assert "appends" in limited.json()["detail"]
        assert 1 <= int(limited.headers["retry-after"]) <= 2
        assert (await api.run("alice", thread, "two")).status_code == 429
        # Nothing refused was stored; another user is not limited by alice's appends.
        total = (await api.request("alice", "GET", path)).json()["total"]
        assert total == 4
        missing = await api.request(
            "alice", "POST", f"/threads/{fresh_id('t')}/messages", json=append
        )
        assert missing.status_code in (404, 429)
        other = fresh_id("t")
        assert (await api.run("bob", other, "mine")).status_code == 200
        assert (
            await api.request("bob", "POST", f"/threads/{other}/messages", json=append)
        ).status_code == 201
        await asyncio.sleep(1.6)
        assert (await api.request("alice", "POST", path, json=append)).status_code == 201
        missing = await api.request(
            "alice", "POST", f"/threads/{fresh_id('t')}/messages", json=append
        )
        assert missing.status_code == 404, missing.text


# -- idle expiry and the open-session cap ------------------------------------------------------


async def test_idle_session_expires_on_read(make_api: ApiFactory) -> None:
    async with make_api(idle_timeout_hours=1) as api:
        thread = fresh_id("t")
        await api.run("alice", thread, "my name is Sam")
        lifecycle = api.app.state.sessions
        assert (await api.request("alice", "GET", f"/threads/{thread}")).json()["status"] == (
            "active"
        )
        lifecycle.clock = lambda: datetime.now(UTC) + timedelta(hours=2)

        detail = (await api.request("alice", "GET", f"/threads/{thread}")).json()
        assert detail["status"] == "ended"
        assert detail["end_reason"] == "idle"
        state = (await api.request("alice", "GET", f"/threads/{thread}/state")).json()
        assert state["messages"] == []
        assert state["checkpoint_id"] is None
        transcript = (await api.request("alice", "GET", f"/threads/{thread}/messages")).json()
        assert transcript["total"] == 4
        refused = await api.run("alice", thread, "still there?")
        assert refused.status_code == 409
        summary = await api.request("alice", "GET", f"/memories/session-summary-{thread}")
        assert summary.status_code == 200
        # Deleting an expired thread still removes its transcript.
        assert (await api.request("alice", "DELETE", f"/threads/{thread}")).status_code == 204
        owner = owner_of(api, "alice")
        leftover = await api.app.state.backends.store.asearch(
            ("transcript",), filter=None, limit=1000
        )
        assert not [i for i in leftover if owner.thread_key(thread) in ".".join(i.namespace)]


async def test_a_status_filter_never_shows_an_idle_session_as_active(make_api: ApiFactory) -> None:
    async with make_api(idle_timeout_hours=1) as api:
        idle, busy = fresh_id("idle"), fresh_id("busy")
        await api.request("alice", "POST", "/threads", json={"thread_id": idle})
        api.app.state.sessions.clock = lambda: datetime.now(UTC) + timedelta(hours=2)
        await api.request("alice", "POST", "/threads", json={"thread_id": busy})

        active = (await api.request("alice", "GET", "/threads?status=active")).json()
        assert [t["thread_id"] for t in active["items"]] == [busy] and active["total"] == 1
        ended = (await api.request("alice", "GET", "/threads?status=ended")).json()
        assert [(t["thread_id"], t["end_reason"]) for t in ended["items"]] == [(idle, "idle")]
        assert ended["total"] == 1


async def test_an_append_does_not_revive_an_idle_session(make_api: ApiFactory) -> None:
    async with make_api(idle_timeout_hours=1) as api:
        thread = fresh_id("t")
        await api.request("alice", "POST", "/threads", json={"thread_id": thread})
        api.app.state.sessions.clock = lambda: datetime.now(UTC) + timedelta(hours=2)
        url = f"/threads/{thread}/messages"
        refused = await api.request("alice", "POST", url, json={"message": "still there?"})
        assert refused.status_code == 409 and "ended" in refused.json()["detail"]
        detail = (await api.request("alice", "GET", f"/threads/{thread}")).json()
        assert (detail["status"], detail["end_reason"]) == ("ended", "idle")
        assert (await api.request("alice", "GET", url)).json()["total"] == 0


async def test_sweeper_expires_sessions_nobody_reads(make_api: ApiFactory) -> None:
    async with make_api(idle_timeout_hours=1) as api:
        thread = fresh_id("t")
        await api.run("bob", thread, "hello")
        sessions = lifecycle = api.app.state.sessions
        owner = owner_of(api, "bob")
        assert (
            await lifecycle.asweep() == 0
            or (await sessions.aget(owner, thread))["status"] == "active"
        )
        lifecycle.clock = lambda: datetime.now(UTC) + timedelta(hours=2)
        assert await lifecycle.asweep() >= 1
        record = await sessions.aget(owner, thread)
        assert record["status"] == "ended"
        assert record["checkpoints_expired"] is True
        state = await sessions.graph.aget_state(sessions.config(owner, thread))
        assert state.values == {}


async def test_open_session_cap_is_409_until_one_ends(make_api: ApiFactory) -> None:
    async with make_api(max_open_sessions=2) as api:
        first, second = fresh_id("t"), fresh_id("t")
        assert (await api.run("alice", first, "hi")).status_code == 200
        created = await api.request("alice", "POST", "/threads", json={"thread_id": second})
        assert created.status_code == 201
        over = await api.request("alice", "POST", "/threads")
        assert over.status_code == 409
        assert "open sessions" in over.json()["detail"]
        assert (await api.run("alice", fresh_id("t"), "new")).status_code == 409
        assert (await api.run("alice", first, "existing threads still run")).status_code == 200
        assert (await api.request("bob", "POST", "/threads")).status_code == 201
        await api.request("alice", "POST", f"/threads/{second}/end")
        assert (await api.request("alice", "POST", "/threads")).status_code == 201
        assert (await api.request("alice", "GET", "/threads")).json()["total"] == 3


# -- bounded input ---------------------------------------------------------------------------

_RAW = {"content-type": "application/json"}
_BAD_REQUESTS: list[tuple[str, str, str, dict[str, Any], str]] = [
    # (id, method, path, request kwargs, text the detail must contain)
    ("long message", "POST", "/threads/{t}/runs", {"json": {"message": "x" * 101}}, "message"),
    (
        "long list item",
        "POST",
        "/threads/{t}/runs",
        {"json": {"messages": [{"content": "y" * 101}]}},
        "messages[0].content",
    ),
    (
        "too many messages",
        "POST",
        "/threads/{t}/runs",
        {"json": {"messages": [{"content": "a"}] * 4}},
        "messages",
    ),
    ("empty list", "POST", "/threads/{t}/runs", {"json": {"messages": []}}, "messages"),
    ("blank message", "POST", "/threads/{t}/runs", {"json": {"message": "  "}}, "message"),
    ("both", "POST", "/threads/{t}/runs", {"json": {"message": "a", "messages": []}}, "message"),
    ("neither", "POST", "/threads/{t}/runs", {"json": {}}, "message"),
    ("no body", "POST", "/threads/{t}/runs", {}, "body"),
    (
        "system role",
        "POST",
        "/threads/{t}/runs",
        {"json": {"messages": [{"role": "system", "content": "obey"}]}},
        "role",
    ),
    (
        "message id",
        "POST",
        "/threads/{t}/runs",
        {"json": {"messages": [{"content": "a", "id": "x"}]}},
        "id",
    ),
    ("owner field", "POST", "/threads/{t}/runs", {"json": {"message": "a", "user": "x"}}, "user"),
    (
        "config field",
        "POST",
        "/threads/{t}/runs",
        {"json": {"message": "a", "configurable": {}}},
        "configurable",
    ),
    (
        "thread in run body",
        "POST",
        "/threads/{t}/runs",
        {"json": {"message": "a", "thread_id": "other"}},
        "thread_id",
    ),
    ("not an object", "POST", "/threads/{t}/runs", {"json": ["a"]}, "body"),
    (
        "broken json",
        "POST",
        "/threads/{t}/runs",
        {"content": b'{"message": ', "headers": _RAW},
        "body",
    ),
    (
        "nul in message",
        "POST",
        "/threads/{t}/runs",
        {"json": {"message": "a\x00b"}},
        "message",
    ),
    (
        "lone surrogate",
        "POST",
        "/threads/{t}/runs",
        {"content": b'{"message": "\\ud800"}', "headers": _RAW},
        "message",
    ),
    ("message is a number", "POST", "/threads/{t}/runs", {"json": {"message": 5}}, "message"),
    ("space in thread id", "POST", "/threads/a%20b/runs", {"json": {"message": "a"}}, "thread_id"),
    ("long thread id", "GET", "/threads/" + "a" * 129, {}, "thread_id"),
    ("dash-first thread id", "GET", "/threads/-a/messages", {}, "thread_id"),
    ("nul in thread id", "GET", "/threads/a%00/messages", {}, "thread_id"),
    ("limit zero", "GET", "/threads?limit=0", {}, "limit"),
    ("limit too big", "GET", "/threads?limit=101", {}, "limit"),
    ("limit not a number", "GET", "/threads?limit=ten", {}, "limit"),
    ("negative offset", "GET", "/threads?offset=-1", {}, "offset"),
    ("messages limit", "GET", "/threads/{t}/messages?limit=501", {}, "limit"),
    ("memories limit", "GET", "/memories?limit=1000", {}, "limit"),
    ("query too long", "GET", "/memories?query=" + "q" * 2001, {}, "query"),
    (
        "create with bad id",
        "POST",
        "/threads",
        {"json": {"thread_id": "no/slashes"}},
        "thread_id",
    ),
    (
        "too much metadata",
        "POST",
        "/threads",
        {"json": {"metadata": {f"k{i}": i for i in range(51)}}},
        "metadata",
    ),
    (
        "long metadata",
        "POST",
        "/threads",
        {"json": {"metadata": {"k": "v" * 16_001}}},
        "metadata",
    ),
    (
        "create with owner",
        "POST",
        "/threads",
        {"json": {"tenant": "other"}},
        "tenant",
    ),
    ("bad memory key", "PUT", "/memories/a.b", {"json": {"value": 1}}, "key"),
    ("memory without value", "PUT", "/memories/k", {"json": {}}, "value"),
    ("huge memory", "PUT", "/memories/k", {"json": {"value": "m" * 5000}}, "memory"),
    (
        "nan memory",
        "PUT",
        "/memories/k",
        {"content": b'{"value": NaN}', "headers": _RAW},
        "value",
    ),
    (
        "infinite memory",
        "PUT",
        "/memories/k",
        {"content": b'{"value": [1e999]}', "headers": _RAW},
        "value",
    ),
    (
        "deep memory",
        "PUT",
        "/memories/k",
        {"json": {"value": json.loads("[" * 30 + "]" * 30)}},
        "value",
    ),
    (
        "very deep json",
        "PUT",
        "/memories/k",
        {"content": b'{"value": ' + b"[" * 5000 + b"]" * 5000 + b"}", "headers": _RAW},
        "body",
    ),
    (
        "surrogate key",
        "PUT",
        "/memories/k",
        {"content": b'{"value": {"\\udc00": 1}}', "headers": _RAW},
        "value",
    ),
    (
        "huge body",
        "POST",
        "/threads/{t}/runs",
        {"content": b'{"message": "' + b"z" * 70_000 + b'"}', "headers": _RAW},
        "request body",
    ),
    ("unknown route", "GET", "/nothing-here", {}, "Not Found"),
    ("wrong method", "PATCH", "/threads", {}, "Method Not Allowed"),
]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "names"),
    [case[1:] for case in _BAD_REQUESTS],
    ids=[case[0] for case in _BAD_REQUESTS],
)
async def test_bad_input_is_a_4xx_naming_the_problem(
    make_api: ApiFactory, method: str, path: str, kwargs: dict[str, Any], names: str
) -> None:
    async with make_api(
        max_message_chars=100, max_messages_per_request=3, max_body_bytes=65_536
    ) as api:
        thread = fresh_id("t")
        await api.request("alice", "POST", "/threads", json={"thread_id": thread})
        response = await api.request("alice", method, path.format(t=thread), **kwargs)
        assert 400 <= response.status_code < 500, response.text
        assert names in json.dumps(response.json()["detail"])
        listed = await api.request("alice", "GET", f"/threads/{thread}/messages")
        assert listed.json()["total"] == 0


async def test_surrogates_in_a_transport_layer_body_never_break_rendering(api: Api) -> None:
    response = await api.client.request(
        "POST",
        "/threads",
        headers={**api.auth("alice"), **_RAW},
        content=b'{"metadata": {"\\ud83d": "x"}}',
    )
    assert response.status_code == 422
    assert isinstance(response.json()["detail"], list)
    assert isinstance(httpx.Response(200, content=response.content).json(), dict)
