"""The session service's and the stores' Prometheus metrics (`memory_agent_*`).

Each is a `prometheus_client` object in the process's default registry; `server.metrics`
exposes them (and, across `--workers` processes, prometheus_client's multiprocess files,
chosen by the library when `PROMETHEUS_MULTIPROC_DIR` is set before it is imported).
Counting costs a lock and an addition, so the service counts whether or not anyone scrapes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage
from prometheus_client import Counter, Gauge

from agent.tools import MEMORY_TOOL_NAMES

SUMMARISATIONS = Counter(
    "memory_agent_summarisations",
    "Times a run folded the oldest messages of its window into the summary.",
)
MEMORY_WRITES = Counter(
    "memory_agent_memory_writes",
    "Memory writes: by the model's memory tools (source=tool) or the memory routes (api).",
    ["source", "op"],
)
MODEL_TOKENS = Counter(
    "memory_agent_model_tokens",
    "Tokens of the model's replies in runs, by kind (input, output), as the model reports them.",
    ["kind"],
)
RATE_LIMITED = Counter(
    "memory_agent_rate_limited", "Runs refused by the per-user rate limit (429)."
)
BREAKER_OPEN = Gauge(
    "memory_agent_breaker_open",
    "1 while the breaker of a database is open (calls fail at once), else 0.",
    ["database"],
    multiprocess_mode="livemax",
)

_TOOL_OPS = {"save_memory": "save", "delete_memory": "delete"}
assert set(_TOOL_OPS) == set(MEMORY_TOOL_NAMES)


class RunTally:
    """What one run did that the metrics count, read from the graph's `values` stream:
    each change of the summary is a summarisation, and the usage of the replies that
    were not in the run's first state are its tokens."""

    def __init__(self) -> None:
        self._first: set[Any] | None = None
        self._summary: Any = None
        self.summaries = 0

    def values(self, state: dict[str, Any]) -> None:
        """Read one `values` payload of the run."""
        summary = state.get("summary")
        if self._first is None:
            self._first = {m.id for m in state.get("messages") or ()}
        elif summary != self._summary:
            self.summaries += 1
        self._summary = summary

    def finish(self, state: dict[str, Any] | None, added: Sequence[dict[str, Any]]) -> None:
        """Count the run: its last `values` payload and the transcript records it added."""
        if self.summaries:
            SUMMARISATIONS.inc(self.summaries)
        if state is not None:
            count_tokens(m for m in state.get("messages") or () if m.id not in (self._first or ()))
        for record in added:
            op = _TOOL_OPS.get(record.get("name") or "")
            if record.get("role") == "tool" and op and record.get("status") != "error":
                MEMORY_WRITES.labels("tool", op).inc()


def count_tokens(messages: Iterable[BaseMessage]) -> None:
    """Add the reported usage of the model replies among `messages`."""
    for message in messages:
        usage = message.usage_metadata if isinstance(message, AIMessage) else None
        if usage:
            MODEL_TOKENS.labels("input").inc(usage.get("input_tokens", 0))
            MODEL_TOKENS.labels("output").inc(usage.get("output_tokens", 0))
