# ruff: noqa: UP031  (raw JSON bodies: "%s" keeps their braces readable)
"""Input that used to answer 500: values no backend can store, a never-run thread's state,
store filters not every backend answers, SQLite write contention.

Each is sent as raw bytes over one kept-alive connection to a real server process (a client
library would normalise NaN, lone surrogates and big integers away), and each must answer a
4xx naming the problem (or 503 with `Retry-After` for contention), store nothing, and leave
the connection serving the next request.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from memory.settings import Settings
from server.app import create_app
from tests.lgserver import LangGraphServer, langgraph_server
from tests.plugins.server import running

BACKENDS = ("sqlite", "postgres", "redis")


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LangGraphServer]:
    """One server process per backend, shared by the module (tests use their own threads)."""
    kind = request.param
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('hostile') / 'agent.sqlite'}"
    else:
        url = request.getfixturevalue(f"{kind}_url")
    with langgraph_server(
        url, tmp_path_factory.mktemp("hostile-logs"), runs_per_minute="1000"
    ) as s:
        yield s


class Conn:
    """One kept-alive HTTP connection to the server, as one user, sending raw bodies."""

    def __init__(self, server: LangGraphServer, user: str = "alice") -> None:
        parts = urlsplit(server.base)
        self.http = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
        self.key = server.keys[user]
        self.sock: Any = None

    def send(self, method: str, path: str, body: bytes | str | None = None) -> tuple[int, Any]:
        """The status and the JSON body (None when empty) of one request."""
        if isinstance(body, str):
            body = body.encode()
        headers = {"x-api-key": self.key, "content-type": "application/json"}
        self.http.request(method, path, body=body, headers=headers)
        response = self.http.getresponse()
        raw = response.read()
        assert response.getheader("connection", "").lower() != "close", (path, raw)
        if self.sock is None:
            self.sock = self.http.sock
        assert self.http.sock is self.sock, "the server closed the kept-alive connection"
        if response.getheader("content-type", "").startswith("text/event-stream"):
            return response.status, raw.decode()
        return response.status, json.loads(raw) if raw else None

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        """A valid request's JSON answer (it must be 2xx)."""
        status, out = self.send(method, path, None if body is None else json.dumps(body))
        assert 200 <= status < 300, (status, out)
        return out

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def conn(server: LangGraphServer) -> Iterator[Conn]:
    c = Conn(server)
    yield c
    c.close()


def _deep(levels: int) -> str:
    return "[" * levels + "1" + "]" * levels


def assert_names(out: Any, *loc: str | int) -> None:
    """A 422 body whose first error is at `loc` (and says where in its message)."""
    error = out["detail"][0]
    assert error["loc"][: len(loc)] == list(loc), out
    assert error["msg"], out


# -- (a) values no backend can store -------------------------------------------------

#: (name, JSON text of a message, path of the bad value inside `input.messages[0]`).
BAD_MESSAGES = [
    ("int-past-2**63", '{"role":"user","content":"x","additional_kwargs":{"n":9223372036854775808}}', ["additional_kwargs", "n"]),
    ("int-below--2**63", '{"role":"user","content":"x","additional_kwargs":{"n":-9223372036854775809}}', ["additional_kwargs", "n"]),
    ("NaN", '{"role":"user","content":"x","additional_kwargs":{"n":NaN}}', ["additional_kwargs", "n"]),
    ("Infinity", '{"role":"user","content":"x","additional_kwargs":{"n":-Infinity}}', ["additional_kwargs", "n"]),
    ("NUL", '{"role":"user","content":"a\\u0000b"}', ["content"]),
    ("lone-surrogate", '{"role":"user","content":"a\\ud800b"}', ["content"]),
    ("nested-21", '{"role":"user","content":"x","additional_kwargs":{"n":%s}}' % _deep(21), ["additional_kwargs", "n"]),
    ("tool-args-21", '{"role":"ai","content":"","tool_calls":[{"id":"c1","name":"f","args":{"a":%s}}]}' % _deep(21), ["tool_calls", 0, "args", "a"]),
]  # fmt: skip


