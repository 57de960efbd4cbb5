"""The agent end to end on every backend: memories, summaries, transcript, tool rounds."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from langchain_core.messages import AIMessage
from langchain_core.messages.utils import count_tokens_approximately

from agent import Context, build_graph
from agent.namespaces import Owner
from memory.errors import ConflictError, NotFoundError
from memory.sessions import SessionManager
from memory.stores.factory import aopen_backends
from tests.scripted import ScriptedChatModel


@pytest.fixture
async def backends(backend_url: str) -> AsyncIterator:
    async with aopen_backends(backend_url) as opened:
        yield opened


def manager(backends, *, budget: int = 2000, model=None) -> SessionManager:
    graph = build_graph(backends.checkpointer, backends.store, chat_model=model)
    return SessionManager(graph, context=Context(token_budget=budget))


async def test_facts_carry_across_threads(backends, owner: Owner) -> None:
    sessions = manager(backends)
    first = await sessions.arun(
        owner, "first", [{"role": "user", "content": "My name is Sam. I'm allergic to penicillin."}]
    )
    assert [m["role"] for m in first.messages] == ["user", "assistant", "tool", "tool", "assistant"]
    keys = {m["key"] for m in await sessions.alist_memories(owner)}
    assert keys == {"name", "allergy-penicillin"}
    second = await sessions.arun(owner, "second", [{"role": "user", "content": "what is my name?"}])
    assert second.reply == "Your name is Sam."
    allergy = await sessions.arun(
        owner, "second", [{"role": "user", "content": "am I allergic to anything?"}]
    )
    assert "penicillin" in allergy.reply


async def test_semantic_search_ranks_the_relevant_fact_first(backends, owner: Owner) -> None:
    sessions = manager(backends)
    await sessions.asave_memory(owner, "shipping", "Prefers express shipping")
    await sessions.asave_memory(owner, "allergy", "Allergic to penicillin")
    await sessions.asave_memory(owner, "pet", "Has a dog called Rex")
    found = await sessions.alist_memories(owner, query="which medicine must I avoid?", limit=3)
    assert found[0]["key"] == "allergy"


async def test_other_users_see_nothing(backends, owner: Owner) -> None:
    sessions = manager(backends)
    await sessions.arun(owner, "mine", [{"role": "user", "content": "My name is Sam."}])
    other = Owner(owner.tenant, owner.user + "x")
    with pytest.raises(NotFoundError):
        await sessions.aget_messages(other, "mine")
    assert await sessions.alist_memories(other) == []
    reply = await sessions.arun(other, "mine", [{"role": "user", "content": "what is my name?"}])
    assert "Sam" not in reply.reply  # their own new thread of the same name, not ours
    items, total = await sessions.aget_messages(owner, "mine")
    assert total == 4 and items[0]["content"] == "My name is Sam."


async def test_long_thread_stays_bounded_and_transcript_complete(backends, owner: Owner) -> None:
    sessions = manager(backends, budget=300)
    turns = 40
    for i in range(turns):
        await sessions.arun(
            owner, "long", [{"role": "user", "content": f"message {i} " + "words " * 20}]
        )
    state = (await sessions.graph.aget_state(sessions.config(owner, "long"))).values
    assert count_tokens_approximately(state["messages"]) <= 300
    assert state["summary"].strip()
    assert state["transcript_len"] == 2 * turns
    seen = []
    for offset in range(0, 2 * turns, 7):
        page, total = await sessions.aget_messages(owner, "long", limit=7, offset=offset)
        assert total == 2 * turns
        seen += page
    assert [m["seq"] for m in seen] == list(range(2 * turns))
    assert seen[0]["content"].startswith("message 0 ")


async def test_tokens_sent_stay_within_budget(backends, owner: Owner) -> None:
    model = ScriptedChatModel()
    sessions = manager(backends, budget=400, model=model)
    for i in range(30):
        await sessions.arun(
            owner, "budget", [{"role": "user", "content": f"turn {i} " + "lorem " * 30}]
        )
    system_overhead = 200 + 400  # the system prompt, its summary, and retrieved memories
    assert max(model.prompt_tokens()) <= 400 + system_overhead
    assert model.summaries > 0


async def test_parallel_tool_calls_are_all_answered_and_recorded(backends, owner: Owner) -> None:
    calls = [
        {"id": "call_a", "name": "save_memory", "args": {"key": "name", "content": "Name is Ana"}},
        {
            "id": "call_b",
            "name": "save_memory",
            "args": {"key": "city", "content": "Lives in Porto", "scope": "session"},
        },
        {"id": "call_c", "name": "save_memory", "args": {"key": "bad key!", "content": "x"}},
    ]
    model = ScriptedChatModel(replies=[AIMessage("", tool_calls=calls), AIMessage("All set.")])
    sessions = manager(backends, model=model)
    result = await sessions.arun(
        owner, "tools", [{"role": "user", "content": "I'm Ana from Porto"}]
    )
    assert result.reply == "All set."
    tool_results = [m for m in result.messages if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in tool_results] == ["call_a", "call_b", "call_c"]
    assert tool_results[2]["status"] == "error"
    assert (await sessions.aget_memory(owner, "name"))["value"] == "Name is Ana"
    assert (await sessions.aget_memory(owner, "city", thread_id="tools"))[
        "value"
    ] == "Lives in Porto"
    with pytest.raises(NotFoundError):
        await sessions.aget_memory(owner, "city")  # session scope only


async def test_added_tool_exchange_round_trips(backends, owner: Owner) -> None:
    sessions = manager(backends)
    await sessions.acreate(owner, "records")
    total = await sessions.aadd_messages(
        owner,
        "records",
        [
            {"role": "user", "content": "Check my appointment"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"id": "call_1", "name": "check_appointment", "args": {"user_id": "123"}}
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": '{"time": "2pm"}'},
            {"role": "assistant", "content": "Your appointment is at 2pm."},
        ],
    )
    assert total == 4
    items, _ = await sessions.aget_messages(owner, "records", limit=10)
    assert items[1]["tool_calls"][0]["id"] == "call_1"
    assert items[2]["tool_call_id"] == "call_1"
    context = await sessions.arecent_context(owner, "records", max_messages=2)
    assert context.splitlines()[-1] == "assistant: Your appointment is at 2pm."
    follow = await sessions.arun(owner, "records", [{"role": "user", "content": "thanks"}])
    assert follow.messages[0]["seq"] == 4


async def test_session_scoped_cart_stays_in_its_thread(backends, owner: Owner) -> None:
    sessions = manager(backends)
    await sessions.arun(owner, "shop", [{"role": "user", "content": "Add a blue mug to my cart."}])
    cart = await sessions.arun(owner, "shop", [{"role": "user", "content": "What's in my cart?"}])
    assert "blue mug" in cart.reply
    elsewhere = await sessions.arun(
        owner, "other", [{"role": "user", "content": "What's in my cart?"}]
    )
    assert elsewhere.reply == "Your cart is empty."


async def test_end_saves_summary_and_blocks_runs(backends, owner: Owner) -> None:
    sessions = manager(backends)
    for text in ("I like green tea", "hello there"):
        await sessions.arun(owner, "ending", [{"role": "user", "content": text}])
    ended = await sessions.aend(owner, "ending")
    assert ended["status"] == "ended" and ended["summary_saved"]
    summary = await sessions.aget_memory(owner, "session-summary-ending")
    assert "hello there" in summary["value"]
    with pytest.raises(ConflictError):
        await sessions.arun(owner, "ending", [{"role": "user", "content": "again"}])


async def test_delete_removes_everything_of_the_thread(backends, owner: Owner) -> None:
    sessions = manager(backends)
    await sessions.arun(owner, "gone", [{"role": "user", "content": "Add a red pen to my cart."}])
    await sessions.adelete(owner, "gone")
    with pytest.raises(NotFoundError):
        await sessions.aget(owner, "gone")
    key = owner.thread_key("gone")
    assert await backends.checkpointer.aget_tuple({"configurable": {"thread_id": key}}) is None
    from agent import namespaces

    assert await backends.store.asearch(namespaces.transcript(key), limit=5) == []
    assert (
        await backends.store.asearch(namespaces.session_memories(owner.tenant, owner.user, key))
        == []
    )
    recreated = await sessions.arun(
        owner, "gone", [{"role": "user", "content": "What's in my cart?"}]
    )
    assert recreated.reply == "Your cart is empty."


async def test_replies_stream_token_by_token(backends, owner: Owner) -> None:
    sessions = manager(backends)
    await sessions.arun(owner, "s", [{"role": "user", "content": "My name is Sam."}])
    events = [
        e
        async for e in sessions.astream(
            owner, "s", [{"role": "user", "content": "what is my name?"}]
        )
    ]
    tokens = [text for kind, text in events if kind == "token"]
    assert len(tokens) > 2 and "".join(tokens) == "Your name is Sam."
    assert events[-1][0] == "done" and events[-1][1].reply == "Your name is Sam."


async def test_sessions_list_newest_first(backends, owner: Owner) -> None:
    sessions = manager(backends)
    for name in ("a", "b", "c"):
        await sessions.arun(owner, name, [{"role": "user", "content": "hi"}])
    await sessions.arun(owner, "a", [{"role": "user", "content": "again"}])
    items, total = await sessions.alist(owner, limit=2)
    assert total == 3 and [s["thread_id"] for s in items] == ["a", "c"]
    assert items[0]["counts"] == {"user": 2, "assistant": 2}


class _FailingOnceModel(ScriptedChatModel):
    failed: bool = False

    def _generate(self, messages, stop=None, run_manager=None, **kw):  # type: ignore[override]
        if not self.failed:
            self.failed = True
            raise RuntimeError("provider down")
        return super()._generate(messages, stop, run_manager, **kw)


async def test_failed_run_releases_the_thread_and_keeps_the_question(
    backends, owner: Owner
) -> None:
    sessions = manager(backends, model=_FailingOnceModel(replies=[AIMessage("back again")]))
    with pytest.raises(RuntimeError, match="provider down"):
        await sessions.arun(owner, "flaky", [{"role": "user", "content": "hello?"}])
    record = await sessions.aget(owner, "flaky")
    assert record["message_count"] == 1  # the question was recorded before the model failed
    reply = await sessions.arun(owner, "flaky", [{"role": "user", "content": "still there?"}])
    assert reply.reply == "back again"
    _, total = await sessions.aget_messages(owner, "flaky")
    assert total == 3


async def test_nul_characters_are_rejected_not_stored(backends, owner: Owner) -> None:
    from memory.errors import InvalidInputError

    sessions = manager(backends)
    with pytest.raises(InvalidInputError):
        await sessions.arun(owner, "nul", [{"role": "user", "content": "bad \x00 byte"}])
    await sessions.arun(owner, "nul", [{"role": "user", "content": "fine"}])
    items, _ = await sessions.aget_messages(owner, "nul")
    assert [m["content"] for m in items if m["role"] == "user"] == ["fine"]
