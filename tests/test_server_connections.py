"""`memory-agent serve` over real sockets: header and body deadlines, header size and count.

One server process tree (`--workers 2`, the limits read from the environment by each
worker) serves most tests, with one-second deadlines; one uvicorn server in a thread checks
that `serve`'s single-process path applies explicit settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn

from memory.settings import Settings
from server.app import create_app
from server.cli import connection_options
from tests.test_cli import command
from tests.test_server_restart import free_port

pytestmark = pytest.mark.slow

#: The deadlines of the served process: short, so the tests wait little.
DEADLINE_SECONDS = 1.0
#: Scheduling slack on a loaded machine: a bound against a hang, not a timing measurement.
SLACK_SECONDS = 4.0
_START_DEADLINE_SECONDS = 60


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A `memory-agent serve --workers 2` with one-second header and body deadlines."""
    env = {
        **os.environ,
        "MEMORY_AGENT_DATABASE_URL": f"sqlite:///{tmp_path_factory.mktemp('conn') / 'a.sqlite'}",
        "MEMORY_AGENT_EMBEDDINGS": "none",
        "MEMORY_AGENT_API_KEYS": "",
        "MEMORY_AGENT_HEADER_TIMEOUT_SECONDS": str(DEADLINE_SECONDS),
        "MEMORY_AGENT_BODY_TIMEOUT_SECONDS": str(DEADLINE_SECONDS),
    }
    for name in ("MEMORY_AGENT_MAX_HEADER_BYTES", "MEMORY_AGENT_MAX_HEADERS"):
        env.pop(name, None)  # the defaults: 64 KiB and 100 fields
    chosen = free_port()
    proc = subprocess.Popen(
        [*command(), "serve", "--workers", "2", "--host", "127.0.0.1", "--port", str(chosen)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + _START_DEADLINE_SECONDS
        while True:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                if httpx.get(f"http://127.0.0.1:{chosen}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.2)
        yield chosen
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection (a reset ends it too)."""
    received = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), _START_DEADLINE_SECONDS):
            received += chunk
    except ConnectionResetError:
        pass
    return received


async def exchange(port: int, request: bytes) -> bytes:
    """Send `request` whole and read until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        # Refused before it was all sent: the answer is still there to read.
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        return await read_until_closed(reader)
    finally:
        writer.close()


def parse(response: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one HTTP/1.1 response with a Content-Length."""
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def refusal(response: bytes, status: int) -> str:
    """The `detail` of a JSON refusal with `status` that closes the connection."""
    code, headers, body = parse(response)
    assert code == status, response[:300]
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    return json.loads(body)["detail"]


async def trickle(port: int, data: bytes, every: float, size: int = 1) -> tuple[float, bytes]:
    """Send `data` `size` bytes at a time, `every` seconds apart; the seconds until the server
    closed, and what it said."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()

    async def send() -> None:
        for at in range(0, len(data), size):
            writer.write(data[at : at + size])
            await writer.drain()
            await asyncio.sleep(every)

    sender = asyncio.create_task(send())
    try:
        received = await read_until_closed(reader)
        return time.monotonic() - started, received
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        writer.close()


async def test_headers_sent_byte_by_byte_are_cut_at_the_deadline(port: int) -> None:
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200 + b"\r\n\r\n"
    results = await asyncio.gather(*(trickle(port, request, 0.05) for _ in range(40)))
    for seconds, received in results:
        assert seconds < DEADLINE_SECONDS + SLACK_SECONDS
        assert "headers did not arrive within 1 s" in refusal(received, 408)


async def test_a_connection_that_sends_nothing_is_closed_without_an_answer(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    try:
        assert await read_until_closed(reader) == b""
        assert time.monotonic() - started < DEADLINE_SECONDS + SLACK_SECONDS
    finally:
        writer.close()


async def test_a_body_slower_than_the_deadline_gets_408(port: int) -> None:
    head = (
        b"POST /threads HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 60\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + b'{"thread_id": "half-sent", "metadata": {')
        started = time.monotonic()
        received = await read_until_closed(reader)
        assert time.monotonic() - started < DEADLINE_SECONDS + SLACK_SECONDS
    finally:
        writer.close()
    assert "body did not arrive within 1 s" in refusal(received, 408)
    # Nothing half-sent was acted on: no thread was created.
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        assert (await client.get("/threads/half-sent")).status_code == 404


async def test_a_one_megabyte_header_is_refused_with_431(port: int) -> None:
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 1_000_000 + b"\r\n\r\n"
    detail = refusal(await exchange(port, request), 431)
    assert "larger than the limit of 65536 bytes" in detail


async def test_twenty_thousand_headers_are_refused_with_431(port: int) -> None:
    fields = b"".join(b"X-H%d: v\r\n" % i for i in range(20_000))
    detail = refusal(await exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + fields), 431)
    assert "more than the limit of 100 header fields" in detail


async def test_requests_within_the_limits_are_served(port: int) -> None:
    fields = {f"x-field-{i}": "v" for i in range(90)}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        # Several requests on one kept-alive connection, each in time.
        for _ in range(3):
            assert (await client.get("/healthz")).status_code == 200
            await asyncio.sleep(DEADLINE_SECONDS / 2)
        assert (await client.get("/healthz", headers=fields)).status_code == 200
        assert (await client.get("/healthz", headers={"x-big": "a" * 60_000})).status_code == 200
        created = await client.post("/threads", json={"metadata": {"note": "n" * 10_000}})
        assert created.status_code == 201
        ran = await client.post(
            f"/threads/{created.json()['thread_id']}/runs", json={"message": "hello"}
        )
        assert ran.status_code == 200
    # A body sent in pieces that arrives whole within the deadline is served.
    body = json.dumps({"thread_id": "pieces"}).encode()
    head = b"POST /threads HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    head += b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
    _, received = await trickle(port, head + body, 0.1, size=40)
    assert parse(received)[0] == 201


@contextmanager
def serving(settings: Settings) -> Iterator[int]:
    """`serve`'s single-process server for `settings`, on a free port, in a thread."""
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=free_port(),
        log_level="warning",
        **connection_options(settings),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + _START_DEADLINE_SECONDS
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        yield config.port
    finally:
        server.should_exit = True
        thread.join(_START_DEADLINE_SECONDS)


async def test_explicit_settings_set_the_limits_of_a_single_process(tmp_path: Path) -> None:
    settings = Settings(
        database_url="memory://",
        embeddings="none",
        api_keys="",
        max_headers=12,
        max_header_bytes=2048,
        header_timeout_seconds=0.5,
    )
    with serving(settings) as served:
        base = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        ten = b"".join(b"X-H%d: v\r\n" % i for i in range(10))
        assert parse(await exchange(served, base + ten + b"\r\n"))[0] == 200
        eleven = ten + b"X-H10: v\r\n"
        detail = refusal(await exchange(served, base + eleven + b"\r\n"), 431)
        assert "more than the limit of 12 header fields" in detail
        big = b"X-Big: " + b"a" * 2048 + b"\r\n\r\n"
        assert "limit of 2048 bytes" in refusal(await exchange(served, base + big), 431)
        seconds, received = await trickle(served, base, 0.05)
        assert seconds < 0.5 + SLACK_SECONDS
        assert "headers did not arrive within 0.5 s" in refusal(received, 408)


def test_the_defaults_are_the_documented_ones(fresh_env: pytest.MonkeyPatch) -> None:
    settings = Settings()
    assert settings.header_timeout_seconds == 10
    assert settings.body_timeout_seconds == 30
    assert settings.max_header_bytes == 65_536
    assert settings.max_headers == 100
