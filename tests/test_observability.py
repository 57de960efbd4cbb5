"""What an operator reads: `/metrics` (Prometheus text), request ids and JSON log lines.

The in-process tests count against the process's own registry, so they compare a scrape
before with one after; the two-worker test runs `memory-agent serve --workers 2` and
checks that whichever process answers a scrape, the counters add up to what the client
sent to both.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_core.messages import AIMessage, AIMessageChunk
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.parser import text_string_to_metric_families

from agent import OfflineChatModel
from memory.settings import Settings
from memory.stores.outages import PROBE_INTERVAL_SECONDS, Breaker
from server import logs
from server.app import create_app
from tests.plugins.server import fresh_id, running, sse_events
from tests.test_cli import command
from tests.test_server_restart import free_port

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

RUNS_ROUTE = "/threads/{thread_id}/runs"
INPUT_TOKENS, OUTPUT_TOKENS = 7, 3


def parse(text: str) -> Samples:
    """Every sample of an exposition, by name and labels (the parser rejects bad text)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value (0 when absent: a labelled series appears with its first count)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    """How much a sample grew between two scrapes."""
    return value(after, name, **labels) - value(before, name, **labels)


class UsageModel(OfflineChatModel):
    """The offline model, reporting the token usage a provider would."""

    async def _agenerate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kw: Any):
        result = await super()._agenerate(messages, stop, run_manager, **kw)
        message = result.generations[0].message
        assert isinstance(message, AIMessage)
        message.usage_metadata = _usage()
        return result

    async def _astream(self, messages: Any, stop: Any = None, run_manager: Any = None, **kw: Any):
        async for generation in super()._astream(messages, stop, run_manager, **kw):
            yield generation
        last = AIMessageChunk(content="", usage_metadata=_usage())
        yield type(generation)(message=last)


def _usage() -> Any:
    return {
        "input_tokens": INPUT_TOKENS,
        "output_tokens": OUTPUT_TOKENS,
        "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS,
    }


