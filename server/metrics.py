"""Prometheus metrics of the HTTP edge and the run core, and their exposition at `/metrics`.

Requests are counted by the matched route's path template (`/threads/{thread_id}/runs`),
never by the raw path, so thread ids do not become label values. With `--workers N` the
server gives every process one `PROMETHEUS_MULTIPROC_DIR` (a directory made for that
start) before they import prometheus_client, and a scrape of any process reads the
files of all of them: the counters are the deployment's, whichever process answers.
"""

from __future__ import annotations

import os
import time
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from memory.stores.outages import as_unavailable

#: prometheus_client's own variable: set, every process writes its values to files there.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

#: Methods counted by name; any other is counted as `other`.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: The route label of a request no route matched (an unknown path, a body too large).
UNMATCHED = "unmatched"

HTTP_REQUESTS = Counter(
    "memory_agent_http_requests",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "memory_agent_http_request_duration_seconds",
    "Seconds from a request's arrival to the end of its response (a stream: its end).",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
RUNS = Counter(
    "memory_agent_runs",
    "Runs this deployment executed, by API (native, langgraph) and final status "
    "(success, error, interrupted).",
    ["api", "status"],
)
RUN_DURATION = Histogram(
    "memory_agent_run_duration_seconds",
    "Seconds a run (one turn) took to execute, from its claim to its end.",
    ["api"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
RUNS_ACTIVE = Gauge(
    "memory_agent_runs_active",
    "Runs executing now (summed over the server's processes).",
    multiprocess_mode="livesum",
)


def multiprocess_dir() -> str | None:
    """The directory of the processes' metric files, or None in a single process."""
    return os.environ.get(MULTIPROC_ENV) or None


def exposition() -> tuple[bytes, str]:
    """The metrics in Prometheus text format, and their content type."""
    if multiprocess_dir() is None:
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry), CONTENT_TYPE_LATEST


def process_ended() -> None:
    """Drop this process's live gauges from the multiprocess files (at its shutdown)."""
    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(os.getpid())


def route_of(scope: dict[str, Any]) -> str:
    """The path template of the route that answered, or `UNMATCHED`."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


class MetricsMiddleware:
    """Count each HTTP request by route template and status, and time it."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Call the app, noting the status it answers."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: int | None = None

        async def noting(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noting)
        except Exception as exc:
            if status is None:
                # Answered outside this middleware, as `server.app._internal` does: an
                # outage is a 503, anything else a 500.
                status = 503 if as_unavailable(exc) is not None else 500
            raise
        finally:
            method = scope["method"] if scope["method"] in METHODS else "other"
            route = route_of(scope)
            # No answer at all: the client went away first (nginx's 499).
            HTTP_REQUESTS.labels(method, route, str(status or 499)).inc()
            HTTP_DURATION.labels(method, route).observe(time.perf_counter() - started)
