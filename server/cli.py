"""The `memory-agent` command: `serve` the HTTP API, or `chat` in the terminal."""

from __future__ import annotations

import argparse
import logging
import sys
import uuid
from collections.abc import Sequence
from typing import TextIO

from pydantic import ValidationError

from agent import OFFLINE_NOTICE, build_graph
from agent.model import is_offline
from memory.errors import MemoryAgentError
from memory.namespaces import InvalidIdError, Owner, check_id
from memory.sessions import SessionManager
from memory.settings import Settings
from memory.stores.factory import open_backends
from server.auth import ApiKeyConfigError, KeyRing

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
    chat = commands.add_parser("chat", help="chat in the terminal, persisted like the server")
    chat.add_argument("--thread", help="thread id to resume (default: a new one)")
    chat.add_argument("--user", default="local", help="user to chat as (default: local)")
    chat.add_argument("-m", "--message", help="send one message, print the reply and exit")
    return parser


def serve(settings: Settings, host: str | None, port: int | None) -> None:
    """Run the API under uvicorn until interrupted."""
    import uvicorn

    from server.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")
    uvicorn.run(
        create_app(settings),
        host=host or settings.host,
        port=port if port is not None else settings.port,
        log_level="info",
    )


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
    except InvalidIdError as exc:
        err.write(f"error: {exc}\n")
        return 2
    if is_offline(settings.model):
        err.write(f"note: {OFFLINE_NOTICE}\n")
    with open_backends(settings=settings) as backends:
        sessions = SessionManager.from_settings(
            build_graph(backends.checkpointer, backends.store), settings
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `memory-agent` console script."""
    args = _parser().parse_args(argv)
    try:
        settings = Settings()
        if args.command == "serve":
            KeyRing.parse(settings.api_keys)
    except (ValidationError, ApiKeyConfigError) as exc:
        sys.stderr.write(f"error: invalid settings: {exc}\n")
        return 2
    if args.command == "serve":
        serve(settings, args.host, args.port)
        return 0
    return chat(settings, args.thread, args.user, args.message)


if __name__ == "__main__":
    sys.exit(main())