@asynccontextmanager
async def serving(key: str, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An app on `memory://` with one API key (user `acme/<fresh>`) and a client on it."""
    user = fresh_id("u")
    settings = Settings(
        database_url="memory://",
        embeddings="none",
        api_keys=f"{key}=acme/{user}",
        sweep_interval_seconds=3600,
        **overrides,
    )
    app = create_app(settings, chat_model=UsageModel())
    async with running(app) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        yield client


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return parse(response.text)


async def test_metrics_count_each_request_by_route_template_and_status() -> None:
    key = fresh_id("key")
    async with serving(key) as client:
        before = await scrape(client)
        first, second = fresh_id("t"), fresh_id("t")
        replies = []
        for thread, text in (
            (first, "my name is Sam"),
            (second, "hello"),
            (first, "what is my name?"),
        ):
            response = await client.post(f"/threads/{thread}/runs", json={"message": text})
            assert response.status_code == 200, response.text
            replies.append(response.json())
        assert (await client.get(f"/threads/{fresh_id('missing')}")).status_code == 404
        assert (await client.get("/no/such/route")).status_code == 404
        assert (await client.get("/metrics", headers={"Authorization": ""})).status_code == 401
        assert (await client.put("/memories/colour", json={"value": "green"})).status_code == 200
        assert (await client.delete("/memories/colour")).status_code == 204
        after = await scrape(client)

    requests = "memory_agent_http_requests_total"
    assert delta(before, after, requests, method="POST", route=RUNS_ROUTE, status="200") == 3
    assert (
        delta(before, after, requests, method="GET", route="/threads/{thread_id}", status="404")
        == 1
    )
    assert delta(before, after, requests, method="GET", route="unmatched", status="404") == 1
    assert delta(before, after, requests, method="GET", route="/metrics", status="401") == 1
    assert delta(before, after, requests, method="GET", route="/metrics", status="200") == 1
    timed = "memory_agent_http_request_duration_seconds_count"
    assert delta(before, after, timed, method="POST", route=RUNS_ROUTE) == 3
    # No label carries a thread id: routes are templates.
    routes = {dict(labels).get("route", "") for _, labels in after}
    assert not any(first in r or second in r for r in routes), routes

    assert delta(before, after, "memory_agent_runs_total", api="native", status="success") == 3
    assert delta(before, after, "memory_agent_run_duration_seconds_count", api="native") == 3
    assert value(after, "memory_agent_runs_active") == 0

    messages = [m for reply in replies for m in reply["messages"]]
    saved = sum(m["role"] == "tool" and m.get("name") == "save_memory" for m in messages)
    assert saved >= 1
    writes = "memory_agent_memory_writes_total"
    assert delta(before, after, writes, source="tool", op="save") == saved
    assert delta(before, after, writes, source="api", op="save") == 1
    assert delta(before, after, writes, source="api", op="delete") == 1
    replies_made = sum(m["role"] == "assistant" for m in messages)
    tokens = "memory_agent_model_tokens_total"
    assert delta(before, after, tokens, kind="input") == INPUT_TOKENS * replies_made
    assert delta(before, after, tokens, kind="output") == OUTPUT_TOKENS * replies_made


async def test_summarisations_and_rate_limit_refusals_are_counted() -> None:
    key = fresh_id("key")
    async with serving(key, token_budget=200, runs_per_minute=8) as client:
        before = await scrape(client)
        thread, changed, summary = fresh_id("t"), 0, ""
        for i in range(8):
            text = f"message number {i} " + "with some padding words " * 6
            assert (await client.post(f"/threads/{thread}/runs", json={"message": text})).is_success
            now = (await client.get(f"/threads/{thread}/summary")).json()["summary"]
            changed += now != summary
            summary = now
        refused = await client.post(f"/threads/{thread}/runs", json={"message": "one more"})
        assert refused.status_code == 429
        after = await scrape(client)
    assert changed >= 1
    assert delta(before, after, "memory_agent_summarisations_total") == changed
    assert delta(before, after, "memory_agent_rate_limited_total") == 1
    requests = "memory_agent_http_requests_total"
    assert delta(before, after, requests, method="POST", route=RUNS_ROUTE, status="429") == 1


async def test_the_breaker_gauge_follows_the_breaker() -> None:
    database = fresh_id("probe")
    breaker = Breaker(1.0, database=database)

    def gauge() -> float:
        return value(
            parse(generate_latest().decode()), "memory_agent_breaker_open", database=database
        )

    async def refused() -> None:
        raise ConnectionError("refused")

    async def answered() -> int:
        return 1

    assert gauge() == 0
    with pytest.raises(ConnectionError):
        await breaker.call(refused())
    assert gauge() == 1
    await asyncio.sleep(PROBE_INTERVAL_SECONDS * 1.5)
    assert await breaker.call(answered()) == 1
    assert gauge() == 0


async def test_metrics_off_is_a_404_and_keys_guard_it() -> None:
    key = fresh_id("key")
    async with serving(key, metrics=False) as client:
        off = await client.get("/metrics")
        assert off.status_code == 404
        assert off.json()["detail"]
    async with serving(key) as client:
        assert (await client.get("/metrics", headers={"Authorization": ""})).status_code == 401
        bad = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401
        by_header = await client.get("/metrics", headers={"Authorization": "", "x-api-key": key})
        assert by_header.status_code == 200
    app = create_app(Settings(database_url="memory://", embeddings="none", api_keys=""))
    async with running(app) as client:
        assert (await client.get("/metrics")).status_code == 200  # development mode: no keys


async def test_every_response_carries_a_request_id() -> None:
    key = fresh_id("key")
    async with serving(key, max_body_bytes=2048) as client:
        kept = await client.get("/healthz", headers={"X-Request-Id": "deploy-42.a:b@c_d"})
        assert kept.headers["x-request-id"] == "deploy-42.a:b@c_d"
        for unsafe in ("x" * 129, "a b", "<script>", "na\xefve".encode("latin-1"), ""):
            made = await client.get("/healthz", headers={"X-Request-Id": unsafe})
            assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"]), unsafe
        answers = [
            await client.get("/healthz"),
            await client.get("/threads", headers={"Authorization": ""}),  # 401
            await client.get("/no/such/route"),  # 404
            await client.post("/threads", content=b"x" * 4096),  # 413
            await client.post("/threads", json={"thread_id": "bad id"}),  # 422
        ]
    assert [a.status_code for a in answers] == [200, 401, 404, 413, 422]
    ids = [a.headers["x-request-id"] for a in answers]
    assert len(set(ids)) == len(ids)


@contextmanager
def json_lines() -> Iterator[io.StringIO]:
    """The app's log records at INFO as `JsonFormatter` writes them."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.JsonFormatter())
    # The test's own client logs each request it sends, query string and all.
    handler.addFilter(lambda record: not record.name.startswith(("httpx", "httpcore")))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _check_lines(text: str, secrets: tuple[str, ...]) -> list[dict[str, Any]]:
    """Every line parsed; none carries a secret."""
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    for line in lines:
        assert {"time", "level", "logger", "message"} <= set(line), line
    for secret in secrets:
        assert secret not in text
    return lines


async def test_json_log_lines_carry_the_run_ids_and_no_content_or_key() -> None:
    key, planted = fresh_id("sk-planted"), fresh_id("planted-text")
    with json_lines() as out:
        async with serving(key) as client:
            thread = fresh_id("t")
            response = await client.post(
                f"/threads/{thread}/runs/stream",
                json={"message": f"my name is {planted}"},
                headers={"X-Request-Id": "req-json-1"},
            )
            assert response.status_code == 200
            metadata = dict(sse_events(response.text))["metadata"]
            assert (await client.get(f"/memories?query={planted}")).status_code == 200
    lines = _check_lines(out.getvalue(), (key, planted))
    ended = [line for line in lines if line.get("run_id") == metadata["run_id"]]
    assert ended, lines
    assert ended[0]["thread_id"] == thread
    assert ended[0]["request_id"] == "req-json-1"
    assert ended[0]["tenant"] == "acme" and ended[0]["user"].startswith("u-")


# -- several processes ------------------------------------------------------------------


def _per_process(directory: Path) -> dict[str, float]:
    """The HTTP requests each worker counted (other than scrapes and readiness polls), by
    process id."""
    counts: dict[str, float] = {}
    for path in directory.glob("counter_*.db"):
        pid = path.stem.removeprefix("counter_")
        alone = directory.parent / f"{directory.name}-{pid}"
        alone.mkdir()
        try:
            shutil.copy(path, alone / path.name)
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=str(alone))
            samples = parse(generate_latest(registry).decode())
        finally:
            shutil.rmtree(alone)
        counts[pid] = sum(
            v
            for (name, labels), v in samples.items()
            if name == "memory_agent_http_requests_total"
            and dict(labels)["route"] not in ("/metrics", "/readyz")
        )
    return counts


