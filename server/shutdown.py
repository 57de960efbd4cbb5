"""Stopping on SIGTERM (and Ctrl-C) without dropping runs.

The server (uvicorn) stops on the first SIGTERM or SIGINT: it closes its listening socket,
waits for open responses to end, then runs the app's shutdown. In front of that this
module, installed by the app's lifespan, first marks the process as stopping: `/readyz`
answers 503 at once, and after `MEMORY_AGENT_SHUTDOWN_DELAY_SECONDS` (the time a load
balancer needs to notice) the server is told to stop. The runs this process executes get
`MEMORY_AGENT_SHUTDOWN_GRACE_SECONDS` to finish; the rest are handed back to the shared
database, where another process, or the next start, takes them over from their last
checkpoint; then every stream of this process ends (see `Runner.begin_stop`).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

logger = logging.getLogger("memory_agent.server")

#: The signals that stop the server.
SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def stopping_on_signals(begin: Callable[[], None], delay: float) -> Iterator[None]:
    """While inside, the stopping signals call `begin` (in the event loop) before the
    handler in place (the server's) sees them, `delay` seconds later. A second signal
    goes straight to the server's handler (a second Ctrl-C forces the exit).

    Only the main thread may set signal handlers: elsewhere (an app served in a test's
    thread) nothing is installed.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    earlier: dict[int, Any] = {}
    seen: list[int] = []

    def handle(sig: int, frame: FrameType | None) -> None:
        previous = earlier.get(sig)
        forward = previous if callable(previous) else None
        if seen:
            if forward is not None:
                forward(sig, frame)
            return
        seen.append(sig)
        logger.info("%s: stopping", signal.Signals(sig).name)
        loop.call_soon_threadsafe(begin)
        if forward is None:
            return
        if delay > 0:
            loop.call_soon_threadsafe(loop.call_later, delay, forward, sig, None)
        else:
            forward(sig, frame)

    for stop in SIGNALS:
        earlier[stop] = signal.signal(stop, handle)
    try:
        yield
    finally:
        for number, previous in earlier.items():
            if signal.getsignal(number) is handle:
                signal.signal(number, previous)
