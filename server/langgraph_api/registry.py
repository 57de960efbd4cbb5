"""The LangGraph runs this process started: their status, events and results, by run id."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from memory.errors import MemoryAgentError
from memory.namespaces import Owner
from memory.sessions import SessionManager
from server.langgraph_api import views
from server.limits import BackgroundRuns

logger = logging.getLogger("memory_agent.server")

#: Finished runs remembered for `GET .../runs/{id}` and `join`; older ones are forgotten.
KEEP_FINISHED = 1000


def _now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class Run:
    """One run: who started it, where it stands, and what it streams and returns."""

    run_id: str
    owner: Owner
    thread_id: str
    metadata: dict[str, Any]
    modes: list[str]
    streaming: bool
    status: str = "pending"
    created_at: str = field(default_factory=_now)
    updated_at: str = field(default_factory=_now)
    result: dict[str, Any] | None = None
    error: dict[str, str] | None = None
    task: asyncio.Task[None] | None = None
    claimed: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    events: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)

    @property
    def location(self) -> str:
        """The run's URL, for `Content-Location`."""
        return f"{views.PREFIX}/threads/{self.thread_id}/runs/{self.run_id}"

    def out(self) -> dict[str, Any]:
        """The run as a LangGraph `Run`."""
        return {
            "run_id": self.run_id,
            "thread_id": self.thread_id,
            "assistant_id": views.ASSISTANT_ID,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "status": self.status,
            "metadata": self.metadata,
            "kwargs": {},
            "multitask_strategy": "reject",
        }

    def body(self) -> dict[str, Any]:
        """What `wait` and `join` answer: the final values, or `{"__error__": ...}`."""
        if self.error is not None:
            return {"__error__": self.error}
        return self.result or {}

    def _emit(self, event: str, data: Any) -> None:
        if self.streaming:
            self.events.put_nowait(views.sse(event, data))

    def _message_metadata(self, metadata: Any) -> dict[str, Any]:
        """A `messages` event's metadata: the node's, plus the run as langgraph-api adds it."""
        return {
            **views.clean_metadata(metadata, self.thread_id),
            "run_id": self.run_id,
            "run_attempt": 1,
            "assistant_id": views.ASSISTANT_ID,
            "graph_id": views.GRAPH_ID,
        }

    def _set(self, status: str) -> None:
        self.status, self.updated_at = status, _now()

    async def work(
        self,
        sessions: SessionManager,
        messages: Sequence[Any],
        context: dict[str, Any],
        recent: int,
    ) -> None:
        """Run on the session service, feeding `events` (when streaming) and the result."""
        graph_modes = ["messages" if m == "messages-tuple" else m for m in self.modes]
        try:
            async for kind, payload in sessions.astream_graph(
                self.owner,
                self.thread_id,
                messages,
                stream_mode=graph_modes,
                context=context,
                recent=recent,
            ):
                if kind == "thread":
                    self._set("running")
                    self._emit("metadata", {"run_id": self.run_id, "attempt": 1})
                    self.claimed.set_result(None)
                elif kind == "done":
                    self.result = payload[1]
                elif kind == "messages":
                    chunk, meta = payload
                    self._emit("messages", [chunk, self._message_metadata(meta)])
                else:
                    self._emit(kind, payload)
            self._set("success")
        except asyncio.CancelledError:
            self._set("interrupted")
            if not self.claimed.done():
                self.claimed.cancel()
            raise
        except Exception as exc:
            self._set("error")
            if not self.claimed.done():  # refused before it started: the route answers it
                self.claimed.set_exception(exc)
                return
            if isinstance(exc, MemoryAgentError):
                message = str(exc)
            else:
                logger.error(
                    "run %s on thread %s failed", self.run_id, self.thread_id, exc_info=exc
                )
                message = "the run failed; the server log has the details"
            self.error = {"error": type(exc).__name__, "message": message}
            self._emit("error", self.error)
        finally:
            self.events.put_nowait(None)


class RunRegistry:
    """The runs of this process, newest last; finished ones beyond `KEEP_FINISHED` go."""

    def __init__(self) -> None:
        self._runs: OrderedDict[str, Run] = OrderedDict()

    def start(
        self,
        background: BackgroundRuns,
        sessions: SessionManager,
        owner: Owner,
        thread_id: str,
        *,
        messages: Sequence[Any],
        modes: list[str],
        context: dict[str, Any],
        metadata: dict[str, Any],
        streaming: bool,
        recent: int,
    ) -> Run:
        """Start a run in its own task (it outlives a client that goes away)."""
        run = Run(
            run_id=str(uuid.uuid4()),
            owner=owner,
            thread_id=thread_id,
            metadata=metadata,
            modes=modes,
            streaming=streaming,
        )
        run.task = background.start(run.work(sessions, messages, context, recent))
        self._runs[run.run_id] = run
        self._forget_finished()
        return run

    def get(self, owner: Owner, thread_id: str, run_id: str) -> Run | None:
        """The owner's run on `thread_id`, or None."""
        run = self._runs.get(run_id)
        if run is None or run.owner != owner or run.thread_id != thread_id:
            return None
        return run

    def of_thread(self, owner: Owner, thread_id: str) -> list[Run]:
        """The owner's runs on `thread_id`, newest first."""
        return [
            r
            for r in reversed(self._runs.values())
            if r.owner == owner and r.thread_id == thread_id
        ]

    def _forget_finished(self) -> None:
        finished = [k for k, r in self._runs.items() if r.task is not None and r.task.done()]
        for key in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del self._runs[key]
