"""Runs over `/langgraph` that take time: cancel, one run per thread, rate limit, heartbeats."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from langgraph_sdk import get_sync_client

from tests.lgserver import LangGraphServer, langgraph_server, post, sse_events

pytestmark = pytest.mark.slow

_REPLY_SECONDS = 6
_RUNS_PER_MINUTE = 4


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LangGraphServer]:
    """A server whose replies take `_REPLY_SECONDS`, on the in-memory backend."""
    with langgraph_server(
        "memory://",
        tmp_path_factory.mktemp("lg-runs"),
        model=f"offline:slow-{_REPLY_SECONDS}",
        runs_per_minute=str(_RUNS_PER_MINUTE),
    ) as running:
        yield running


def _body(text: str = "hello") -> dict[str, object]:
    return {
        "assistant_id": "agent",
        "input": {"messages": [{"role": "user", "content": text}]},
        "stream_mode": ["values", "messages-tuple"],
        "if_not_exists": "create",
    }


def test_cancel_stops_a_run_and_frees_its_thread(server: LangGraphServer) -> None:
    tid = str(uuid.uuid4())
    with httpx.stream(
        "POST",
        f"{server.url}/threads/{tid}/runs/stream",
        json=_body(),
        headers=server.headers("alice"),
        timeout=30,
    ) as response:
        assert response.status_code == 200
        run_path = response.headers["content-location"].removeprefix("/langgraph")
        lines = response.iter_lines()
        assert next(lines) == "event: metadata"
        rejected = {**_body("again"), "multitask_strategy": "reject"}
        second = post(server, "alice", f"/threads/{tid}/runs/wait", rejected)
        assert second.status_code == 409, second.text
        assert "already active" in second.json()["detail"]
        started = time.monotonic()
        cancel = post(server, "alice", f"{run_path}/cancel?wait=true")
        assert cancel.status_code == 202
        rest = "\n".join(lines)
    assert time.monotonic() - started < _REPLY_SECONDS
    assert "event: error" not in rest
    client = get_sync_client(url=server.url, api_key=server.keys["alice"])
    run = client.runs.get(tid, run_path.rsplit("/", 1)[1])
    assert run["status"] == "interrupted"
    thread = client.threads.get(tid)
    assert thread["status"] == "idle"
    assert thread["values"]["messages"][0]["content"] == "hello"


def test_a_long_stream_sends_heartbeats(server: LangGraphServer) -> None:
    quiet = {**_body(), "stream_mode": "values"}  # nothing to send while the model writes
    response = post(server, "bob", f"/threads/{uuid.uuid4()}/runs/stream", quiet)
    assert response.status_code == 200
    assert ": heartbeat" in response.text
    events = sse_events(response.text)
    assert events[0][0] == "metadata" and events[-1][0] == "values"


def test_the_rate_limit_applies(server: LangGraphServer) -> None:
    started = []
    for _ in range(_RUNS_PER_MINUTE):
        tid = str(uuid.uuid4())
        created = post(server, "carol", f"/threads/{tid}/runs", _body())
        assert created.status_code == 200, created.text
        started.append(f"/threads/{tid}/runs/{created.json()['run_id']}")
    refused = post(server, "carol", f"/threads/{uuid.uuid4()}/runs", _body())
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    for path in started:
        assert post(server, "carol", f"{path}/cancel").status_code == 202
