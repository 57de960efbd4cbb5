"""Native routes for the seeds' clients: status filter, newest messages, summary, appends."""

from __future__ import annotations

from typing import Any

from tests.plugins.server import Api, fresh_id


async def test_threads_filter_by_status(api: Api) -> None:
    ended, active = fresh_id("e"), fresh_id("a")
    for thread in (ended, active):
        assert (await api.run("alice", thread, "hello")).status_code == 200
    assert (await api.request("alice", "POST", f"/threads/{ended}/end")).status_code == 200
    page = (await api.request("alice", "GET", "/threads?status=active")).json()
    assert [t["thread_id"] for t in page["items"]] == [active] and page["total"] == 1
    page = (await api.request("alice", "GET", "/threads?status=ended")).json()
    assert [t["thread_id"] for t in page["items"]] == [ended]
    assert (await api.request("alice", "GET", "/threads?status=gone")).status_code == 422


async def test_newest_messages_without_knowing_the_total(api: Api) -> None:
    thread = fresh_id("t")
    for text in ("one", "two", "three"):
        assert (await api.run("alice", thread, text)).status_code == 200
    url = f"/threads/{thread}/messages"

    async def seqs(query: str) -> list[int]:
        response = await api.request("alice", "GET", f"{url}?{query}")
        assert response.status_code == 200, response.text
        assert response.json()["total"] == 6
        return [m["seq"] for m in response.json()["items"]]

    # desc lists newest first, `offset` skipping the newest; pages meet without overlap.
    newest = (await api.request("alice", "GET", f"{url}?limit=2&order=desc")).json()
    assert [m["seq"] for m in newest["items"]] == [5, 4]
    assert newest["items"][1]["content"] == "three"
    assert await seqs("limit=2&offset=2&order=desc") == [3, 2]
    assert await seqs("limit=2&offset=5&order=desc") == [0]
    assert await seqs("limit=2&offset=6&order=desc") == []
    # A negative offset counts from the other end, the page still in the order asked for.
    assert await seqs("limit=2&offset=-2") == [4, 5]
    assert await seqs("limit=10&offset=-3") == [3, 4, 5]
    assert await seqs("limit=2&offset=-3") == [3, 4]
    assert await seqs("limit=10&offset=-100") == [0, 1, 2, 3, 4, 5]
    assert await seqs("limit=2&offset=-2&order=desc") == [1, 0]
    assert await seqs("limit=10&offset=-100&order=desc") == [5, 4, 3, 2, 1, 0]
    assert await seqs("limit=100&order=desc") == [5, 4, 3, 2, 1, 0]
    assert (await api.request("alice", "GET", f"{url}?order=sideways")).status_code == 422


async def test_summary_can_be_read_and_replaced(api: Api) -> None:
    thread = fresh_id("t")
    assert (await api.run("alice", thread, "hello")).status_code == 200
    url = f"/threads/{thread}/summary"
    assert (await api.request("alice", "GET", url)).json() == {"thread_id": thread, "summary": ""}
    put = await api.request("alice", "PUT", url, json={"summary": "Sam likes tea."})
    assert put.status_code == 200 and put.json()["summary"] == "Sam likes tea."
    assert (await api.request("alice", "GET", url)).json()["summary"] == "Sam likes tea."
    assert (await api.request("bob", "GET", url)).status_code == 404
    assert (await api.request("alice", "PUT", url, json={"summary": 3})).status_code == 422


async def test_messages_are_appended_without_a_run(api: Api) -> None:
    thread = fresh_id("t")
    assert (
        await api.request("alice", "POST", "/threads", json={"thread_id": thread})
    ).status_code == 201
    body = {
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    }
    added = await api.request("alice", "POST", f"/threads/{thread}/messages", json=body)
    assert added.status_code == 201 and added.json() == {
        "thread_id": thread,
        "added": 2,
        "total": 2,
    }
    page = (await api.request("alice", "GET", f"/threads/{thread}/messages")).json()
    assert [(m["role"], m["content"]) for m in page["items"]] == [
        ("user", "hi"),
        ("assistant", "hello"),
    ]
    run = await api.run("alice", thread, "and now?")
    assert run.status_code == 200
    assert (await api.request("alice", "GET", f"/threads/{thread}/messages")).json()["total"] == 4
    missing = await api.request("alice", "POST", f"/threads/{fresh_id('x')}/messages", json=body)
    assert missing.status_code == 404


async def test_integers_beyond_64_bits_are_refused_before_anything_is_stored(api: Api) -> None:
    big = 2**63
    memory = await api.request("alice", "PUT", "/memories/big", json={"value": {"n": big}})
    assert memory.status_code == 422 and "64 bits" in memory.text
    thread = await api.request("alice", "POST", "/threads", json={"metadata": {"n": -big - 1}})
    assert thread.status_code == 422
    assert (await api.request("alice", "GET", "/memories/big")).status_code == 404
    fits = await api.request("alice", "PUT", "/memories/fits", json={"value": {"n": big - 1}})
    assert fits.status_code == 200 and fits.json()["value"] == {"n": big - 1}


