"""Runs across server processes on one database (three on Postgres, three on Redis, two on
one SQLite file): a run started on one process is read, joined, streamed, rejoined and
cancelled from the others; runs queued through every process run one at a time in order;
a background run whose process is killed is finished by another."""

from __future__ import annotations

import os
import re
import signal
import threading
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


def _stream_in_background(
    method: str, url: str, key: str, body: dict[str, Any]
) -> tuple[threading.Thread, dict[str, Any]]:
    """Read a stream to its end in a thread: its text and headers land in the dict."""
    got: dict[str, Any] = {}

    def read() -> None:
        with httpx.stream(
            method, url, json=body, headers={"x-api-key": key}, timeout=60
        ) as response:
            got["status"] = response.status_code
            got["headers"] = response.headers
            got["text"] = "".join(response.iter_text())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return reader, got


def _run_of(got: dict[str, Any]) -> str:
    """The run a stream read by `_stream_in_background` follows, once it answered."""
    deadline = time.monotonic() + 30
    while "headers" not in got:
        assert time.monotonic() < deadline, "the stream never started"
        time.sleep(0.05)
    assert got["status"] == 200
    # `/threads/{t}/runs/{r}` (LangGraph) or `/threads/{t}/runs/{r}/stream` (native).
    return str(got["headers"]["content-location"].split("/runs/")[1].split("/")[0])


def _exited_cleanly(server: ServerProcess) -> None:
    # uvicorn raises the signal again once it has shut down: the status is the signal's.
    assert server.proc.wait(30) in (0, -signal.SIGTERM), server.output()
    assert "Application shutdown complete" in server.output()


def _sigterm(cluster: Cluster, grace: float, delay: float = 0) -> ServerProcess:
    env = {
        **cluster.env,
        "MEMORY_AGENT_SHUTDOWN_GRACE_SECONDS": str(grace),
        "MEMORY_AGENT_SHUTDOWN_DELAY_SECONDS": str(delay),
    }
    stopping = launch(env, cluster.log_dir)
    wait_ready([stopping])
    return stopping


def test_sigterm_lets_runs_within_the_grace_finish(cluster: Cluster) -> None:
    stopping = _sigterm(cluster, grace=_REPLY_SECONDS * 5, delay=1.0)
    try:
        tid = str(uuid.uuid4())
        reader, got = _stream_in_background(
            "POST",
            f"{stopping.base}/langgraph/threads/{tid}/runs/stream",
            cluster.keys["alice"],
            _body("finish before you go"),
        )
        run_id = _run_of(got)
        _wait_running(cluster, 0, tid, run_id)
        stopping.proc.send_signal(signal.SIGTERM)
        # Red first: still answering, but not ready, for the delay.
        ready = httpx.get(f"{stopping.base}/readyz", timeout=5)
        assert ready.status_code == 503, ready.text
        assert ready.json()["status"] == "stopping"
        reader.join(30)
        assert not reader.is_alive()
        _exited_cleanly(stopping)
        events = sse_events(got["text"])
        assert [name for name, _ in events if name == "error"] == []
        assert events[-1][0] == "values"
        assert _status(cluster, 0, tid, run_id) == "success"
        attempts = [data["attempt"] for name, data in events if name == "metadata"]
        assert attempts == [1]  # finished where it began
        conversation = _conversation(cluster, 0, tid)
        assert [kind for kind, _ in conversation] == ["human", "ai"]
    finally:
        stopping.stop()


