"""Runs as durable records over `/langgraph`, on one server on the embedded default
(SQLite): queueing behind an active run, the `interrupt` and `rollback` strategies and
cancel actions, delayed runs, rejoining a stream after the caller left (`Last-Event-ID`),
deleting a thread while it runs, and the errors of each."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.lgserver import LangGraphServer, langgraph_server, post, sse_events

pytestmark = pytest.mark.slow

_REPLY_SECONDS = 2


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LangGraphServer]:
    """A server whose replies take `_REPLY_SECONDS`, on a SQLite file."""
    tmp = tmp_path_factory.mktemp("lg-durable")
    with langgraph_server(
        f"sqlite:///{tmp / 'agent.sqlite'}",
        tmp,
        model=f"offline:slow-{_REPLY_SECONDS}",
        runs_per_minute="1000",
    ) as running:
        yield running


def _body(text: str, **extra: Any) -> dict[str, Any]:
    return {
        "assistant_id": "agent",
        "input": {"messages": [{"role": "user", "content": text}]},
        "stream_mode": ["values", "messages-tuple"],
        "if_not_exists": "create",
        **extra,
    }


def _get(server: LangGraphServer, path: str, **kwargs: Any) -> httpx.Response:
    headers = {**server.headers("alice"), **kwargs.pop("headers", {})}
    return httpx.get(f"{server.url}{path}", headers=headers, timeout=60, **kwargs)


def _start(server: LangGraphServer, tid: str, text: str, **extra: Any) -> dict[str, Any]:
    created = post(server, "alice", f"/threads/{tid}/runs", _body(text, **extra))
    assert created.status_code == 200, created.text
    return dict(created.json())


def _wait_status(server: LangGraphServer, tid: str, run_id: str, wanted: str) -> None:
    deadline = time.monotonic() + 30
    while (status := _get(server, f"/threads/{tid}/runs/{run_id}").json()["status"]) != wanted:
        assert time.monotonic() < deadline, f"run still {status}, not {wanted}"
        time.sleep(0.05)


def _conversation(server: LangGraphServer, tid: str) -> list[tuple[str, str]]:
    state = _get(server, f"/threads/{tid}/state").json()
    return [(m["type"], m["content"]) for m in (state["values"] or {}).get("messages", [])]


def _humans(server: LangGraphServer, tid: str) -> list[str]:
    return [content for kind, content in _conversation(server, tid) if kind == "human"]


def test_a_second_run_queues_behind_the_first_and_both_answer_in_order(
    server: LangGraphServer,
) -> None:
    tid = str(uuid.uuid4())
    first = _start(server, tid, "one")
    second = _start(server, tid, "two")  # no strategy: LangGraph's default, enqueue
    assert second["multitask_strategy"] == "enqueue"
    assert second["status"] == "pending"
    joined = _get(server, f"/threads/{tid}/runs/{second['run_id']}/join")
    assert joined.status_code == 200
    for run in (first, second):
        assert _get(server, f"/threads/{tid}/runs/{run['run_id']}").json()["status"] == "success"
    kinds = [kind for kind, _ in _conversation(server, tid)]
    assert kinds == ["human", "ai", "human", "ai"]
    assert _humans(server, tid) == ["one", "two"]
    listed = _get(server, f"/threads/{tid}/runs").json()
    assert [r["run_id"] for r in listed] == [second["run_id"], first["run_id"]]


def test_interrupt_stops_the_active_run_and_keeps_its_input(server: LangGraphServer) -> None:
    tid = str(uuid.uuid4())
    first = _start(server, tid, "one")
    _wait_status(server, tid, first["run_id"], "running")
    second = post(
        server, "alice", f"/threads/{tid}/runs/wait", _body("two", multitask_strategy="interrupt")
    )
    assert second.status_code == 200, second.text
    assert _get(server, f"/threads/{tid}/runs/{first['run_id']}").json()["status"] == "interrupted"
    assert _humans(server, tid) == ["one", "two"]
    assert _conversation(server, tid)[-1][0] == "ai"


def test_rollback_removes_the_active_run_and_what_it_wrote(server: LangGraphServer) -> None:
    tid = str(uuid.uuid4())
    kept = post(server, "alice", f"/threads/{tid}/runs/wait", _body("kept"))
    assert kept.status_code == 200
    first = _start(server, tid, "dropped")
    _wait_status(server, tid, first["run_id"], "running")
    time.sleep(0.3)  # its input is in a checkpoint by now
    second = post(
        server, "alice", f"/threads/{tid}/runs/wait", _body("two", multitask_strategy="rollback")
    )
    assert second.status_code == 200, second.text
    assert _get(server, f"/threads/{tid}/runs/{first['run_id']}").status_code == 404
    assert _humans(server, tid) == ["kept", "two"]
    assert [kind for kind, _ in _conversation(server, tid)] == ["human", "ai", "human", "ai"]


def test_cancel_with_rollback_leaves_the_thread_as_before_the_run(server: LangGraphServer) -> None:
    tid = str(uuid.uuid4())
    assert post(server, "alice", "/threads", {"thread_id": tid}).status_code == 200
    run = _start(server, tid, "never mind")
    _wait_status(server, tid, run["run_id"], "running")
    time.sleep(0.3)
    cancel = post(
        server, "alice", f"/threads/{tid}/runs/{run['run_id']}/cancel?action=rollback&wait=true"
    )
    assert cancel.status_code == 202, cancel.text
    assert _get(server, f"/threads/{tid}/runs/{run['run_id']}").status_code == 404
    assert _conversation(server, tid) == []
    thread = _get(server, f"/threads/{tid}").json()
    assert thread["status"] == "idle"
    again = post(server, "alice", f"/threads/{tid}/runs/wait", _body("hello"))
    assert again.status_code == 200
    assert _humans(server, tid) == ["hello"]


def test_a_cancelled_pending_run_never_runs(server: LangGraphServer) -> None:
    tid = str(uuid.uuid4())
    first = _start(server, tid, "one")
    second = _start(server, tid, "two")
    cancel = post(server, "alice", f"/threads/{tid}/runs/{second['run_id']}/cancel")
    assert cancel.status_code == 202
    assert _get(server, f"/threads/{tid}/runs/{second['run_id']}").json()["status"] == "interrupted"
    assert _get(server, f"/threads/{tid}/runs/{first['run_id']}/join").status_code == 200
    time.sleep(0.5)  # a queue round: nothing takes the cancelled run
    assert _humans(server, tid) == ["one"]


def test_cancel_runs_stops_every_active_run_of_a_thread(server: LangGraphServer) -> None:
    tid = str(uuid.uuid4())
    runs = [_start(server, tid, text) for text in ("one", "two", "three")]
    _wait_status(server, tid, runs[0]["run_id"], "running")
    done = post(server, "alice", "/runs/cancel", {"thread_id": tid})
    assert done.status_code == 204, done.text
    for run in runs:
        _wait_status(server, tid, run["run_id"], "interrupted")
    assert _humans(server, tid) == ["one"]


def test_a_delayed_run_starts_after_its_time(server: LangGraphServer) -> None:
    tid = str(uuid.uuid4())
    started = time.monotonic()
    run = _start(server, tid, "later", after_seconds=1.5)
    assert run["status"] == "pending"
    time.sleep(0.5)
    assert _get(server, f"/threads/{tid}/runs/{run['run_id']}").json()["status"] == "pending"
    joined = _get(server, f"/threads/{tid}/runs/{run['run_id']}/join")
    assert joined.status_code == 200
    assert time.monotonic() - started >= 1.5 + _REPLY_SECONDS
    assert _humans(server, tid) == ["later"]


def test_a_background_run_is_rejoined_from_any_event(server: LangGraphServer) -> None:
    tid = str(uuid.uuid4())
    run = _start(server, tid, "stream me")
    path = f"/threads/{tid}/runs/{run['run_id']}/stream"
    whole = _get(server, path)
    assert whole.status_code == 200
    assert whole.headers["content-type"].startswith("text/event-stream")
    ids = [
        int(line.removeprefix("id: "))
        for line in whole.text.splitlines()
        if line.startswith("id: ")
    ]
    events = sse_events(whole.text)
    assert len(ids) == len(events) >= 3
    assert ids == sorted(set(ids))
    assert events[0][0] == "metadata" and events[-1][0] == "values"
    assert events[-1][1]["messages"][-1]["type"] == "ai"
    rest = _get(server, path, headers={"Last-Event-ID": str(ids[1])})
    assert sse_events(rest.text) == events[2:]
    assert sse_events(_get(server, path, headers={"Last-Event-ID": str(ids[-1])}).text) == []


def test_a_resumable_stream_left_mid_run_is_rejoined_where_it_stopped(
    server: LangGraphServer,
) -> None:
    tid = str(uuid.uuid4())
    body = _body("come back", stream_resumable=True, on_disconnect="continue")
    seen: list[str] = []
    with httpx.stream(
        "POST",
        f"{server.url}/threads/{tid}/runs/stream",
        json=body,
        headers=server.headers("alice"),
        timeout=30,
    ) as response:
        assert response.status_code == 200
        location = response.headers["location"]  # relative to the API root
        for line in response.iter_lines():
            seen.append(line)
            if line.startswith("id: ") and len([s for s in seen if s.startswith("id: ")]) == 3:
                break  # the caller leaves (a page reload) with the reply still streaming
    last = [s for s in seen if s.startswith("id: ")][-1].removeprefix("id: ")
    rest = _get(server, location, headers={"Last-Event-ID": last})
    assert rest.status_code == 200
    tail = sse_events(rest.text)
    assert tail and tail[-1][0] == "values"
    assert tail[-1][1]["messages"][-1]["type"] == "ai"
    whole = sse_events(_get(server, location).text)
    head = sse_events("\n".join(seen) + "\n\n")
    assert head + tail == whole
    run_id = location.split("/")[-2]
    assert _get(server, f"/threads/{tid}/runs/{run_id}").json()["status"] == "success"


def test_the_thread_stream_follows_runs_as_they_come(server: LangGraphServer) -> None:
    tid = str(uuid.uuid4())
    assert post(server, "alice", "/threads", {"thread_id": tid}).status_code == 200
    names: list[str] = []
    with httpx.stream(
        "GET", f"{server.url}/threads/{tid}/stream", headers=server.headers("alice"), timeout=30
    ) as response:
        assert response.status_code == 200
        run = _start(server, tid, "watched")
        for line in response.iter_lines():
            if line.startswith("event: "):
                names.append(line.removeprefix("event: "))
            if line.startswith("data: ") and names[-1] == "values" and '"ai"' in line:
                break
    assert names[0] == "metadata" and "values" in names
    assert _get(server, f"/threads/{tid}/runs/{run['run_id']}/join").status_code == 200


def test_deleting_a_thread_during_a_run_cancels_it_and_deletes_both(
    server: LangGraphServer,
) -> None:
    tid = str(uuid.uuid4())
    run = _start(server, tid, "going away")
    _wait_status(server, tid, run["run_id"], "running")
    deleted = httpx.delete(
        f"{server.url}/threads/{tid}", headers=server.headers("alice"), timeout=30
    )
    assert deleted.status_code == 204, deleted.text
    assert _get(server, f"/threads/{tid}").status_code == 404
    assert _get(server, f"/threads/{tid}/runs/{run['run_id']}").status_code == 404
    recreated = post(server, "alice", f"/threads/{tid}/runs/wait", _body("fresh start"))
    assert recreated.status_code == 200
    assert _humans(server, tid) == ["fresh start"]


def test_another_user_cannot_see_join_or_cancel_a_run(server: LangGraphServer) -> None:
    tid = str(uuid.uuid4())
    run = _start(server, tid, "mine")
    path = f"/threads/{tid}/runs/{run['run_id']}"
    bob = server.headers("bob")
    for method, suffix in (("GET", ""), ("GET", "/join"), ("GET", "/stream"), ("POST", "/cancel")):
        answer = httpx.request(method, f"{server.url}{path}{suffix}", headers=bob, timeout=30)
        assert answer.status_code == 404, (method, suffix, answer.text)
    assert _get(server, f"{path}/join").status_code == 200
    assert _humans(server, tid) == ["mine"]


@pytest.mark.parametrize(
    ("method", "suffix", "body", "headers", "named"),
    [
        ("GET", "/stream", None, {"Last-Event-ID": "abc"}, "Last-Event-ID"),
        ("GET", "/stream", None, {"Last-Event-ID": "-4"}, "Last-Event-ID"),
        ("POST", "/cancel?action=explode", None, {}, "action"),
    ],
)
def test_bad_run_requests_are_named_422s(
    server: LangGraphServer,
    method: str,
    suffix: str,
    body: Any,
    headers: dict[str, str],
    named: str,
) -> None:
    tid = str(uuid.uuid4())
    run = post(server, "alice", f"/threads/{tid}/runs/wait", _body("hi"))
    assert run.status_code == 200
    run_id = _get(server, f"/threads/{tid}/runs").json()[0]["run_id"]
    answer = httpx.request(
        method,
        f"{server.url}/threads/{tid}/runs/{run_id}{suffix}",
        headers={**server.headers("alice"), **headers},
        timeout=30,
    )
    assert answer.status_code == 422, answer.text
    assert named in answer.text


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"after_seconds": -1}, "after_seconds"),
        ({"after_seconds": 10**9}, "after_seconds"),
        ({"multitask_strategy": "later"}, "multitask_strategy"),
    ],
)
def test_bad_run_bodies_are_named_422s_and_store_nothing(
    server: LangGraphServer, extra: dict[str, Any], named: str
) -> None:
    tid = str(uuid.uuid4())
    answer = post(server, "alice", f"/threads/{tid}/runs", _body("hi", **extra))
    assert answer.status_code == 422, answer.text
    assert named in answer.text
    assert _get(server, f"/threads/{tid}").status_code == 404


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LangGraphServer]:
    """A server that executes one run at a time and keeps no events after a run ends."""
    tmp = tmp_path_factory.mktemp("lg-tight")
    with langgraph_server(
        f"sqlite:///{tmp / 'agent.sqlite'}",
        tmp,
        model=f"offline:slow-{_REPLY_SECONDS}",
        runs_per_minute="1000",
        run_concurrency="1",
        run_events_keep_seconds="0",
    ) as running:
        yield running


def test_run_concurrency_bounds_the_runs_a_process_executes(tight: LangGraphServer) -> None:
    first_thread, second_thread = str(uuid.uuid4()), str(uuid.uuid4())
    first = _start(tight, first_thread, "one")
    second = _start(tight, second_thread, "two")  # another thread: only the setting holds it
    assert second["status"] == "pending"
    _wait_status(tight, first_thread, first["run_id"], "running")
    assert _get(tight, f"/threads/{second_thread}/runs/{second['run_id']}").json()["status"] == (
        "pending"
    )
    _wait_status(tight, second_thread, second["run_id"], "success")
    assert _get(tight, f"/threads/{first_thread}/runs/{first['run_id']}").json()["status"] == (
        "success"
    )


def test_run_events_keep_seconds_zero_drops_the_events_once_a_run_ends(
    tight: LangGraphServer,
) -> None:
    tid = str(uuid.uuid4())
    run = _start(tight, tid, "forget the stream")
    path = f"/threads/{tid}/runs/{run['run_id']}"
    assert _get(tight, f"{path}/join").status_code == 200
    deadline = time.monotonic() + 10
    while sse_events(_get(tight, f"{path}/stream").text):
        assert time.monotonic() < deadline, "the finished run's events were kept"
        time.sleep(0.1)
    assert _get(tight, path).json()["status"] == "success"  # the record stays
    assert _humans(tight, tid) == ["forget the stream"]
