"""Native runs as durable records, on one server process on SQLite: the native stream
rejoined with `Last-Event-ID`, and `multitask_strategy` on `POST /threads/{id}/runs`,
`.../runs/stream` and `/chat` with the semantics of `/langgraph`."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.lgserver import LangGraphServer, langgraph_server, sse_events

pytestmark = pytest.mark.slow

_REPLY_SECONDS = 2


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LangGraphServer]:
    """A server whose replies take `_REPLY_SECONDS`, on a SQLite file."""
    tmp = tmp_path_factory.mktemp("native-runs")
    with langgraph_server(
        f"sqlite:///{tmp / 'agent.sqlite'}",
        tmp,
        model=f"offline:slow-{_REPLY_SECONDS}",
        runs_per_minute="1000",
    ) as running:
        yield running


@pytest.fixture(scope="module")
def pool() -> Iterator[ThreadPoolExecutor]:
    """Threads for the requests a test leaves waiting while it sends others."""
    with ThreadPoolExecutor(max_workers=4) as executor:
        yield executor


def _request(
    server: LangGraphServer, method: str, path: str, user: str = "alice", **kwargs: Any
) -> httpx.Response:
    headers = {**server.headers(user), **kwargs.pop("headers", {})}
    return httpx.request(method, f"{server.base}{path}", headers=headers, timeout=60, **kwargs)


def _run(server: LangGraphServer, tid: str, text: str, **extra: Any) -> httpx.Response:
    return _request(server, "POST", f"/threads/{tid}/runs", json={"message": text, **extra})


def _humans(server: LangGraphServer, tid: str) -> list[str]:
    listed = _request(server, "GET", f"/threads/{tid}/messages", params={"limit": 100}).json()
    return [m["content"] for m in listed["items"] if m["role"] == "user"]


def _roles(server: LangGraphServer, tid: str) -> list[str]:
    listed = _request(server, "GET", f"/threads/{tid}/messages", params={"limit": 100}).json()
    return [m["role"] for m in listed["items"]]


def _wait_running(server: LangGraphServer, tid: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        answer = _request(server, "GET", f"/threads/{tid}")
        if answer.status_code == 200 and answer.json().get("running"):
            return
        assert time.monotonic() < deadline, "the run never started"
        time.sleep(0.05)


def _in_background(
    pool: ThreadPoolExecutor, server: LangGraphServer, tid: str, text: str
) -> Future[httpx.Response]:
    started = pool.submit(_run, server, tid, text)
    _wait_running(server, tid)
    return started


def test_a_native_stream_left_mid_run_is_rejoined_where_it_stopped(
    server: LangGraphServer,
) -> None:
    tid = f"t-{uuid.uuid4().hex[:10]}"
    seen: list[str] = []
    with httpx.stream(
        "POST",
        f"{server.base}/threads/{tid}/runs/stream",
        json={"message": "come back"},
        headers=server.headers("alice"),
        timeout=30,
    ) as response:
        assert response.status_code == 200
        location = response.headers["content-location"]
        for line in response.iter_lines():
            seen.append(line)
            if line.startswith("id: ") and len([s for s in seen if s.startswith("id: ")]) == 3:
                break  # the caller leaves (a page reload) with the reply still streaming
    run_id = location.split("/")[-2]
    assert location == f"/threads/{tid}/runs/{run_id}/stream"
    head = sse_events("\n".join(seen) + "\n\n")
    assert head[0] == ("metadata", {"thread_id": tid, "run_id": run_id})
    last = [s for s in seen if s.startswith("id: ")][-1].removeprefix("id: ")
    rest = _request(server, "GET", location, headers={"Last-Event-ID": last})
    assert rest.status_code == 200
    assert rest.headers["content-type"].startswith("text/event-stream")
    tail = sse_events(rest.text)
    assert tail and tail[-1][0] == "done"
    whole_text = _request(server, "GET", location).text
    whole = sse_events(whole_text)
    assert head + tail == whole
    ids = [int(line[4:]) for line in whole_text.splitlines() if line.startswith("id: ")]
    assert len(ids) == len(whole) and ids == sorted(set(ids))
    tokens = "".join(data["text"] for name, data in whole if name == "token")
    assert tokens == whole[-1][1]["reply"]
    assert (
        sse_events(_request(server, "GET", location, headers={"Last-Event-ID": str(ids[-1])}).text)
        == []
    )
    assert _humans(server, tid) == ["come back"]


def test_enqueue_runs_after_the_active_run_and_both_answer_in_order(
    server: LangGraphServer, pool: ThreadPoolExecutor
) -> None:
    tid = f"t-{uuid.uuid4().hex[:10]}"
    first = _in_background(pool, server, tid, "one")
    second = _run(server, tid, "two", multitask_strategy="enqueue")
    assert second.status_code == 200, second.text
    assert first.result().status_code == 200
    assert second.json()["messages"][0]["content"] == "two"
    assert _humans(server, tid) == ["one", "two"]
    assert _roles(server, tid) == ["user", "assistant", "user", "assistant"]


def test_reject_is_the_default_and_answers_409(
    server: LangGraphServer, pool: ThreadPoolExecutor
) -> None:
    tid = f"t-{uuid.uuid4().hex[:10]}"
    first = _in_background(pool, server, tid, "one")
    for path, body in (
        (f"/threads/{tid}/runs", {"message": "two"}),
        (f"/threads/{tid}/runs/stream", {"message": "two"}),
        ("/chat", {"thread_id": tid, "message": "two", "multitask_strategy": "reject"}),
    ):
        busy = _request(server, "POST", path, json=body)
        assert busy.status_code == 409, (path, busy.text)
        assert "already active" in busy.json()["detail"]
    assert first.result().status_code == 200
    assert _humans(server, tid) == ["one"]


def test_interrupt_stops_the_active_run_and_keeps_its_input(
    server: LangGraphServer, pool: ThreadPoolExecutor
) -> None:
    tid = f"t-{uuid.uuid4().hex[:10]}"
    first = _in_background(pool, server, tid, "one")
    with httpx.stream(
        "POST",
        f"{server.base}/threads/{tid}/runs/stream",
        json={"message": "two", "multitask_strategy": "interrupt"},
        headers=server.headers("alice"),
        timeout=30,
    ) as response:
        assert response.status_code == 200
        events = sse_events(response.read().decode())
    assert events[0][0] == "metadata" and events[-1][0] == "done"
    stopped = first.result()
    assert stopped.status_code == 409
    assert "interrupted" in stopped.json()["detail"]
    assert _humans(server, tid) == ["one", "two"]
    assert _roles(server, tid)[-1] == "assistant"


def test_rollback_removes_the_active_run_and_what_it_wrote(
    server: LangGraphServer, pool: ThreadPoolExecutor
) -> None:
    tid = f"t-{uuid.uuid4().hex[:10]}"
    assert _run(server, tid, "kept").status_code == 200
    first = _in_background(pool, server, tid, "dropped")
    time.sleep(0.3)  # its input is in a checkpoint by now
    chat = _request(
        server,
        "POST",
        "/chat",
        json={"thread_id": tid, "message": "two", "multitask_strategy": "rollback"},
    )
    assert chat.status_code == 200, chat.text
    assert chat.json()["thread_id"] == tid
    assert first.result().status_code == 409
    assert _humans(server, tid) == ["kept", "two"]
    assert _roles(server, tid) == ["user", "assistant", "user", "assistant"]


def test_chat_on_an_ended_session_still_starts_a_new_one(server: LangGraphServer) -> None:
    tid = f"t-{uuid.uuid4().hex[:10]}"
    assert _run(server, tid, "hello").status_code == 200
    assert _request(server, "POST", f"/threads/{tid}/end").status_code == 200
    chat = _request(
        server,
        "POST",
        "/chat",
        json={"thread_id": tid, "message": "back", "multitask_strategy": "enqueue"},
    )
    assert chat.status_code == 200, chat.text
    body = chat.json()
    assert body["previous_thread_id"] == tid and body["thread_id"] != tid
    assert _humans(server, body["thread_id"]) == ["back"]


@pytest.mark.parametrize("path", ["/threads/{tid}/runs", "/threads/{tid}/runs/stream", "/chat"])
def test_a_bad_strategy_is_a_named_422_and_stores_nothing(
    server: LangGraphServer, path: str
) -> None:
    tid = f"t-{uuid.uuid4().hex[:10]}"
    body = {"message": "hi", "multitask_strategy": "later"}
    if path == "/chat":
        body["thread_id"] = tid
    answer = _request(server, "POST", path.format(tid=tid), json=body)
    assert answer.status_code == 422, answer.text
    assert "multitask_strategy" in answer.text
    assert _request(server, "GET", f"/threads/{tid}").status_code == 404


def test_rejoining_is_the_owners_only_and_a_bad_last_event_id_is_named(
    server: LangGraphServer,
) -> None:
    tid = f"t-{uuid.uuid4().hex[:10]}"
    streamed = _request(server, "POST", f"/threads/{tid}/runs/stream", json={"message": "mine"})
    assert streamed.status_code == 200
    location = streamed.headers["content-location"]
    assert _request(server, "GET", location, user="bob").status_code == 404
    missing = f"/threads/{tid}/runs/{uuid.uuid4()}/stream"
    assert _request(server, "GET", missing).status_code == 404
    for bad in ("abc", "-4", "1" * 40):
        answer = _request(server, "GET", location, headers={"Last-Event-ID": bad})
        assert answer.status_code == 422, (bad, answer.text)
        assert "last-event-id" in answer.text.lower()
    assert sse_events(_request(server, "GET", location).text)[-1][0] == "done"