def _lg_state(conn: Conn, tid: str) -> tuple[list[Any], list[Any]]:
    state = conn.ok("GET", f"/langgraph/threads/{tid}/state")
    runs = conn.ok("GET", f"/langgraph/threads/{tid}/runs")
    return state["values"].get("messages", []), runs


@pytest.mark.parametrize(
    ("name", "message", "where"), BAD_MESSAGES, ids=[b[0] for b in BAD_MESSAGES]
)
def test_lg_run_input_that_cannot_be_stored_is_422(
    conn: Conn, name: str, message: str, where: list[Any]
) -> None:
    tid = conn.ok("POST", "/langgraph/threads", {})["thread_id"]
    conn.ok("POST", f"/langgraph/threads/{tid}/runs/wait", {"assistant_id": "agent", "input": {"messages": [{"role": "user", "content": "hi"}]}})  # fmt: skip
    before = _lg_state(conn, tid)
    body = '{"assistant_id":"agent","input":{"messages":[%s]}}' % message
    for endpoint in ("runs", "runs/stream", "runs/wait"):
        status, out = conn.send("POST", f"/langgraph/threads/{tid}/{endpoint}", body)
        assert status == 422, (endpoint, out)
        assert_names(out, "body", "input", "messages", 0, *where)
        assert out["detail"][0]["msg"].startswith("input.messages[0]."), out
    status, out = conn.send("POST", f"/langgraph/threads/{tid}/state", '{"values":{"messages":[%s]}}' % message)  # fmt: skip
    assert status == 422, out
    assert_names(out, "body", "values", "messages")
    assert _lg_state(conn, tid) == before


#: Raw JSON values no backend can store, and what the 422 says of them.
BAD_VALUES = {
    "int-past-2**63": ("18446744073709551616", "64 bits"),
    "NaN": ("NaN", "finite"),
    "NUL": ('"a\\u0000"', "NUL"),
    "lone-surrogate": ('"\\udfff"', "surrogate"),
    "nested-21": (_deep(21), "nested"),
}

#: (route, body with `%s` for the value, location of the value).
FIELDS = [
    ("POST /langgraph/threads/{tid}/runs/wait", '{"assistant_id":"agent","input":{"messages":[{"role":"user","content":"x"}]},"metadata":{"m":%s}}', ["body", "metadata", "m"]),
    ("POST /langgraph/threads/{tid}/runs", '{"assistant_id":"agent","input":{"messages":[{"role":"user","content":"x"}]},"config":{"configurable":{"m":%s}}}', ["body", "config", "configurable", "m"]),
    ("POST /langgraph/threads/{tid}/runs/stream", '{"assistant_id":"agent","input":{"messages":[{"role":"user","content":"x"}]},"config":{"configurable":{"x":%s}}}', ["body", "config", "configurable", "x"]),
    ("POST /langgraph/threads", '{"metadata":{"m":%s}}', ["body", "metadata", "m"]),
    ("PATCH /langgraph/threads/{tid}", '{"metadata":{"m":{"deeper":%s}}}', ["body", "metadata", "m", "deeper"]),
    ("PUT /langgraph/store/items", '{"namespace":["hostile"],"key":"k","value":{"m":%s}}', ["body", "value", "m"]),
    ("PUT /memories/{key}", '{"value":{"m":%s}}', ["body", "value", "m"]),
    ("PUT /threads/{tid}/memories/{key}", '{"value":[%s]}', ["body", "value", 0]),
    ("POST /threads", '{"metadata":{"m":%s}}', ["body", "metadata", "m"]),
    ("POST /threads/{tid}/messages", '{"messages":[{"role":"assistant","content":"","tool_calls":[{"id":"c","name":"f","args":{"m":%s}}]}]}', ["body", "messages", 0, "tool_calls", 0, "args", "m"]),
    ("POST /threads/{new}/runs", '{"messages":[{"content":"x","metadata":{"m":%s}}]}', ["body", "messages", 0, "metadata", "m"]),
]  # fmt: skip


