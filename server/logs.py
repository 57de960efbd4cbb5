"""Log lines: the ids of the request and run each comes from, and the JSON format.

A request's context (its id, the tenant and user of its key, its thread) is set by
`RequestIdMiddleware` and `identify`; a run's (its id, thread, tenant, user, and the id of
the request that started it) by the run core, in the run's own task. `JsonFormatter`
writes one JSON object per record with the fields known where it was logged.

Nothing here logs a request's body, headers or query string: the access log keeps the
path alone (`StripQuery`), so no message text and no API key reaches a log line.
"""

from __future__ import annotations

import copy
import json
import logging
import re
import uuid
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from agent.namespaces import Owner

#: The request id header, read from the request and sent on every response.
REQUEST_ID_HEADER = "X-Request-Id"
#: A client's request id is kept when it is this short and made of these characters.
_SAFE_ID = re.compile(r"[A-Za-z0-9._:@-]{1,128}")

#: The format of the app's own text lines (uvicorn's keep theirs).
TEXT_FORMAT = "%(levelname)s:     %(name)s: %(message)s"


@dataclass
class LogContext:
    """What a log line says of where it comes from; None: not known there."""

    request_id: str | None = None
    run_id: str | None = None
    thread_id: str | None = None
    tenant: str | None = None
    user: str | None = None
    #: The request's ASGI scope: the router adds the path parameters (the thread id) to it.
    scope: dict[str, Any] | None = None

    def fields(self) -> dict[str, str]:
        """The known ids, by field name."""
        thread_id = self.thread_id
        if thread_id is None and self.scope is not None:
            thread_id = (self.scope.get("path_params") or {}).get("thread_id")
        known = {
            "request_id": self.request_id,
            "run_id": self.run_id,
            "thread_id": thread_id,
            "tenant": self.tenant,
            "user": self.user,
        }
        return {name: value for name, value in known.items() if value is not None}


_context: ContextVar[LogContext | None] = ContextVar("memory_agent_log_context", default=None)


def current() -> LogContext | None:
    """The context of the code running now (None outside requests and runs)."""
    return _context.get()


def request_id(value: str | None) -> str:
    """The client's request id when it is safe to echo and log, else a new one."""
    if value is not None and _SAFE_ID.fullmatch(value):
        return value
    return uuid.uuid4().hex


def identify(owner: Owner) -> None:
    """Note the request's tenant and user (once its key is checked)."""
    context = _context.get()
    if context is not None:
        context.tenant, context.user = owner.tenant, owner.user


def bind_run(run_id: str, thread_id: str, tenant: str, user: str) -> None:
    """Give the running task the context of a run, keeping the id of the request that
    started it. Call it in the run's own task: the context stays in that task."""
    parent = _context.get()
    _context.set(
        LogContext(
            request_id=parent.request_id if parent is not None else None,
            run_id=run_id,
            thread_id=thread_id,
            tenant=tenant,
            user=user,
        )
    )


class RequestIdMiddleware:
    """Give each HTTP request an id (the client's `X-Request-Id` when safe, else a new
    one), send it back in the `X-Request-Id` header of the response, and keep it in the
    log context while the request is served."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Call the app within the request's log context."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = None
        for name, value in scope.get("headers") or ():
            if name == b"x-request-id":
                sent = value.decode("latin-1")
                break
        rid = request_id(sent)
        header = (b"x-request-id", rid.encode())

        async def with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        token = _context.set(LogContext(request_id=rid, scope=scope))
        try:
            await self.app(scope, receive, with_id)
        finally:
            _context.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: `time`, `level`, `logger`, `message`, the ids of its
    request or run when known, and `exception` with the traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = _context.get()
        if context is not None:
            line.update(context.fields())
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, ensure_ascii=False, default=str)


class StripQuery(logging.Filter):
    """uvicorn's access lines with the path alone: a query string can carry what a
    client searched for (`/memories?query=...`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Cut the query string off the request target of an access record."""
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            record.args = (args[0], args[1], args[2].split("?", 1)[0], args[3], args[4])
        return True


def logging_config(log_format: Literal["text", "json"]) -> dict[str, Any]:
    """The `logging.config.dictConfig` of `memory-agent serve`, given to uvicorn so each
    `--workers` process configures itself the same way: the app's loggers at INFO beside
    uvicorn's, as text lines or JSON lines, every access line without its query string."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"strip_query": {"()": f"{__name__}.StripQuery"}}
    config["handlers"]["access"]["filters"] = ["strip_query"]
    config["formatters"]["app"] = {"format": TEXT_FORMAT}
    config["handlers"]["app"] = {
        "formatter": "app",
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stderr",
    }
    if log_format == "json":
        for name in ("default", "access", "app"):
            config["formatters"][name] = {"()": f"{__name__}.JsonFormatter"}
    config["root"] = {"handlers": ["app"], "level": "INFO"}
    return config
