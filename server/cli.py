"""The `memory-agent` command: `serve` the HTTP API, `chat` in the terminal, or `migrate`
the session database to this release's schema."""

from __future__ import annotations

import argparse
import logging
import logging.config
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Sequence
from typing import Any, TextIO

from pydantic import ValidationError

from agent import OFFLINE_NOTICE
from agent.loading import AppConfigError, graph_factory
from agent.model import ModelConfigError, is_offline, load_chat_model
from agent.namespaces import InvalidIdError, Owner, check_id
from memory.embeddings import EmbeddingsUnavailableError, provider_embeddings
from memory.errors import MemoryAgentError, SchemaVersionError
from memory.sessions import SessionManager
from memory.settings import Settings
from memory.stores.factory import backend_urls, migrate, open_backends, shown_url
from memory.stores.outages import as_unavailable
from server.auth import AuthConfigError, build_authenticator

_EXIT_WORDS = {"/exit", "/quit", "exit", "quit"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="memory-agent", description="A LangGraph agent with conversation memory."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the HTTP API")
    serve.add_argument("--host", help="interface to bind (default MEMORY_AGENT_HOST or 127.0.0.1)")
    serve.add_argument(
        "--port", type=int, help="port to listen on (default MEMORY_AGENT_PORT or 8000)"
    )
    serve.add_argument(
        "--workers",
        type=int,
        help="server processes sharing the database (default MEMORY_AGENT_WORKERS or 1); "
        "SQLite, Postgres or Redis",
    )
    commands.add_parser(
        "migrate",
        help="upgrade the session database to this release's schema version and exit "
        "(serve and chat also do it when they open the database)",
        description="Upgrade the database named by MEMORY_AGENT_DATABASE_URL (and "
        "MEMORY_AGENT_STORE_URL) in place to this release's schema version, running the "
        "LangGraph savers' and stores' own migrations too; a database written by a newer "
        "release is refused and left as it is.",
    )
    chat = commands.add_parser("chat", help="chat in the terminal, persisted like the server")
    chat.add_argument("--thread", help="thread id to resume (default: a new one)")
    chat.add_argument("--user", default="local", help="user to chat as (default: local)")
    chat.add_argument("-m", "--message", help="send one message, print the reply and exit")
    return parser


class WorkersError(ValueError):
    """More than one server process was asked for on a backend that cannot share state."""


def check_workers(settings: Settings, workers: int) -> None:
    """Refuse several processes where the backend keeps its state in one process.

    Raises:
        WorkersError: `workers` is below 1, or above 1 on `memory://`.
    """
    if workers < 1:
        raise WorkersError(f"--workers must be at least 1, got {workers}")
    if workers > 1 and settings.resolved_database_url.startswith("memory:"):
        raise WorkersError(
            f"--workers {workers} needs a database the processes share: memory:// keeps "
            "sessions inside one process. Use sqlite:///path (one host), postgresql://... "
            "or redis://..."
        )


def serve(
    settings: Settings, host: str | None, port: int | None, workers: int | None = None
) -> None:
    """Run the API under uvicorn until interrupted, in `workers` processes.

    Several workers share the listening socket; each opens the backends named by the
    environment (the settings are read again in each process), and the session database
    keeps their guarantees together. Every process logs as `settings.log_format` says,
    and with several they count their metrics in one directory made for this start.

    Raises:
        WorkersError: see `check_workers`.
    """
    import uvicorn

    from server.app import create_app
    from server.logs import logging_config
    from server.metrics import MULTIPROC_ENV

    count = workers if workers is not None else settings.workers
    check_workers(settings, count)
    log_config = logging_config(settings.log_format)
    logging.config.dictConfig(log_config)
    bind: dict[str, Any] = {
        "host": host or settings.host,
        "port": port if port is not None else settings.port,
        "log_level": "info",
        "log_config": log_config,
        # Open responses past the runs' grace (the runs' own streams end by then).
        "timeout_graceful_shutdown": (
            settings.shutdown_delay_seconds + settings.shutdown_grace_seconds + 5
        ),
    }
    if count == 1:
        uvicorn.run(create_app(settings), **bind, **connection_options(settings))
        return
    # The processes count in files of one directory, made for this start (files left by
    # an earlier start would add to its counters), so a scrape of any of them sees all.
    metrics_dir = tempfile.mkdtemp(prefix="memory-agent-metrics-")
    os.environ[MULTIPROC_ENV] = metrics_dir
    logging.getLogger("memory_agent.server").info(
        "metrics of the %d workers in %s", count, metrics_dir
    )
    try:
        # Each process imports the app factory and the protocol by name, and reads the
        # settings from the environment it inherits.
        uvicorn.run(
            "server.app:create_app",
            factory=True,
            workers=count,
            **bind,
            **connection_options(None),
        )
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def connection_options(settings: Settings | None) -> dict[str, Any]:
    """uvicorn's HTTP options: httptools with the connection limits of `settings` (None:
    of the environment, as each process of `--workers N` reads them), no WebSockets.

    The app serves no WebSocket, so an upgrade is never handed to another protocol.
    """
    from server.protocol import ConnectionLimits, GuardedHttpToolsProtocol

    protocol: type[GuardedHttpToolsProtocol] | str
    if settings is None:
        protocol = f"{GuardedHttpToolsProtocol.__module__}:{GuardedHttpToolsProtocol.__name__}"
    else:
        protocol = GuardedHttpToolsProtocol.bound(ConnectionLimits.from_settings(settings))
    return {"http": protocol, "ws": "none"}


def _turn(sessions: SessionManager, owner: Owner, thread_id: str, text: str, out: TextIO) -> str:
    """Send one message, writing the reply's tokens to `out` as they come."""
    reply = ""
    for kind, value in sessions.stream(owner, thread_id, [{"role": "user", "content": text}]):
        if kind == "token":
            out.write(value)
            out.flush()
        elif kind == "done":
            reply = value.reply
    out.write("\n")
    out.flush()
    return reply


def chat(
    settings: Settings,
    thread_id: str | None,
    user: str,
    message: str | None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Chat on a thread in the terminal; with `message`, send it alone and exit.

    Returns:
        The process exit code.
    """
    try:
        owner = Owner(tenant="default", user=user)
        if thread_id is not None:
            check_id("thread id", thread_id)
        make_graph = graph_factory(tools=settings.tools, graph=settings.graph)
    except (InvalidIdError, AppConfigError) as exc:
        err.write(f"error: {exc}\n")
        return 2
    if is_offline(settings.model):
        err.write(f"note: {OFFLINE_NOTICE}\n")
    with open_backends(settings=settings) as backends:
        sessions = SessionManager.from_settings(
            make_graph(backends.checkpointer, backends.store), settings
        )
        try:
            record, created = sessions.get_or_create(owner, thread_id or str(uuid.uuid4()))
            if record["status"] == "ended":
                err.write(f"error: thread {record['thread_id']!r} has ended; start a new one\n")
                return 1
            thread_id = record["thread_id"]
            verb = "new thread" if created else "resuming thread"
            err.write(
                f"{verb} {thread_id} as user {user} ({backends.name}); "
                f"resume with: memory-agent chat --thread {thread_id} --user {user}\n"
            )
            if message is not None:
                _turn(sessions, owner, thread_id, message, out)
                return 0
            err.write("type a message; /exit or Ctrl-D to quit\n")
            while True:
                try:
                    text = input("you> ").strip()
                except (EOFError, KeyboardInterrupt):
                    err.write("\n")
                    return 0
                if text in _EXIT_WORDS:
                    return 0
                if text:
                    out.write("agent> ")
                    _turn(sessions, owner, thread_id, text, out)
        except MemoryAgentError as exc:
            err.write(f"error: {exc}\n")
            return 1


def run_migrate(settings: Settings, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Upgrade the session database of `settings` in place and say what changed.

    Returns:
        The process exit code: 0 once the database is at this release's version, 1 if it
        was written by a newer release or cannot be reached now.
    """
    _, store_url = backend_urls(settings)
    try:
        change = migrate(settings=settings)
    except MemoryAgentError as exc:
        err.write(f"error: {exc}\n")
        return 1
    out.write(f"the session database at {shown_url(store_url)}: {change}\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `memory-agent` console script."""
    args = _parser().parse_args(argv)
    try:
        settings = Settings()
        if args.command == "serve":
            build_authenticator(settings)
    except (ValidationError, AuthConfigError) as exc:
        sys.stderr.write(f"error: invalid settings: {exc}\n")
        return 2
    try:
        # The application's tools and graph are imported and checked before anything starts,
        # and so is the model: a provider that cannot be loaded stops here, not at each run.
        graph_factory(tools=settings.tools, graph=settings.graph)
        load_chat_model(settings.model)
        if settings.embeddings.strip() not in ("", "none", "off", "local"):
            provider_embeddings(settings.embeddings.strip())
    except (AppConfigError, ModelConfigError, EmbeddingsUnavailableError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    if args.command == "migrate":
        return run_migrate(settings)
    if args.command == "serve":
        try:
            check_workers(settings, args.workers if args.workers is not None else settings.workers)
        except WorkersError as exc:
            sys.stderr.write(f"error: {exc}\n")
            return 2
        # The database is upgraded (or refused) once here, before any worker starts; one
        # that is down is checked by the server when it answers.
        try:
            migrate(settings=settings)
        except SchemaVersionError as exc:
            sys.stderr.write(f"error: {exc}\n")
            return 2
        except Exception as exc:
            if as_unavailable(exc) is None:
                raise
        serve(settings, args.host, args.port, args.workers)
        return 0
    try:
        return chat(settings, args.thread, args.user, args.message)
    except SchemaVersionError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