@pytest.mark.parametrize(("route", "body", "loc"), FIELDS, ids=[f[0] for f in FIELDS])
def test_fields_that_cannot_be_stored_are_422_and_store_nothing(
    conn: Conn, route: str, body: str, loc: list[Any]
) -> None:
    lg = conn.ok("POST", "/langgraph/threads", {"metadata": {"m": "kept"}})["thread_id"]
    native = conn.ok("POST", "/threads", {})["thread_id"]
    key = f"k{uuid.uuid4().hex[:8]}"
    new = f"new-{uuid.uuid4().hex[:8]}"
    tid = native if route.startswith(("PUT /threads", "POST /threads/")) else lg
    method, path = route.split(" ")
    path = path.format(tid=tid, key=key, new=new)
    threads_before = conn.ok("GET", "/threads?limit=1")["total"]
    for name, (value, says) in BAD_VALUES.items():
        status, out = conn.send(method, path, body % value)
        assert status == 422, (name, out)
        assert_names(out, *loc)
        assert says in out["detail"][0]["msg"], (name, out)
    # Nothing was stored: no run, thread, message or memory, and the metadata is as it was.
    assert conn.ok("GET", f"/langgraph/threads/{lg}")["metadata"]["m"] == "kept"
    assert conn.ok("GET", f"/langgraph/threads/{lg}/runs") == []
    assert conn.ok("GET", "/threads?limit=1")["total"] == threads_before
    assert conn.ok("GET", f"/threads/{native}/messages")["total"] == 0
    assert conn.send("GET", f"/memories/{key}")[0] == 404
    assert conn.send("GET", f"/threads/{native}/memories/{key}")[0] == 404
    assert (
        conn.ok("POST", "/langgraph/store/items/search", {"namespace_prefix": ["hostile"]})["items"]
        == []
    )
    assert conn.send("GET", f"/threads/{new}")[0] == 404


@pytest.mark.parametrize("text", ['"a\\u0000b"', '"a\\ud800b"'], ids=["NUL", "lone-surrogate"])
@pytest.mark.parametrize("path", ["/threads/{new}/runs", "/threads/{new}/runs/stream", "/chat"])
def test_native_run_text_that_cannot_be_stored_is_422(conn: Conn, path: str, text: str) -> None:
    new = f"new-{uuid.uuid4().hex[:8]}"
    before = conn.ok("GET", "/threads?limit=1")["total"]
    status, out = conn.send("POST", path.format(new=new), '{"message":%s}' % text)
    assert status == 422, out
    assert_names(out, "body", "message")
    assert conn.send("GET", f"/threads/{new}")[0] == 404
    assert conn.ok("GET", "/threads?limit=1")["total"] == before


# -- (b) the state of a thread that never ran ----------------------------------------


def test_summary_of_a_native_thread_that_never_ran(conn: Conn) -> None:
    tid = conn.ok("POST", "/threads", {})["thread_id"]
    assert conn.ok("PUT", f"/threads/{tid}/summary", {"summary": "a summary"})["summary"] == (
        "a summary"
    )
    assert conn.ok("GET", f"/threads/{tid}/summary")["summary"] == "a summary"
    state = conn.ok("GET", f"/threads/{tid}/state")
    assert (state["summary"], state["messages"], state["next"]) == ("a summary", [], [])
    reply = conn.ok("POST", f"/threads/{tid}/runs", {"message": "hello"})
    assert reply["reply"]
    assert conn.ok("GET", f"/threads/{tid}/summary")["summary"] == "a summary"


