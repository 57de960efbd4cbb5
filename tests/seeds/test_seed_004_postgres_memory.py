"""Seed 004 ("Session Service", a GenAI platform's conversation and memory service) on
Postgres and on memory://.

The seed's service stores sessions per user, conversations with OpenAI-form tool calls and
their results, and model-managed key-value memories per user or per session; it ran in memory
by default and on Postgres in production. Its client's calls, in the seed's order ("Basic
Session Management", "Tool Call Messages", "Model-Managed Memory", "Complete Workflow", then
the deletes), and the HTTP calls that do the same here:

- `sessions.get_or_create(user_id)`: `GET /threads?status=active&limit=1`, else `POST /threads`
- `sessions.add_messages(session_id, [...])`: `POST /threads/{id}/messages` (user, assistant,
  system and tool messages; OpenAI `tool_calls` and `tool_call_id`; a result must answer a call)
- `sessions.get_messages(session_id, limit=20[, offset])`: `GET
  /threads/{id}/messages?limit=&offset=&format=openai` (`items` and `total`)
- `sessions.save_memory(user_id, key, value)`: `PUT /memories/{key}`; session-scoped:
  `PUT /threads/{id}/memories/{key}`
- `sessions.get_memory(user_id)`: `GET /memories` as a `{key: value}` dict
- `DeleteMemory`: `DELETE /memories/{key}`; `ClearUserMemory`: `DELETE /memories`
- `DeleteSession`: `DELETE /threads/{id}`

The user is the API key's (`patient-123`), so `user_id` is not sent with each call. The client
reads messages with `format=openai`: the OpenAI form it stored, which it sends to its model.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.plugins.server import Api
from tests.seeds.harness import fresh_tenant, ok, seed_api

TOOL_FLOW: list[dict[str, Any]] = [
    {"role": "user", "content": "Check my appointment"},
    {
        "role": "assistant",
        "tool_calls": [
            {
                "id": "call_123",
                "type": "function",
                "function": {"name": "check_appointment", "arguments": '{"user_id": "123"}'},
            }
        ],
    },
    {
        "role": "tool",
        "tool_call_id": "call_123",
        "content": '{"time": "2pm", "status": "confirmed"}',
    },
    {"role": "assistant", "content": "Your appointment is at 2pm."},
]


@pytest.fixture(params=["memory", "postgres"])
def platform_url(request: pytest.FixtureRequest) -> str:
    """In memory (the seed's default) or Postgres (its production storage)."""
    return "memory://" if request.param == "memory" else request.getfixturevalue("postgres_url")


async def _get_or_create(api: Api, user: str) -> str:
    page = ok(await api.request(user, "GET", "/threads?status=active&limit=1"))
    if page["items"]:
        return str(page["items"][0]["thread_id"])
    return str(ok(await api.request(user, "POST", "/threads"), 201)["thread_id"])


async def _add_messages(api: Api, user: str, session_id: str, messages: list[Any]) -> Any:
    url = f"/threads/{session_id}/messages"
    return ok(await api.request(user, "POST", url, json={"messages": messages}), 201)


async def _get_messages(
    api: Api, user: str, session_id: str, limit: int = 20, offset: int = 0
) -> tuple[list[dict[str, Any]], int]:
    url = f"/threads/{session_id}/messages?limit={limit}&offset={offset}&format=openai"
    page = ok(await api.request(user, "GET", url))
    return page["items"], page["total"]


async def _save_memory(api: Api, user: str, key: str, value: Any) -> None:
    ok(await api.request(user, "PUT", f"/memories/{key}", json={"value": value}))


async def _get_memory(api: Api, user: str) -> dict[str, Any]:
    page = ok(await api.request(user, "GET", "/memories?limit=100"))
    return {m["key"]: m["value"] for m in page["items"]}


async def test_seed_004_session_service(platform_url: str) -> None:
    tenant = fresh_tenant("genai")
    users = {"user": (tenant, "user-123"), "patient": (tenant, "patient-123")}
    async with seed_api(platform_url, users) as api:
        # Basic session management.
        session_id = await _get_or_create(api, "user")
        assert await _get_or_create(api, "user") == session_id
        greeting = [
            {"role": "user", "content": "Hello!"},
            {"role": "assistant", "content": "Hi there!"},
        ]
        assert (await _add_messages(api, "user", session_id, greeting))["total"] == 2
        messages, total = await _get_messages(api, "user", session_id, limit=20)
        assert total == 2 and messages == greeting

        # The complete tool call flow, stored and read back as it was sent.
        assert (await _add_messages(api, "user", session_id, TOOL_FLOW))["total"] == 6
        messages, total = await _get_messages(api, "user", session_id, limit=20)
        assert total == 6
        sent = [{"content": "", **m} for m in TOOL_FLOW]
        assert messages[2:] == sent
        page, total = await _get_messages(api, "user", session_id, limit=2, offset=3)
        assert [m["role"] for m in page] == ["assistant", "tool"] and total == 6
        assert page[1]["tool_call_id"] == page[0]["tool_calls"][0]["id"] == "call_123"
        # Linkage: a result for a call nobody made is refused, and nothing is stored.
        orphan = [{"role": "tool", "tool_call_id": "call_999", "content": "{}"}]
        url = f"/threads/{session_id}/messages"
        refused = await api.request("user", "POST", url, json={"messages": orphan})
        assert refused.status_code == 422 and "call_999" in refused.text
        assert (await _get_messages(api, "user", session_id))[1] == 6

        # Model-managed memory.
        await _save_memory(api, "patient", "allergies", ["penicillin"])
        await _save_memory(
            api, "patient", "medications", [{"name": "lisinopril", "dosage": "10mg"}]
        )
        memories = await _get_memory(api, "patient")
        assert memories == {
            "allergies": ["penicillin"],
            "medications": [{"name": "lisinopril", "dosage": "10mg"}],
        }
        assert await _get_memory(api, "user") == {}

        # The complete workflow of a healthcare assistant.
        patient_session = await _get_or_create(api, "patient")
        memories = await _get_memory(api, "patient")
        messages, _ = await _get_messages(api, "patient", patient_session, limit=20)
        system_prompt = (
            "You are a helpful medical assistant.\n"
            f"Patient allergies: {memories.get('allergies', [])}\n"
            f"Current medications: {memories.get('medications', [])}\n"
        )
        question = "Can I take amoxicillin?"
        context = [
            {"role": "system", "content": system_prompt},
            *messages,
            {"role": "user", "content": question},
        ]
        assert "penicillin" in context[0]["content"] and len(context) == 2
        reply = "Amoxicillin is a penicillin; please ask your doctor for an alternative."
        turn = [{"role": "user", "content": question}, {"role": "assistant", "content": reply}]
        assert (await _add_messages(api, "patient", patient_session, turn))["total"] == 2
        await _save_memory(api, "patient", "avoid", ["amoxicillin"])
        visit = {"value": {"reason": "allergy question"}}
        url = f"/threads/{patient_session}/memories/visit"
        assert ok(await api.request("patient", "PUT", url, json=visit))["scope"] == "session"
        assert set(await _get_memory(api, "patient")) == {"allergies", "medications", "avoid"}

        # Memories outlive the session: a new session of the same patient sees them.
        end = await api.request("patient", "POST", f"/threads/{patient_session}/end")
        assert end.status_code == 200
        next_session = await _get_or_create(api, "patient")
        assert next_session != patient_session
        assert (await _get_memory(api, "patient"))["allergies"] == ["penicillin"]

        # Deletes.
        gone = await api.request("patient", "DELETE", "/memories/medications")
        assert gone.status_code == 204
        assert "medications" not in await _get_memory(api, "patient")
        cleared = await api.request("patient", "DELETE", "/memories")
        assert cleared.status_code == 204 and await _get_memory(api, "patient") == {}
        assert (await api.request("user", "DELETE", f"/threads/{session_id}")).status_code == 204
        assert (await api.request("user", "GET", f"/threads/{session_id}")).status_code == 404
        assert await _get_or_create(api, "user") != session_id