@pytest.mark.slow
def test_two_workers_count_together_and_log_json_lines(tmp_path: Path) -> None:
    key, planted = fresh_id("sk-planted"), fresh_id("planted-text")
    env = {
        **os.environ,
        "MEMORY_AGENT_DATABASE_URL": f"sqlite:///{tmp_path / 'agent.sqlite'}",
        "MEMORY_AGENT_EMBEDDINGS": "none",
        "MEMORY_AGENT_MODEL": "offline",
        "MEMORY_AGENT_API_KEYS": f"{key}=acme/sam",
        "MEMORY_AGENT_RUNS_PER_MINUTE": "1000",
        "MEMORY_AGENT_LOG_FORMAT": "json",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as output:
        proc = subprocess.Popen(
            [*command(), "serve", "--workers", "2", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    made: Counter[tuple[str, str, str]] = Counter()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                status = httpx.get(f"{base}/readyz", timeout=2).status_code
                made["GET", "/readyz", str(status)] += 1
                if status == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.2)
        started = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        where = next(line["message"] for line in started if "metrics of the 2" in line["message"])
        directory = Path(where.rsplit(" in ", 1)[1])
        run_id = asyncio.run(_traffic(base, key, planted, made, directory))
        for _ in range(4):  # any process may answer a scrape: each sees every process's counts
            scraped = httpx.get(f"{base}/metrics", headers={"x-api-key": key}, timeout=10)
            assert scraped.status_code == 200
            samples = parse(scraped.text)
            counted = {
                (labels["method"], labels["route"], labels["status"]): v
                for (name, frozen), v in samples.items()
                if name == "memory_agent_http_requests_total"
                and (labels := dict(frozen))["route"] != "/metrics"
            }
            assert counted == dict(made)
            runs = made["POST", RUNS_ROUTE, "200"] + made["POST", RUNS_ROUTE + "/stream", "200"]
            assert value(samples, "memory_agent_runs_total", api="native", status="success") == runs
        per_process = _per_process(directory)
        # Both workers served (a process that served nothing, such as a worker the server
        # replaced while it started, may have left an empty file).
        assert len([n for n in per_process.values() if n]) >= 2, per_process
        assert sum(per_process.values()) == sum(
            n for (_, route, _), n in made.items() if route != "/readyz"
        )
    finally:
        proc.terminate()
        proc.wait(30)
    assert not directory.exists()  # made for this start, removed at its end

    lines = _check_lines(log.read_text(), (key, planted))
    streamed = [line for line in lines if line.get("request_id") == "req-workers-1"]
    assert {line["logger"] for line in streamed} == {"memory_agent.runs", "uvicorn.access"}
    for line in streamed:
        assert line["tenant"] == "acme" and line["user"] == "sam"
        assert line["thread_id"] == "streamed"
    assert [line["run_id"] for line in streamed if line["logger"] == "memory_agent.runs"] == [
        run_id
    ]


async def _traffic(
    base: str, key: str, planted: str, made: Counter[tuple[str, str, str]], directory: Path
) -> str:
    """Send runs, reads and misses on fresh connections (the kernel spreads them over the
    workers) until both workers have answered some; answer the streamed run's id."""
    headers = {"Authorization": f"Bearer {key}"}

    async def send(method: str, route: str, path: str, **kwargs: Any) -> httpx.Response:
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
            response = await client.request(method, path, **kwargs)
        made[method, route, str(response.status_code)] += 1
        return response

    streamed = await send(
        "POST",
        RUNS_ROUTE + "/stream",
        "/threads/streamed/runs/stream",
        json={"message": f"my name is {planted}"},
        headers={"X-Request-Id": "req-workers-1"},
    )
    run_id = str(dict(sse_events(streamed.text))["metadata"]["run_id"])
    for round_ in range(10):
        answers = await asyncio.gather(
            *(
                send("POST", RUNS_ROUTE, f"/threads/w{round_}-{i}/runs", json={"message": planted})
                for i in range(4)
            ),
            *(
                send("GET", "/threads/{thread_id}/messages", f"/threads/w{round_}-{i}/messages")
                for i in range(2)
            ),
            send("GET", "/threads/{thread_id}", "/threads/never-made"),
            send("GET", "/memories", "/memories", params={"query": planted}),
        )
        assert all(a.status_code in (200, 404) for a in answers)
        counts = _per_process(directory)
        if len(counts) == 2 and all(counts.values()):
            break
    return run_id
