"""Undo: the last N messages of a thread go from transcript, window and counts alike."""

from __future__ import annotations

from agent.namespaces import Owner
from tests.plugins.server import Api, fresh_id


async def _agree(api: Api, thread: str) -> tuple[list[str], list[str]]:
    """The transcript and the window, after checking that the counts and the state's
    transcript length agree with the transcript."""
    transcript = (await api.request("alice", "GET", f"/threads/{thread}/messages")).json()
    state = (await api.request("alice", "GET", f"/threads/{thread}/state")).json()
    detail = (await api.request("alice", "GET", f"/threads/{thread}")).json()
    said = [m["content"] for m in transcript["items"]]
    assert transcript["total"] == len(said) == sum(detail["analytics"]["message_counts"].values())
    assert state["transcript_len"] == len(said)
    return said, [m["content"] for m in state["messages"]]


async def test_undo_removes_whole_turns_everywhere(api: Api) -> None:
    thread = fresh_id("t")
    for text in ("My name is Sam.", "What is my name?", "hello"):
        assert (await api.run("alice", thread, text)).status_code == 200
    said, window = await _agree(api, thread)
    assert len(said) >= 6 and said[-2] == "hello"
    # Into the middle of a turn: refused, naming the count that fits; nothing removed.
    inside = await api.request("alice", "POST", f"/threads/{thread}/undo", json={"messages": 1})
    assert inside.status_code == 422 and "whole turns" in inside.json()["detail"]
    too_many = await api.request(
        "alice", "POST", f"/threads/{thread}/undo", json={"messages": len(said) + 1}
    )
    assert too_many.status_code == 422
    assert (await _agree(api, thread))[0] == said
    undone = await api.request("alice", "POST", f"/threads/{thread}/undo", json={"messages": 2})
    assert undone.status_code == 200, undone.text
    assert undone.json() == {"thread_id": thread, "removed": 2, "messages": len(said) - 2}
    after, window = await _agree(api, thread)
    assert after == said[:-2] and "hello" not in window and window[-1] == said[-3]
    # The thread goes on from there; the next run sees the same window.
    assert (await api.run("alice", thread, "again")).status_code == 200
    again, _ = await _agree(api, thread)
    assert again[:-2] == said[:-2] and again[-2] == "again"
    # Everything: an empty thread that still runs.
    everything = await api.request(
        "alice", "POST", f"/threads/{thread}/undo", json={"messages": len(again)}
    )
    assert everything.status_code == 200 and everything.json()["messages"] == 0
    assert await _agree(api, thread) == ([], [])
    assert (await api.request("bob", "POST", f"/threads/{thread}/undo", json={})).status_code == 404


async def test_undo_is_refused_while_a_run_is_active(api: Api) -> None:
    thread = fresh_id("t")
    assert (await api.run("alice", thread, "hello")).status_code == 200
    # A run's hold on the thread, as a run in another process takes it.
    sessions = api.app.state.sessions
    key = Owner(*api.owners["alice"]).thread_key(thread)
    assert await sessions.db.aacquire(key, "a-run", 30_000)
    try:
        refused = await api.request(
            "alice", "POST", f"/threads/{thread}/undo", json={"messages": 2}
        )
        assert refused.status_code == 409 and "run is active" in refused.json()["detail"]
    finally:
        await sessions.db.arelease(key, "a-run")
    assert len((await _agree(api, thread))[0]) == 2
    done = await api.request("alice", "POST", f"/threads/{thread}/undo", json={"messages": 2})
    assert done.status_code == 200 and done.json()["messages"] == 0


def test_the_python_api_undoes_whole_turns(owner: Owner) -> None:
    from agent import build_graph
    from memory.errors import InvalidInputError
    from memory.sessions import SessionManager
    from memory.stores import open_backends

    with open_backends("memory://") as backends:
        sessions = SessionManager(build_graph(backends.checkpointer, backends.store))
        for text in ("My name is Sam.", "hello"):
            sessions.run(owner, "t", [{"role": "user", "content": text}])
        _, total = sessions.get_messages(owner, "t")
        try:
            sessions.undo(owner, "t", messages=1)
        except InvalidInputError as exc:
            assert "whole turns" in str(exc)
        else:
            raise AssertionError("an undo into a turn was taken")
        assert sessions.undo(owner, "t", messages=2)["messages"] == total - 2
        items, left = sessions.get_messages(owner, "t")
        assert left == total - 2 and items[-1]["role"] == "assistant"
        _, snapshot = sessions.get_state(owner, "t")
        assert [m.content for m in snapshot.values["messages"]][-1] == items[-1]["content"]