def test_lg_state_update_of_a_thread_that_never_ran(conn: Conn) -> None:
    tid = conn.ok("POST", "/langgraph/threads", {})["thread_id"]
    out = conn.ok("POST", f"/langgraph/threads/{tid}/state", {"values": {"summary": "s0"}})
    assert out["checkpoint"]["checkpoint_id"]
    state = conn.ok("GET", f"/langgraph/threads/{tid}/state")
    assert state["values"]["summary"] == "s0"
    assert state["next"] == []
    final = conn.ok("POST", f"/langgraph/threads/{tid}/runs/wait", {"assistant_id": "agent", "input": {"messages": [{"role": "user", "content": "hi"}]}})  # fmt: skip
    assert [m["type"] for m in final["messages"]] == ["human", "ai"]
    assert final["summary"] == "s0"


# -- (c) store filters ---------------------------------------------------------------

#: (filter, location in the body, what the message names).
BAD_FILTERS = [
    ('{"n":{"$regex":"^a"}}', ["body", "filter", "n", "$regex"], "$regex"),
    ('{"n":{"$bogus":1}}', ["body", "filter", "n", "$bogus"], "$bogus"),
    ('{"n":{"$in":[1,2]}}', ["body", "filter", "n", "$in"], "$in"),
    ('{"n":{"nested":1}}', ["body", "filter", "n", "nested"], "nested"),
    ('{"n":{}}', ["body", "filter", "n"], "empty"),
    ('{"n":{"$gt":"abc"}}', ["body", "filter", "n", "$gt"], "number"),
    ('{"n":null}', ["body", "filter", "n"], "string, number or boolean"),
    ('{"n":[1]}', ["body", "filter", "n"], "string, number or boolean"),
    ('{"a\\"b":1}', ["body", "filter", 'a"b'], "filter key"),
    ('{"a\'b":1}', ["body", "filter", "a'b"], "filter key"),
    ('{"a.b":1}', ["body", "filter", "a.b"], "filter key"),
    ('{"a[0]":1}', ["body", "filter", "a[0]"], "filter key"),
    ('{"$where":1}', ["body", "filter", "$where"], "filter key"),
    ('{"":1}', ["body", "filter", ""], "filter key"),
    ('{"%s":1}' % ("k" * 300), ["body", "filter"], "filter key"),
    ('{"caf\\u00e9":1}', ["body", "filter", "caf\u00e9"], "filter key"),
]

ITEMS = {
    "one": {"n": 1, "s": "a", "t": True, "kind-x": "odd", "f": 1.5, "gone": None},
    "two": {"n": 2, "s": "b", "t": False, "kind-x": "even", "f": "1.5"},
    "ten": {"n": 10, "s": "c", "kind-x": "even"},
}

#: Filters every backend answers, and the keys they must match on each.
GOOD_FILTERS = [
    ({"n": 1}, ["one"]),
    ({"n": {"$eq": 2}}, ["two"]),
    ({"n": {"$ne": 2}}, ["one", "ten"]),
    ({"n": {"$gt": 9}}, ["ten"]),
    ({"n": {"$gte": 2, "$lt": 10}}, ["two"]),
    ({"n": {"$lte": 2.0}}, ["one", "two"]),
    ({"s": "b"}, ["two"]),
    ({"s": {"$ne": "b"}}, ["one", "ten"]),
    ({"t": True}, ["one"]),
    ({"t": {"$eq": False}}, ["two"]),
    ({"kind-x": "even", "n": {"$gt": 5}}, ["ten"]),
    ({"f": {"$gt": 1}}, ["one"]),  # "1.5" is a string, not a number
    ({"gone": {"$ne": 1}}, []),  # null and absent fields match nothing
    ({"missing": {"$lt": 100}}, []),
]


def test_store_filters_not_every_backend_answers_are_422(conn: Conn) -> None:
    ns = f"filters-{uuid.uuid4().hex[:8]}"
    for key, value in ITEMS.items():
        conn.ok("PUT", "/langgraph/store/items", {"namespace": [ns], "key": key, "value": value})
    for text, loc, says in BAD_FILTERS:
        status, out = conn.send("POST", "/langgraph/store/items/search", '{"namespace_prefix":["%s"],"filter":%s}' % (ns, text))  # fmt: skip
        assert status == 422, (text, out)
        assert_names(out, *loc)
        assert says in out["detail"][0]["msg"], (text, out)
    for wanted, keys in GOOD_FILTERS:
        found = conn.ok("POST", "/langgraph/store/items/search", {"namespace_prefix": [ns], "filter": wanted, "limit": 50})  # fmt: skip
        assert sorted(i["key"] for i in found["items"]) == keys, wanted


