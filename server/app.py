"""The FastAPI application: lifespan, error translation and the routes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from langchain_core.language_models import BaseChatModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from agent import OFFLINE_NOTICE
from agent.loading import graph_factory
from agent.model import is_offline
from agent.namespaces import InvalidIdError
from memory.errors import MemoryAgentError, PatchError, RateLimitedError, UnavailableError
from memory.sessions import SessionManager
from memory.settings import Settings
from memory.stores.factory import Backends, aopen_backends
from memory.stores.outages import as_unavailable
from server import logs, metrics, openapi, shutdown
from server.auth import UnauthorizedError, build_authenticator
from server.langgraph_api import router as langgraph_router
from server.limits import BodyLimitMiddleware
from server.methods import ExactPathMiddleware, MethodTable
from server.routes import ROUTERS
from server.routes import metrics as metrics_route
from server.runner import Runner
from server.schemas import json_path

logger = logging.getLogger("memory_agent.server")

DEV_MODE_WARNING = (
    "NO API KEYS CONFIGURED: single-user development mode, every request acts as user "
    "'local' without authentication. Set MEMORY_AGENT_API_KEYS=key=tenant/user,... "
    "before exposing this server."
)


async def _sweep_forever(app: FastAPI, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        sessions: SessionManager | None = getattr(app.state, "sessions", None)
        if sessions is None:
            continue  # the database has not been reached yet
        try:
            # One process sweeps per interval: the winner keeps the sweep lease that long.
            expired = await sessions.asweep(hold=interval * 0.9)
        except Exception:  # a failed sweep must not stop later ones; it is logged in full
            logger.exception("session sweep failed")
            continue
        if expired:
            logger.info("expired %d idle sessions", expired)


#: Longest wait between two attempts to reach a database that was down at start.
RECONNECT_MAX_SECONDS = 1.0


class Connector:
    """Opens the backends, at start or, if the database is down then, as soon as it returns.

    The backends are opened and closed in one task of their own, which holds them until
    shutdown. An outage at start (refused, timed out, hung) does not stop the server: it
    serves 503 with `Retry-After` and `/readyz` names the reason until an attempt succeeds.
    Any other failure (a bad path, a malformed URL) stops the start as before.
    """

    def __init__(self, app: FastAPI, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.reason = "the database has not been reached yet; retry shortly"
        self._attempted = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Make the first attempt; raise what is not an outage, return either way otherwise."""
        self._task = asyncio.create_task(self._hold(), name="backends")
        await self._attempted.wait()
        if self._task.done() and not self._task.cancelled() and self._task.exception():
            raise self._task.exception()  # type: ignore[misc]

    async def close(self) -> None:
        """Close the backends (or stop trying to open them)."""
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _hold(self) -> None:
        delay = 0.1
        # Generous: setup runs a few statements and may wait for another process's migration.
        attempt_limit = max(10.0, 3 * self.settings.backend_timeout_seconds)
        while not self._stop.is_set():
            async with contextlib.AsyncExitStack() as stack:
                try:
                    backends = await asyncio.wait_for(
                        stack.enter_async_context(aopen_backends(settings=self.settings)),
                        attempt_limit,
                    )
                except Exception as exc:
                    unavailable = as_unavailable(exc)
                    if unavailable is None and not self._attempted.is_set():
                        self._attempted.set()
                        raise  # at start: a failure no waiting fixes stops the start
                    if unavailable is None:  # later (a half-restored database): keep trying
                        logger.exception("opening the backends failed; retrying")
                        unavailable = UnavailableError(
                            f"the database could not be opened ({type(exc).__name__}); "
                            "retry shortly"
                        )
                    elif not self._attempted.is_set():
                        logger.warning("%s; serving 503 until it is reachable", unavailable)
                    self.reason = str(unavailable)
                    self._attempted.set()
                else:
                    self._publish(backends)
                    self._attempted.set()
                    await self._stop.wait()
                    return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            delay = min(delay * 2, RECONNECT_MAX_SECONDS)

    def _publish(self, backends: Backends) -> None:
        app, settings = self.app, self.settings
        graph = app.state.make_graph(backends.checkpointer, backends.store)
        app.state.sessions = SessionManager.from_settings(graph, settings)
        app.state.backends = backends
        logger.info(
            "backends: checkpointer %s, store %s; model: %s",
            backends.name,
            backends.store_name,
            settings.model if app.state.chat_model is None else type(app.state.chat_model).__name__,
        )


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the backends (now, or when the database returns), sweep idle sessions."""
    settings: Settings = app.state.settings
    app.state.runner = runner = Runner(lambda: getattr(app.state, "sessions", None), settings)
    app.state.connector = connector = Connector(app, settings)
    await connector.start()
    runner.start()
    if app.state.chat_model is None and is_offline(settings.model):
        logger.warning(OFFLINE_NOTICE)
    if app.state.auth.dev_mode:
        logger.warning(DEV_MODE_WARNING)
    sweeper = asyncio.create_task(
        _sweep_forever(app, settings.sweep_interval_seconds), name="session-sweeper"
    )
    app.state.stopping = False

    def begin_stop() -> None:
        app.state.stopping = True  # `/readyz` answers 503 from now on
        runner.begin_stop(settings.shutdown_grace_seconds)

    try:
        with shutdown.stopping_on_signals(begin_stop, settings.shutdown_delay_seconds):
            yield
    finally:
        sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeper
        await runner.close()  # waits for the runs this process executes
        await connector.close()
        metrics.process_ended()


class ErrorResponse(JSONResponse):
    """A JSON error body that renders whatever text a client put into it.

    Errors may quote client input; ASCII escapes keep unpaired surrogates renderable and
    non-finite numbers are written as strings, so rendering an error never fails.
    """

    def render(self, content: Any) -> bytes:
        """Serialise `content` as ASCII JSON."""
        return json.dumps(content, ensure_ascii=True, default=str, separators=(",", ":")).encode()


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _loc(error: Any) -> list[Any]:
    """Where the error is: the field, then the path inside its value of a value no backend
    can store or a filter part no store answers (`JsonValueError.path`, `StoreValueError`)."""
    cause = (error.get("ctx") or {}).get("error")
    return [*error.get("loc", ()), *getattr(cause, "path", ())]


def _msg(error: Any) -> str:
    """The message, naming the value's path in the body when the error has one."""
    cause = (error.get("ctx") or {}).get("error")
    if not getattr(cause, "path", None):
        return str(error.get("msg", ""))
    loc = _loc(error)
    return f"{json_path(tuple(loc[1:] if loc[:1] == ['body'] else loc))}: {cause}"


