"""Application tools a person approves (`MEMORY_AGENT_APPROVE_TOOLS`): the built-in agent
pauses before their calls with LangChain's human-in-the-loop request, and the decisions
approve, edit or reject them. Over `/langgraph` on every backend, with a scripted model."""

from __future__ import annotations

import json
from typing import Any

from langchain_core.messages import AIMessage, ToolMessage

from tests.plugins.server import Api, ApiFactory, fresh_id
from tests.scripted import ScriptedChatModel

LG = "/langgraph"


def _model() -> ScriptedChatModel:
    call = {"name": "order_status", "args": {"order_id": "A-1"}, "id": "call-1"}
    return ScriptedChatModel(replies=[AIMessage("", tool_calls=[call]), AIMessage("done")])


async def _ask(api: Api, tid: str) -> dict[str, Any]:
    body = {
        "assistant_id": "agent",
        "input": {"messages": [{"role": "user", "content": "where is my order?"}]},
        "if_not_exists": "create",
    }
    response = await api.request("alice", "POST", f"{LG}/threads/{tid}/runs/wait", json=body)
    assert response.status_code == 200, response.text
    (pause,) = response.json()["__interrupt__"]
    return pause["value"]


async def _answer(api: Api, tid: str, *decisions: Any) -> dict[str, Any]:
    body = {"assistant_id": "agent", "command": {"resume": {"decisions": list(decisions)}}}
    response = await api.request("alice", "POST", f"{LG}/threads/{tid}/runs/wait", json=body)
    assert response.status_code == 200, response.text
    assert "__interrupt__" not in response.json()
    return response.json()


def _settings() -> dict[str, Any]:
    return {"tools": "tests.owngraph:TOOLS", "approve_tools": "order_status"}


async def test_an_approved_call_runs(make_api: ApiFactory) -> None:
    model = _model()
    async with make_api(chat_model=model, **_settings()) as api:
        tid = fresh_id("approve")
        request = await _ask(api, tid)
        assert request["action_requests"] == [
            {
                "name": "order_status",
                "args": {"order_id": "A-1"},
                "description": "order_status waits for approval",
            }
        ]
        assert request["review_configs"] == [
            {"action_name": "order_status", "allowed_decisions": ["approve", "edit", "reject"]}
        ]
        thread = (await api.request("alice", "GET", f"{LG}/threads/{tid}")).json()
        assert thread["status"] == "interrupted"
        values = await _answer(api, tid, {"type": "approve"})
        assert [m["type"] for m in values["messages"]] == ["human", "ai", "tool", "ai"]
        assert values["messages"][2]["content"] == "two croissants, ready at 9:00"
        page = (await api.request("alice", "GET", f"/threads/{tid}/messages")).json()
        assert [m["role"] for m in page["items"]] == ["user", "assistant", "tool", "assistant"]
        assert (await api.request("alice", "GET", f"{LG}/threads/{tid}")).json()["status"] == "idle"


async def test_an_edited_call_runs_with_the_new_arguments(make_api: ApiFactory) -> None:
    model = _model()
    async with make_api(chat_model=model, **_settings()) as api:
        tid = fresh_id("approve")
        await _ask(api, tid)
        edit = {
            "type": "edit",
            "edited_action": {"name": "order_status", "args": {"order_id": "B-2"}},
        }
        values = await _answer(api, tid, edit)
        assert values["messages"][2]["content"] == "no order B-2"
        # The model's next prompt holds the call as it ran, with its result.
        seen = model.prompts[-1]
        call = next(m for m in seen if isinstance(m, AIMessage) and m.tool_calls)
        assert call.tool_calls[0]["args"] == {"order_id": "B-2"}


async def test_a_rejected_call_does_not_run_and_the_model_reads_why(make_api: ApiFactory) -> None:
    model = _model()
    async with make_api(chat_model=model, **_settings()) as api:
        tid = fresh_id("approve")
        await _ask(api, tid)
        values = await _answer(api, tid, {"type": "reject", "message": "not now"})
        result = values["messages"][2]
        assert result["status"] == "error"
        assert result["content"] == "error: order_status was not run: the user rejected it: not now"
        seen = [m for m in model.prompts[-1] if isinstance(m, ToolMessage)]
        assert seen and "not now" in str(seen[-1].content)

        tid = fresh_id("approve")
        model.replies[:] = _model().replies
        await _ask(api, tid)
        values = await _answer(api, tid, {"type": "maybe"})
        assert "not understood" in values["messages"][2]["content"]