# -- (d) SQLite write contention -------------------------------------------------------


def _hold_write_lock(path: Path) -> subprocess.Popen[str]:
    """Another process holding the SQLite write lock of `path` until it is killed."""
    code = (
        "import sqlite3, sys, time\n"
        f"c = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
        "c.execute('BEGIN IMMEDIATE')\n"
        "print('locked', flush=True)\n"
        "sys.stdin.readline()\n"
        "c.execute('ROLLBACK')\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def _release(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.write("\n")
    proc.stdin.flush()
    proc.wait(timeout=10)


async def test_sqlite_write_contention_is_503_with_retry_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import memory.stores.sqlite_saver as sqlite_saver

    monkeypatch.setattr(sqlite_saver, "LOCK_TIMEOUT_SECONDS", 0.5)
    db = tmp_path / "agent.sqlite"
    settings = Settings(
        database_url=f"sqlite:///{db}",
        embeddings="none",
        api_keys="k=acme/u",
        backend_timeout_seconds=1,  # the session database's waits end at this deadline
    )
    headers = {"Authorization": "Bearer k", "content-type": "application/json"}
    app = create_app(settings)
    async with running(app) as client:
        created = await client.post("/threads", json={"thread_id": "t1"}, headers=headers)
        assert created.status_code == 201
        for locked in (db.with_name("agent.store.sqlite"), db):
            holder = _hold_write_lock(locked)
            try:
                for method, path, body in [
                    ("PUT", "/memories/m1", b'{"value": 1}'),
                    ("PUT", "/langgraph/store/items", b'{"namespace":["a"],"key":"k","value":{}}'),
                    ("PUT", "/threads/t1/summary", b'{"summary": "s"}'),
                ]:
                    response = await client.request(method, path, content=body, headers=headers)
                    if response.status_code < 300:
                        continue  # this route writes to the other file
                    assert response.status_code == 503, (locked.name, path, response.text)
                    assert response.headers["retry-after"] == "1"
                    assert "retry" in response.json()["detail"]
            finally:
                _release(holder)
            # What answered 503 was not stored.
            if locked.name == "agent.store.sqlite":
                assert (await client.get("/memories/m1", headers=headers)).status_code == 404
        # A lock held for less than the retry bound is waited out.
        monkeypatch.setattr(sqlite_saver, "LOCK_TIMEOUT_SECONDS", 10.0)
        holder = _hold_write_lock(db.with_name("agent.store.sqlite"))
        request = asyncio.ensure_future(
            client.put("/memories/m2", content=b'{"value": 2}', headers=headers)
        )
        await asyncio.sleep(0.3)
        assert not request.done()
        _release(holder)
        assert (await request).status_code == 200
        assert (await client.get("/memories/m2", headers=headers)).json()["value"] == 2


def test_keepalive_survives_a_burst_of_bad_requests(server: LangGraphServer) -> None:
    """Each bad request above answered on the connection it came on: here many in a row."""
    c = Conn(server, "bob")
    try:
        tid = c.ok("POST", "/langgraph/threads", {})["thread_id"]
        for _, message, _ in BAD_MESSAGES:
            status, _ = c.send("POST", f"/langgraph/threads/{tid}/runs/wait", '{"assistant_id":"agent","input":{"messages":[%s]}}' % message)  # fmt: skip
            assert status == 422
        assert c.ok("GET", f"/langgraph/threads/{tid}")["thread_id"] == tid
    finally:
        c.close()
    assert httpx.get(f"{server.base}/healthz", timeout=10).status_code == 200