def _check_handed_back_langgraph(
    cluster: Cluster, tid: str, run_id: str, got: dict[str, Any], attempts: list[int]
) -> None:
    # The stream ends without an end or error: the SDKs rejoin the run, which another
    # process continues from its last checkpoint.
    seen = sse_events(got["text"])
    assert seen and all(name not in ("error", "end") for name, _ in seen), seen
    joined = cluster.call(0, "GET", f"/threads/{tid}/runs/{run_id}/join")
    assert joined.status_code == 200, joined.text
    assert _status(cluster, 1, tid, run_id) == "success"
    conversation = _conversation(cluster, 0, tid)
    assert conversation[0] == ("human", f"carry on elsewhere {tid}")
    assert [kind for kind, _ in conversation] == ["human", "ai"]
    everything = sse_events(cluster.call(1, "GET", f"/threads/{tid}/runs/{run_id}/stream").text)
    assert [data["attempt"] for name, data in everything if name == "metadata"] == attempts
    assert everything[-1][0] == "values"


def _check_handed_back_native(cluster: Cluster, tid: str, run_id: str, got: dict[str, Any]) -> None:
    # The stream's last event says where to rejoin.
    native = sse_events(got["text"])
    assert native[-1][0] in ("reconnect", "done"), native  # done: it finished in the grace
    headers = {"x-api-key": cluster.keys["alice"]}
    base = cluster.servers[1].base
    stream = f"/threads/{tid}/runs/{run_id}/stream"
    if native[-1][0] == "reconnect":
        assert native[-1][1]["stream"] == stream
    rest = httpx.get(f"{base}{stream}", headers=headers, timeout=60)
    assert rest.status_code == 200, rest.text
    rejoined = sse_events(rest.text)
    assert rejoined[-1][0] == "done", rejoined
    history = httpx.get(f"{base}/threads/{tid}/messages", headers=headers, timeout=30)
    assert history.status_code == 200, history.text
    items = history.json()["items"]
    assert [m["role"] for m in items] == ["user", "assistant"], items
    assert items[0]["content"] == f"native, carry on {tid}"
    assert items[1]["content"] == rejoined[-1][1]["reply"]


def test_sigterm_hands_runs_past_the_grace_to_another_process(cluster: Cluster) -> None:
    """Eight clients stream from a process that gets SIGTERM: four LangGraph streams and
    four native ones, each run cut past the grace and continued by another process."""
    stopping = _sigterm(cluster, grace=_REPLY_SECONDS / 4)
    key = cluster.keys["alice"]
    try:
        streams: list[tuple[str, str, threading.Thread, dict[str, Any]]] = []
        for number in range(8):
            tid = str(uuid.uuid4())
            if number % 2:
                url = f"{stopping.base}/threads/{tid}/runs/stream"
                body: dict[str, Any] = {
                    "messages": [{"role": "user", "content": f"native, carry on {tid}"}]
                }
                streams.append(("native", tid, *_stream_in_background("POST", url, key, body)))
            else:
                url = f"{stopping.base}/langgraph/threads/{tid}/runs/stream"
                body = _body(f"carry on elsewhere {tid}", stream_resumable=True)
                streams.append(("langgraph", tid, *_stream_in_background("POST", url, key, body)))
        runs = [_run_of(got) for *_, got in streams]
        for (_, tid, _, _), run_id in zip(streams, runs, strict=True):
            _wait_running(cluster, 0, tid, run_id)
        stopping.proc.send_signal(signal.SIGTERM)
        for _, _, reader, _ in streams:
            reader.join(30)
            assert not reader.is_alive()
        _exited_cleanly(stopping)
        # On Redis another process's queue poll may claim a run between its creation and
        # the claim of the process it was sent to: that one runs elsewhere from the start.
        log = stopping.log.read_text()
        here = re.search(r"stopping: (\d+) runs here", log)
        handed = set(re.findall(r"run (\S+) handed back for another process", log))
        # On a loaded machine a run may also finish here within the grace.
        assert here is not None and int(here.group(1)) >= len(handed) >= 1, log
        assert handed <= set(runs)
        for (api, tid, _, got), run_id in zip(streams, runs, strict=True):
            attempts = [1, 2] if run_id in handed else [1]
            if api == "native":
                _check_handed_back_native(cluster, tid, run_id, got)
            else:
                _check_handed_back_langgraph(cluster, tid, run_id, got, attempts)
    finally:
        stopping.stop()