async def test_an_answer_with_empty_input_as_agent_chat_ui_sends_it(make_api: ApiFactory) -> None:
    # agent-chat-ui's card submits `input: {}` beside the command; `{}` is no input.
    async with make_api(chat_model=_model(), **_settings()) as api:
        tid = fresh_id("approve")
        await _ask(api, tid)
        body = {
            "assistant_id": "agent",
            "input": {},
            "command": {"resume": {"decisions": [{"type": "approve"}]}},
        }
        response = await api.request("alice", "POST", f"{LG}/threads/{tid}/runs/wait", json=body)
        assert response.status_code == 200, response.text
        assert response.json()["messages"][2]["content"] == "two croissants, ready at 9:00"
        # Without a command or a checkpoint, `{}` is still no message to answer.
        body = {"assistant_id": "agent", "input": {}}
        response = await api.request("alice", "POST", f"{LG}/threads/{tid}/runs/wait", json=body)
        assert response.status_code == 422
        assert "input is required" in response.text


async def test_the_native_api_shows_the_pause_and_answers_it(make_api: ApiFactory) -> None:
    model = _model()
    async with make_api(chat_model=model, **_settings()) as api:
        tid = fresh_id("native")
        path = f"/threads/{tid}/runs"
        paused = await api.request("alice", "POST", path, json={"message": "where is my order?"})
        assert paused.status_code == 200, paused.text
        (pending,) = paused.json()["interrupts"]
        assert pending["value"]["action_requests"][0]["name"] == "order_status"
        thread = (await api.request("alice", "GET", f"{LG}/threads/{tid}")).json()
        assert thread["status"] == "interrupted"
        # The pause, as the native state and the LangGraph thread show it (by task id).
        state = (await api.request("alice", "GET", f"/threads/{tid}/state")).json()
        assert state["interrupts"] == [pending] and state["next"] == ["save_memories"]
        ((task_id, shown),) = thread["interrupts"].items()
        assert [{"id": i["id"], "value": i["value"]} for i in shown] == [pending]
        lg_state = (await api.request("alice", "GET", f"{LG}/threads/{tid}/state")).json()
        assert [t["id"] for t in lg_state["tasks"]] == [task_id]
        # Another user cannot answer it; a message and an answer at once is a 422.
        theirs = await api.request("bob", "POST", path, json={"resume": {"decisions": []}})
        assert theirs.status_code == 404, theirs.text
        assert (await api.request("alice", "GET", f"{LG}/threads/{tid}")).json()["status"] == (
            "interrupted"
        )
        both = {"message": "hi", "resume": {"decisions": [{"type": "approve"}]}}
        refused = await api.request("alice", "POST", path, json=both)
        assert refused.status_code == 422 and "resume" in str(refused.json()["detail"])
        # The answer, streamed: the tool runs and the reply comes.
        answer = {"resume": {"decisions": [{"type": "approve"}]}}
        streamed = await api.request("alice", "POST", f"{path}/stream", json=answer)
        assert streamed.status_code == 200, streamed.text
        (done,) = [b for b in streamed.text.split("\n\n") if b.startswith("event: done")]
        result = json.loads(done.split("data: ", 1)[1].split("\n", 1)[0])
        assert result["interrupts"] == [] and result["reply"] == "done"
        page = (await api.request("alice", "GET", f"/threads/{tid}/messages")).json()
        assert [m["role"] for m in page["items"]] == ["user", "assistant", "tool", "assistant"]
        assert page["items"][2]["content"] == "two croissants, ready at 9:00"
        assert page["items"][3]["content"] == "done"
        thread = (await api.request("alice", "GET", f"{LG}/threads/{tid}")).json()
        assert thread["status"] == "idle" and thread["interrupts"] == {}
        state = (await api.request("alice", "GET", f"/threads/{tid}/state")).json()
        assert state["interrupts"] == []
        again = await api.request("alice", "POST", path, json=answer)
        assert again.status_code == 409 and "not waiting" in again.json()["detail"]
        chat = await api.request("alice", "POST", "/chat", json={"resume": 1})
        assert chat.status_code == 422 and "thread_id" in chat.json()["detail"]