async def _validation_error(request: Request, exc: Exception) -> ErrorResponse:
    assert isinstance(exc, RequestValidationError)
    # The field path and message only: echoing the rejected input back could be large,
    # and may be exactly what cannot be rendered (NaN, unpaired surrogates).
    detail = [
        {"loc": _finite(_loc(e)), "msg": _msg(e), "type": e.get("type")} for e in exc.errors()
    ]
    return ErrorResponse({"detail": detail}, status_code=422)


async def _agent_error(request: Request, exc: Exception) -> ErrorResponse:
    assert isinstance(exc, MemoryAgentError)
    headers = None
    if isinstance(exc, RateLimitedError):
        headers = {"Retry-After": str(int(exc.retry_after))}
    elif isinstance(exc, UnavailableError):
        headers = {"Retry-After": "1"}
    body: dict[str, Any] = {"detail": str(exc)}
    if isinstance(exc, PatchError):
        body["operation"] = exc.operation
    return ErrorResponse(body, status_code=exc.status_code, headers=headers)


async def _invalid_id(request: Request, exc: Exception) -> ErrorResponse:
    return ErrorResponse({"detail": str(exc)}, status_code=422)


async def _unauthorized(request: Request, exc: Exception) -> ErrorResponse:
    return ErrorResponse(
        {"detail": str(exc)}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's errors (404, 405) as JSON; a 405's `Allow` names the methods of the exact
    path (`server.methods`), not those of the first route that matched it."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code != 405:
        return await http_exception_handler(request, exc)
    allowed = request.app.state.methods.allowed(request.scope["path"])
    return ErrorResponse(
        {"detail": exc.detail}, status_code=405, headers={"Allow": ", ".join(sorted(allowed))}
    )


async def _internal(request: Request, exc: Exception) -> ErrorResponse:
    # Answered outside the middleware that adds the request id to every other response.
    context = logs.current()
    headers = {logs.REQUEST_ID_HEADER: context.request_id} if context and context.request_id else {}
    unavailable = as_unavailable(exc)
    if unavailable is not None:  # an outage met outside the session service: still a 503
        logger.warning("database unreachable on %s %s: %s", request.method, request.url.path, exc)
        return ErrorResponse(
            {"detail": str(unavailable)}, status_code=503, headers={**headers, "Retry-After": "1"}
        )
    logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return ErrorResponse({"detail": "internal server error"}, status_code=500, headers=headers)


def create_app(
    settings: Settings | None = None, *, chat_model: BaseChatModel | None = None
) -> FastAPI:
    """Build the app; the lifespan opens the backends the settings name.

    Args:
        settings: Explicit settings (a `Settings`, or storage `Settings` to which the
            server's defaults and environment are added); None reads the environment.
        chat_model: A model instance to use instead of the one `settings.model` names
            (tests pass a scripted model).

    Raises:
        AuthConfigError: `api_keys` is malformed.
        AppConfigError: `tools` or `graph` names something that cannot be served.
    """
    server_settings = settings or Settings()
    app = FastAPI(
        title="memory-agent",
        summary="A LangGraph agent with checkpointed conversation memory, served by session id.",
        version="0.1.0",
        lifespan=lifespan,
        # /docs is served by server.routes.ui with local assets; ReDoc would need a CDN.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = server_settings
    app.state.auth = build_authenticator(server_settings)
    app.state.chat_model = chat_model
    app.state.make_graph = graph_factory(
        tools=server_settings.tools, graph=server_settings.graph, chat_model=chat_model
    )
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(MemoryAgentError, _agent_error)
    app.add_exception_handler(InvalidIdError, _invalid_id)
    app.add_exception_handler(UnauthorizedError, _unauthorized)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _internal)
    for router in ROUTERS:
        app.include_router(router)
    app.include_router(langgraph_router)
    if server_settings.metrics:
        app.include_router(metrics_route.router)
    openapi.install(app)
    app.state.methods = MethodTable(
        (route.path_format, route.methods or ()) for route in openapi.routes(app)
    )
    app.add_middleware(ExactPathMiddleware, table=app.state.methods)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=server_settings.max_body_bytes,
        run_bytes=server_settings.body_limit,
    )
    if server_settings.metrics:
        app.add_middleware(metrics.MetricsMiddleware)
    if origins := server_settings.cors_origin_list:
        # Outermost, so preflights are answered before any other layer sees them.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=[
                "Authorization",
                "X-Api-Key",
                "Content-Type",
                "Last-Event-ID",
                "X-Request-Id",
            ],
            expose_headers=["Content-Location", "Location", "Retry-After", "X-Request-Id"],
            # A page on a public origin may call a server on this machine or network.
            allow_private_network=True,
        )
    # Outermost: every response carries the request id, preflights and 413s included.
    app.add_middleware(logs.RequestIdMiddleware)
    return app