async def test_chat_starts_a_new_session_when_the_one_asked_for_has_ended(api: Api) -> None:
    thread = fresh_id("t")
    first = await api.request("alice", "POST", "/chat", json={"thread_id": thread, "message": "hi"})
    assert first.status_code == 200 and first.json()["thread_id"] == thread
    assert first.json()["previous_thread_id"] is None
    assert (await api.request("alice", "POST", f"/threads/{thread}/end")).status_code == 200
    again = await api.request(
        "alice", "POST", "/chat", json={"thread_id": thread, "message": "back"}
    )
    assert again.status_code == 200
    body = again.json()
    assert body["thread_id"] != thread and body["previous_thread_id"] == thread
    assert "ended" in body["reason"]
    # An explicit run on the ended thread keeps its 409.
    assert (await api.run("alice", thread, "still?")).status_code == 409


_OPENAI_EXCHANGE: list[dict[str, Any]] = [
    {"role": "user", "content": "Add a cake to my cart", "metadata": {"channel": "web"}},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "add_to_cart", "arguments": '{"item": "cake", "qty": 1}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "added"},
    {"role": "assistant", "content": "Done: one cake."},
]


async def test_a_tool_exchange_in_openai_form_is_stored_and_returned(api: Api) -> None:
    thread = fresh_id("t")
    assert (
        await api.request("alice", "POST", "/threads", json={"thread_id": thread})
    ).status_code == 201
    added = await api.request(
        "alice", "POST", f"/threads/{thread}/messages", json={"messages": _OPENAI_EXCHANGE}
    )
    assert added.status_code == 201, added.text
    items = (await api.request("alice", "GET", f"/threads/{thread}/messages")).json()["items"]
    assert items[0]["metadata"] == {"channel": "web"}
    assert items[1]["tool_calls"] == [
        {"id": "call_1", "name": "add_to_cart", "args": {"item": "cake", "qty": 1}}
    ]
    assert items[2]["tool_call_id"] == "call_1" and items[2]["role"] == "tool"
    # The thread still runs: the exchange is a valid conversation for the model.
    assert (await api.run("alice", thread, "thanks")).status_code == 200


async def test_messages_are_read_back_in_openai_form(api: Api) -> None:
    thread = fresh_id("t")
    await api.request("alice", "POST", "/threads", json={"thread_id": thread})
    url = f"/threads/{thread}/messages"
    sent: list[dict[str, Any]] = [
        {"role": "system", "content": "Be brief.", "name": "policy"},
        *_OPENAI_EXCHANGE,
    ]
    assert (await api.request("alice", "POST", url, json={"messages": sent})).status_code == 201
    page = (await api.request("alice", "GET", f"{url}?format=openai")).json()
    # What was sent, without the per-message metadata an OpenAI API would refuse.
    assert page == {
        "items": [{k: v for k, v in m.items() if k != "metadata"} for m in sent],
        "total": 5,
    }
    newest = (await api.request("alice", "GET", f"{url}?format=openai&order=desc&limit=2")).json()
    assert newest["items"] == sent[3:][::-1]
    native = (await api.request("alice", "GET", f"{url}?limit=1")).json()["items"][0]
    assert set(native) == {"seq", "id", "role", "content", "created_at", "name"}
    assert (await api.request("alice", "GET", f"{url}?format=xml")).status_code == 422


async def test_a_tool_result_must_answer_an_earlier_call(api: Api) -> None:
    thread = fresh_id("t")
    await api.request("alice", "POST", "/threads", json={"thread_id": thread})
    url = f"/threads/{thread}/messages"
    orphan = {"messages": [{"role": "tool", "tool_call_id": "nope", "content": "x"}]}
    refused = await api.request("alice", "POST", url, json=orphan)
    assert refused.status_code == 422 and "nope" in refused.text
    twice = {"messages": [*_OPENAI_EXCHANGE[:3], _OPENAI_EXCHANGE[2]]}
    assert (await api.request("alice", "POST", url, json=twice)).status_code == 422
    bad_args = [
        {
            "role": "assistant",
            "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{not json"}}],
        }
    ]
    refused = await api.request("alice", "POST", url, json={"messages": bad_args})
    assert refused.status_code == 422 and "arguments" in refused.text
    assert (await api.request("alice", "GET", url)).json()["total"] == 0
    # A result may answer a call stored by an earlier request.
    call = {"messages": _OPENAI_EXCHANGE[:2]}
    assert (await api.request("alice", "POST", url, json=call)).status_code == 201
    answer = {"messages": [_OPENAI_EXCHANGE[2]]}
    assert (await api.request("alice", "POST", url, json=answer)).status_code == 201
