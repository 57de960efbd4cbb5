"""The HTTP/1.1 connections of `memory-agent serve`: deadlines and bounds on what a client
sends before the app sees a request.

uvicorn parses HTTP/1.1 with httptools (llhttp), which has no limit on the size or number
of header fields, and uvicorn has no deadline for a request's head or body: a client that
sends its headers a byte at a time holds a connection (and a parser buffer that grows with
whatever it sends) for as long as it likes. `GuardedHttpToolsProtocol` is uvicorn's httptools
protocol with four bounds added, each refusal answered in JSON before the connection closes:

- the request line and headers must arrive within `header_timeout` seconds of the
  connection opening or of the request's first byte (else 408, or a silent close when not
  one byte came);
- the body within `body_timeout` seconds of the headers (else 408);
- the request line and headers take at most `max_header_bytes` bytes (else 431);
- at most `max_headers` header fields (else 431).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from functools import cache
from typing import Any, ClassVar, Literal

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from memory.settings import Settings
from server.logs import request_id

Phase = Literal["idle", "head", "body"]


@dataclass(frozen=True)
class ConnectionLimits:
    """What a client may send on a connection, and how slowly."""

    header_timeout: float
    body_timeout: float
    max_header_bytes: int
    max_headers: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        """The limits `settings` configure."""
        return cls(
            header_timeout=settings.header_timeout_seconds,
            body_timeout=settings.body_timeout_seconds,
            max_header_bytes=settings.max_header_bytes,
            max_headers=settings.max_headers,
        )


@cache
def environment_limits() -> ConnectionLimits:
    """The limits the environment configures, read once per process (each worker's own)."""
    return ConnectionLimits.from_settings(Settings())


class _Refused(Exception):
    """Raised in a parser callback to stop parsing a request that broke a limit."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header and body deadlines and header bounds.

    `limits` None reads them from the environment: that is how the processes of
    `--workers N`, which import this class by name, get them. `bound` makes a subclass
    with explicit limits.
    """

    limits: ClassVar[ConnectionLimits | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = self.limits or environment_limits()
        self._phase: Phase = "idle"
        self._head_bytes = 0
        self._head_fields = 0
        self._timer: asyncio.TimerHandle | None = None
        self._refusal: tuple[int, str] | None = None

    @classmethod
    def bound(cls, limits: ConnectionLimits) -> type[GuardedHttpToolsProtocol]:
        """This protocol with `limits` instead of the environment's."""
        return type(cls.__name__, (cls,), {"limits": limits})

    # -- the connection --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        """Start the header deadline: a connection that sends nothing is closed by it too."""
        super().connection_made(transport)  # type: ignore[arg-type]
        self._start_head()
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the deadline with the connection."""
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Parse `data`, never more of a request's head than `max_header_bytes`."""
        while data and not self.transport.is_closing():
            if self._phase == "idle":  # the first byte of the next request
                self._start_head()
            if self._phase != "head":
                super().data_received(data)
                break
            room = self._limits.max_header_bytes - self._head_bytes
            piece, data = data[:room], data[room:]
            self._head_bytes += len(piece)
            if piece:
                super().data_received(piece)
                if self.transport.is_closing():  # refused or answered inside the piece
                    return
            if self._phase == "head" and self._head_bytes >= self._limits.max_header_bytes:
                self._refuse(
                    431,
                    "the request line and headers are larger than the limit of "
                    f"{self._limits.max_header_bytes} bytes",
                )
                return
        if not self.transport.is_closing():
            self._arm()

    def send_400_response(self, msg: str) -> None:
        """Answer a parse error, or the limit a parser callback found broken."""
        if self._refusal is None:
            super().send_400_response(msg)
        else:
            self._refuse(*self._refusal)

    # -- parser callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        """A request starts (pipelined ones too): its head is counted from here."""
        if self._phase != "head":
            self._start_head()
        super().on_message_begin()

    def on_header(self, name: bytes, value: bytes) -> None:
        """Count the header fields."""
        self._head_fields += 1
        if self._head_fields > self._limits.max_headers:
            self._refusal = (
                431,
                f"the request has more than the limit of {self._limits.max_headers} header fields",
            )
            raise _Refused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        """The head is in: its deadline stops, the body's starts once data is parsed."""
        self._phase = "body"
        self._disarm()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        """The body is in: no deadline until the next request's first byte."""
        self._phase = "idle"
        self._disarm()
        super().on_message_complete()

    # -- deadlines and refusals ------------------------------------------------------------

    def _start_head(self) -> None:
        self._phase = "head"
        self._head_bytes = 0
        self._head_fields = 0

    def _arm(self) -> None:
        """Start the deadline of the current phase unless it is running."""
        if self._timer is not None or self._phase == "idle":
            return
        seconds = (
            self._limits.header_timeout if self._phase == "head" else self._limits.body_timeout
        )
        self._timer = self.loop.call_later(seconds, self._expired, self._phase)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self, phase: Phase) -> None:
        self._timer = None
        if self._phase != phase or self.transport.is_closing():
            return
        if self.flow.read_paused:
            # The server stopped reading (a pipelined request waits, or the app is slow to
            # take the body): the time is the server's, not the client's.
            self._arm()
            return
        if phase == "head" and self._head_bytes == 0:
            self.transport.close()  # an idle connection: nothing was asked, nothing to answer
            return
        seconds = self._limits.header_timeout if phase == "head" else self._limits.body_timeout
        part = "headers" if phase == "head" else "body"
        self._refuse(408, f"the request {part} did not arrive within {seconds:g} s")

    def _refuse(self, status: int, detail: str) -> None:
        """Answer `status` with a JSON `detail` where HTTP allows it, then close."""
        self.logger.warning("%s: %s", self._who(), detail)
        self._disarm()
        if self._may_answer():
            body = json.dumps({"detail": detail}).encode()
            head = [STATUS_LINE[status]]
            for name, value in self.server_state.default_headers:
                head.extend([name, b": ", value, b"\r\n"])
            # The request never reached the app: its id is made here.
            head.append(b"x-request-id: %s\r\n" % request_id(None).encode())
            head.append(
                b"content-type: application/json\r\ncontent-length: %d\r\n"
                b"connection: close\r\n\r\n" % len(body)
            )
            self.transport.write(b"".join(head) + body)
        self.transport.close()

    def _may_answer(self) -> bool:
        """Whether a response may be written now: none is in progress on the connection."""
        cycle = self.cycle
        if self._phase != "body":
            return cycle is None or cycle.response_complete
        if cycle is None or cycle.response_started:
            return False
        # The app waits for this body: it is told the client went away, the answer is ours.
        cycle.disconnected = True
        cycle.message_event.set()
        return True

    def _who(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
