"""The API does what `/openapi.json` says, on every backend: each defect a schema-driven
fuzzer found, as its own request.

- `DELETE` answers 204 with no body on every native route;
- wrongly typed integers and booleans (`1.0`, `1e3` or `true` in a query, fractions,
  strings and booleans in a body, `1`/`yes` for a query boolean) are 422, what clients send
  (`20`, `-5`, `true`) is not;
- a tool result for a call that already has one, or a call id made twice, is 422 naming it;
- event streams are documented as `text/event-stream` with a schema of their events;
- every body and parameter the schema declares valid is one the server takes (namespace
  labels, message lists, query parameters that cannot be null);
- a database call abandoned by a cancelled request leaves no "Task exception was never
  retrieved" in the log.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

from memory.settings import Settings
from memory.stores.outages import observe, within
from server.app import create_app
from tests.plugins.server import Api, fresh_id

DOCUMENT = create_app(Settings(database_url="memory://", embeddings="none")).openapi()

_CALL = {
    "role": "assistant",
    "content": "",
    "tool_calls": [{"id": "call-1", "name": "lookup", "args": {"q": "x"}}],
}
_RESULT = {"role": "tool", "tool_call_id": "call-1", "content": "found"}


async def _thread(api: Api) -> str:
    thread = fresh_id("t")
    assert (await api.request("alice", "POST", "/threads", json={"thread_id": thread})).status_code
    return thread


# -- DELETE ----------------------------------------------------------------------------------


def test_every_native_delete_documents_204_and_no_other_success() -> None:
    deletes = [
        (path, ops["delete"]["responses"])
        for path, ops in DOCUMENT["paths"].items()
        if "delete" in ops and not path.startswith("/langgraph")
    ]
    assert len(deletes) == 6
    for path, responses in deletes:
        assert [c for c in responses if c.startswith("2")] == ["204"], path
        assert "content" not in responses["204"], path


async def test_delete_answers_204_with_no_body_on_every_native_route(api: Api) -> None:
    thread = await _thread(api)
    for path in (f"/threads/{thread}/memories/a", "/memories/a"):
        assert (await api.request("alice", "PUT", path, json={"value": 1})).status_code == 200
    for path in (
        f"/threads/{thread}/memories/a",
        f"/threads/{thread}/memories",
        "/memories/a",
        "/memories",
        f"/threads/{thread}",
        "/users/me",
    ):
        response = await api.request("alice", "DELETE", path)
        assert (response.status_code, response.content) == (204, b""), path


# -- strict integers and booleans ----------------------------------------------------------


@pytest.mark.parametrize("value", ["1.0", "1e3", "true", "+5", "1_000", " 5", "0x10"])
async def test_a_query_integer_that_is_not_decimal_digits_is_422(api: Api, value: str) -> None:
    thread = await _thread(api)
    for path, name in (
        (f"/threads/{thread}/messages", "offset"),
        (f"/threads/{thread}/messages", "limit"),
        ("/threads", "offset"),
        (f"/threads/{thread}/history", "offset"),
        ("/memories", "limit"),
        (f"/langgraph/threads/{thread}/runs", "offset"),
    ):
        response = await api.request("alice", "GET", path, params={name: value})
        assert response.status_code == 422, (path, name, value, response.text)
        assert response.json()["detail"][0]["loc"] == ["query", name]


async def test_query_integers_and_booleans_as_clients_write_them_work(api: Api) -> None:
    thread = await _thread(api)
    for params in ({"offset": "5", "limit": "20"}, {"offset": "-5"}, {"offset": "05"}):
        response = await api.request("alice", "GET", f"/threads/{thread}/messages", params=params)
        assert response.status_code == 200, (params, response.text)
    state = f"/langgraph/threads/{thread}/state"
    # Under /langgraph, `1` and `0` too, as the SDKs send some flags.
    for value in ("true", "false", "1", "0"):
        response = await api.request("alice", "GET", state, params={"subgraphs": value})
        assert response.status_code == 200, response.text
    for value in ("yes", "on", "True", "2"):
        response = await api.request("alice", "GET", state, params={"subgraphs": value})
        assert response.status_code == 422, (value, response.text)


@pytest.mark.parametrize("value", [False, True, 2.5, "5", "1e3", None])
async def test_a_body_offset_that_is_not_a_json_integer_is_422(api: Api, value: Any) -> None:
    # `1.0` is an integer to JSON Schema (and to the schema served), so it is taken as 1.
    for path, body in (
        ("/langgraph/store/items/search", {"namespace_prefix": []}),
        ("/langgraph/store/namespaces", {}),
        ("/langgraph/threads/search", {}),
        ("/langgraph/assistants/search", {}),
    ):
        response = await api.request("alice", "POST", path, json={**body, "offset": value})
        assert response.status_code == 422, (path, value, response.text)
        assert response.json()["detail"][0]["loc"] == ["body", "offset"], response.text
        for offset in (1, 1.0):
            response = await api.request("alice", "POST", path, json={**body, "offset": offset})
            assert response.status_code == 200, (path, response.text)


@pytest.mark.parametrize("value", [False, True, "5", "1e3", -1])
async def test_a_store_ttl_that_is_not_a_number_of_minutes_is_422(api: Api, value: Any) -> None:
    item = {"namespace": ["notes"], "key": "k", "value": {"a": 1}}
    response = await api.request(
        "alice", "PUT", "/langgraph/store/items", json={**item, "ttl": value}
    )
    assert response.status_code == 422, (value, response.text)
    assert response.json()["detail"][0]["loc"] == ["body", "ttl"]
    for ttl in (5, 1.5, None):  # what langgraph-sdk sends, and LangGraph's `number`
        response = await api.request(
            "alice", "PUT", "/langgraph/store/items", json={**item, "ttl": ttl}
        )
        assert response.status_code == 204, (ttl, response.text)


# -- tool results --------------------------------------------------------------------------


async def test_a_second_result_for_a_tool_call_is_422_naming_the_call(api: Api) -> None:
    thread = await _thread(api)
    url = f"/threads/{thread}/messages"
    first = await api.request("alice", "POST", url, json={"messages": [_CALL, _RESULT]})
    assert first.status_code == 201, first.text
    again = await api.request("alice", "POST", url, json={"messages": [_RESULT]})
    assert again.status_code == 422, again.text
    assert "'call-1'" in again.text and "already has a result" in again.text
    remade = await api.request("alice", "POST", url, json={"messages": [_CALL]})
    assert remade.status_code == 422 and "'call-1'" in remade.text, remade.text
    assert (await api.request("alice", "GET", url)).json()["total"] == 2


async def test_a_run_repeating_a_tool_exchange_of_the_thread_is_422(api: Api) -> None:
    thread = await _thread(api)
    url = f"/threads/{thread}/messages"
    assert (await api.request("alice", "POST", url, json={"messages": [_CALL, _RESULT]})).is_success
    run = await api.request(
        "alice",
        "POST",
        f"/langgraph/threads/{thread}/runs/wait",
        json={
            "assistant_id": "agent",
            "input": {
                "messages": [
                    {
                        "type": "ai",
                        "content": "",
                        "tool_calls": [{"id": "call-1", "name": "lookup", "args": {}}],
                    },
                    {"type": "tool", "tool_call_id": "call-1", "content": "again"},
                    {"type": "human", "content": "and now?"},
                ]
            },
        },
    )
    assert run.status_code == 422, run.text
    assert "'call-1'" in run.text
    assert (await api.request("alice", "GET", url)).json()["total"] == 2


# -- the schema says what the server takes -------------------------------------------------


def _schema(name: str) -> dict[str, Any]:
    return DOCUMENT["components"]["schemas"][name]


def test_event_streams_are_documented_as_text_event_stream_with_their_events() -> None:
    streams = [
        (path, method, op["responses"]["200"]["content"])
        for path, ops in DOCUMENT["paths"].items()
        for method, op in ops.items()
        if "text/event-stream" in op["responses"].get("200", {}).get("content", {})
    ]
    assert len(streams) == 6
    assert ("/langgraph/runs/stream", "post") in {(p, m) for p, m, _ in streams}
    for path, method, content in streams:
        assert list(content) == ["text/event-stream"], (method, path)
        events = content["text/event-stream"]["itemSchema"]
        assert events["type"] == "object" and set(events["required"]) == {"event", "data", "id"}


def test_no_query_parameter_is_documented_as_null() -> None:
    for path, ops in DOCUMENT["paths"].items():
        for method, op in ops.items():
            for param in op.get("parameters", []):
                assert "null" not in str(param["schema"]), (method, path, param["name"])


# -- the log ---------------------------------------------------------------------------------


async def test_a_call_abandoned_by_its_caller_leaves_no_unretrieved_exception() -> None:
    """A request cancelled (its client gone) while a database call fails as it is cancelled:
    nothing reaches the loop's "exception was never retrieved" report."""
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    entered = asyncio.Event()

    async def driver_call() -> None:
        entered.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            raise RuntimeError("connection closed while cancelling") from None

    try:
        request = asyncio.ensure_future(within(driver_call(), 30))
        await entered.wait()
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
        ended = observe(asyncio.ensure_future(_fails()))  # a task nobody awaits
        await asyncio.sleep(0.05)
        assert ended.done()
        del request, ended
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(previous)
    assert not reported, reported


async def _fails() -> None:
    raise RuntimeError("a background task's own failure")
