"""Runs across server processes on one database (three on Postgres, three on Redis, two on
one SQLite file): a run started on one process is read, joined, streamed, rejoined and
cancelled from the others; runs queued through every process run one at a time in order;
a background run whose process is killed is finished by another."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.lgserver import USERS, sse_events
from tests.plugins.server import fresh_id
from tests.test_scale_out import ServerProcess, launch, server_env, wait_ready

pytestmark = pytest.mark.slow

_REPLY_SECONDS = 2
_LEASE_SECONDS = 2


@dataclass
class Cluster:
    """Processes on one database, the environment to start more, and the users' keys."""

    servers: list[ServerProcess]
    env: dict[str, str]
    log_dir: Path
    keys: dict[str, str]

    def url(self, index: int) -> str:
        """The `/langgraph` URL of process `index`."""
        return f"{self.servers[index].base}/langgraph"

    def call(self, index: int, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A request as alice to process `index`."""
        headers = {"x-api-key": self.keys["alice"], **kwargs.pop("headers", {})}
        return httpx.request(method, self.url(index) + path, headers=headers, timeout=60, **kwargs)


@pytest.fixture(scope="module", params=["postgres", "redis", "sqlite"])
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    kind = request.param
    log_dir = tmp_path_factory.mktemp(f"lg-cluster-{kind}")
    if kind == "sqlite":
        url, count = f"sqlite:///{log_dir / 'agent.sqlite'}", 2
    else:
        url, count = request.getfixturevalue(f"{kind}_url"), 3
    keys = {user: fresh_id(f"key-{user}") for user in USERS}
    env = server_env(url, ",".join(f"{keys[u]}=acme/{fresh_id(u)}" for u in USERS))
    env.update(
        MEMORY_AGENT_MODEL=f"offline:slow-{_REPLY_SECONDS}",
        MEMORY_AGENT_LEASE_SECONDS=str(_LEASE_SECONDS),
        MEMORY_AGENT_RUNS_PER_MINUTE="1000",
        MEMORY_AGENT_MAX_OPEN_SESSIONS="1000",
    )
    servers: list[ServerProcess] = []
    try:
        servers.extend(launch(env, log_dir) for _ in range(count))
        wait_ready(servers)
        yield Cluster(servers, env, log_dir, keys)
    finally:
        for server in servers:
            server.stop()


def _body(text: str, **extra: Any) -> dict[str, Any]:
    return {
        "assistant_id": "agent",
        "input": {"messages": [{"role": "user", "content": text}]},
        "stream_mode": ["values", "messages-tuple"],
        "if_not_exists": "create",
        **extra,
    }


def _start(cluster: Cluster, index: int, tid: str, text: str) -> str:
    created = cluster.call(index, "POST", f"/threads/{tid}/runs", json=_body(text))
    assert created.status_code == 200, created.text
    return str(created.json()["run_id"])


def _status(cluster: Cluster, index: int, tid: str, run_id: str) -> str:
    answer = cluster.call(index, "GET", f"/threads/{tid}/runs/{run_id}")
    assert answer.status_code == 200, answer.text
    return str(answer.json()["status"])


def _wait_running(cluster: Cluster, index: int, tid: str, run_id: str) -> None:
    deadline = time.monotonic() + 30
    while _status(cluster, index, tid, run_id) != "running":
        assert time.monotonic() < deadline, "the run never started"
        time.sleep(0.05)


def _conversation(cluster: Cluster, index: int, tid: str) -> list[tuple[str, str]]:
    state = cluster.call(index, "GET", f"/threads/{tid}/state").json()
    return [(m["type"], m["content"]) for m in (state["values"] or {}).get("messages", [])]


def _last(cluster: Cluster) -> int:
    return len(cluster.servers) - 1


def test_a_run_is_read_joined_and_streamed_from_every_process(cluster: Cluster) -> None:
    tid = str(uuid.uuid4())
    run_id = _start(cluster, 0, tid, "hello from the first")
    assert _status(cluster, 1, tid, run_id) in ("pending", "running")
    streamed = cluster.call(_last(cluster), "GET", f"/threads/{tid}/runs/{run_id}/stream")
    events = sse_events(streamed.text)
    assert events[0][0] == "metadata" and events[-1][0] == "values"
    assert any(name == "messages" for name, _ in events)
    joined = cluster.call(1, "GET", f"/threads/{tid}/runs/{run_id}/join")
    assert joined.status_code == 200
    assert joined.json()["messages"][-1]["type"] == "ai"
    assert joined.json() == events[-1][1]
    for index in range(len(cluster.servers)):
        assert _status(cluster, index, tid, run_id) == "success"


def test_a_resumable_stream_is_rejoined_on_another_process(cluster: Cluster) -> None:
    tid = str(uuid.uuid4())
    body = _body("reload the page", stream_resumable=True)
    seen: list[str] = []
    headers = {"x-api-key": cluster.keys["alice"]}
    with httpx.stream(
        "POST",
        f"{cluster.url(0)}/threads/{tid}/runs/stream",
        json=body,
        headers=headers,
        timeout=30,
    ) as response:
        assert response.status_code == 200
        location = response.headers["location"]  # relative to the API root
        for line in response.iter_lines():
            seen.append(line)
            if sum(s.startswith("id: ") for s in seen) == 3:
                break
    last = [s for s in seen if s.startswith("id: ")][-1].removeprefix("id: ")
    rest = cluster.call(1, "GET", location, headers={"Last-Event-ID": last})
    assert rest.status_code == 200
    tail = sse_events(rest.text)
    assert tail[-1][0] == "values" and tail[-1][1]["messages"][-1]["type"] == "ai"
    whole = sse_events(cluster.call(_last(cluster), "GET", location).text)
    assert sse_events("\n".join(seen) + "\n\n") + tail == whole


def test_a_cancel_from_another_process_stops_the_run(cluster: Cluster) -> None:
    tid = str(uuid.uuid4())
    headers = {"x-api-key": cluster.keys["alice"]}
    with httpx.stream(
        "POST",
        f"{cluster.url(0)}/threads/{tid}/runs/stream",
        json=_body("stop me"),
        headers=headers,
        timeout=30,
    ) as response:
        run_path = response.headers["content-location"].removeprefix("/langgraph")
        lines = response.iter_lines()
        assert next(lines) == "event: metadata"
        started = time.monotonic()
        cancel = cluster.call(1, "POST", f"{run_path}/cancel?wait=true")
        assert cancel.status_code == 202, cancel.text
        rest = "\n".join(lines)
    assert time.monotonic() - started < _REPLY_SECONDS
    assert "event: error" not in rest
    run_id = run_path.rsplit("/", 1)[1]
    assert _status(cluster, _last(cluster), tid, run_id) == "interrupted"
    again = cluster.call(_last(cluster), "POST", f"/threads/{tid}/runs/wait", json=_body("next"))
    assert again.status_code == 200, again.text


def test_runs_queued_through_every_process_run_in_order(cluster: Cluster) -> None:
    tid = str(uuid.uuid4())
    texts = [f"message {n}" for n in range(5)]
    run_ids = [_start(cluster, n % len(cluster.servers), tid, text) for n, text in enumerate(texts)]
    joined = cluster.call(1, "GET", f"/threads/{tid}/runs/{run_ids[-1]}/join")
    assert joined.status_code == 200
    for run_id in run_ids:
        assert _status(cluster, 0, tid, run_id) == "success"
    conversation = _conversation(cluster, 0, tid)
    assert [kind for kind, _ in conversation] == ["human", "ai"] * len(texts)
    assert [content for kind, content in conversation if kind == "human"] == texts


def test_a_background_run_whose_process_dies_is_finished_by_another(cluster: Cluster) -> None:
    doomed = launch(cluster.env, cluster.log_dir)
    try:
        wait_ready([doomed])
        tid = str(uuid.uuid4())
        created = httpx.post(
            f"{doomed.base}/langgraph/threads/{tid}/runs",
            json=_body("outlive the process"),
            headers={"x-api-key": cluster.keys["alice"]},
            timeout=30,
        )
        assert created.status_code == 200, created.text
        run_id = created.json()["run_id"]
        _wait_running(cluster, 0, tid, run_id)
        time.sleep(_REPLY_SECONDS / 2)  # mid-reply
        os.kill(doomed.proc.pid, signal.SIGKILL)
        doomed.proc.wait(15)
        joined = cluster.call(0, "GET", f"/threads/{tid}/runs/{run_id}/join")
        assert joined.status_code == 200, joined.text
        assert _status(cluster, 1, tid, run_id) == "success"
        conversation = _conversation(cluster, 0, tid)
        assert [kind for kind, _ in conversation] == ["human", "ai"]
        assert conversation[0][1] == "outlive the process"
        events = sse_events(cluster.call(1, "GET", f"/threads/{tid}/runs/{run_id}/stream").text)
        attempts = [data["attempt"] for name, data in events if name == "metadata"]
        assert attempts[-1] == 2
        assert events[-1][0] == "values"
    finally:
        doomed.stop()
