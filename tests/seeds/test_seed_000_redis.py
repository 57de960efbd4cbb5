"""Seed 000 ("Session Management Module", a bakery RAG backend's `session.py`) on Redis.

The seed's `SessionManager` keeps each session in Redis under `session:{session_id}`: its
messages (`role`, `text`, `timestamp`), a `summary`, `created_at` and `last_updated`. Its
client's calls, in the seed's order, and the HTTP calls that do the same here:

- `create_session("session_123")`: `POST /threads {"thread_id": "session_123"}`
- `add_message(session_id, role, text)`: `POST /threads/{id}/messages` (no model run)
- `get_conversation_context(session_id)`: `GET /threads/{id}/messages?limit=N&offset=-N`,
  formatted as `role: text` lines by the client, as the seed's method does
- `get_session(session_id)`: `GET /threads/{id}` (times, summary) with its messages
- `get_recent_messages(session_id, max_messages)`: `GET /threads/{id}/messages?limit=N&offset=-N`
- `update_summary(session_id, summary)` / `get_summary(session_id)`: `PUT` / `GET
  /threads/{id}/summary`
- "sessions persist across API calls": a second server process on the same Redis reads them
- `clear_session(session_id)`: `DELETE /threads/{id}`

The seed's `text` is `content` here, `timestamp` is `created_at`, `last_updated` is
`last_active_at`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tests.plugins.server import Api
from tests.seeds.harness import fresh_tenant, ok, seed_api

SESSION = "session_123"
SUMMARY = f"/threads/{SESSION}/summary"


async def _add_message(api: Api, session_id: str, role: str, text: str) -> dict[str, Any]:
    body = {"messages": [{"role": role, "content": text}]}
    return ok(
        await api.request("bakery", "POST", f"/threads/{session_id}/messages", json=body), 201
    )


async def _recent(api: Api, session_id: str, max_messages: int) -> list[dict[str, Any]]:
    url = f"/threads/{session_id}/messages?limit={max_messages}&offset=-{max_messages}"
    return ok(await api.request("bakery", "GET", url))["items"]


async def _context(api: Api, session_id: str) -> str:
    return "\n".join(f"{m['role']}: {m['content']}" for m in await _recent(api, session_id, 10))


async def test_seed_000_session_manager_on_redis(redis_url: str) -> None:
    users = {"bakery": (fresh_tenant("bakery"), "customer")}
    async with seed_api(redis_url, users) as api:
        created = ok(
            await api.request("bakery", "POST", "/threads", json={"thread_id": SESSION}), 201
        )
        assert created["thread_id"] == SESSION and created["status"] == "active"
        assert created["message_count"] == 0

        first = await _add_message(api, SESSION, "user", "What are your hours?")
        second = await _add_message(api, SESSION, "assistant", "We are open 8am-8pm M-F")
        assert (first["added"], first["total"]) == (1, 1)
        assert (second["added"], second["total"]) == (1, 2)

        assert await _context(api, SESSION) == (
            "user: What are your hours?\nassistant: We are open 8am-8pm M-F"
        )

        session = ok(await api.request("bakery", "GET", f"/threads/{SESSION}"))
        assert session["summary"] == "" and session["message_count"] == 2
        messages = await _recent(api, SESSION, 50)
        assert [(m["role"], m["content"]) for m in messages] == [
            ("user", "What are your hours?"),
            ("assistant", "We are open 8am-8pm M-F"),
        ]
        stamps = [datetime.fromisoformat(m["created_at"]) for m in messages]
        assert stamps == sorted(stamps)
        assert session["created_at"] <= session["last_active_at"]
        assert datetime.fromisoformat(session["last_active_at"]) >= stamps[-1]

        await _add_message(api, SESSION, "user", "Hello")
        await _add_message(api, SESSION, "assistant", "Hi there!")
        assert [m["content"] for m in await _recent(api, SESSION, 1)] == ["Hi there!"]
        assert [m["content"] for m in await _recent(api, SESSION, 3)] == [
            "We are open 8am-8pm M-F",
            "Hello",
            "Hi there!",
        ]

        summary = {"summary": "Conversation about bakery hours"}
        put = ok(await api.request("bakery", "PUT", SUMMARY, json=summary))
        assert put["summary"] == summary["summary"]
        assert ok(await api.request("bakery", "GET", SUMMARY)) == {"thread_id": SESSION, **summary}

    # Another server process on the same Redis: the session is all there.
    async with seed_api(redis_url, users) as api:
        session = ok(await api.request("bakery", "GET", f"/threads/{SESSION}"))
        assert session["summary"] == "Conversation about bakery hours"
        assert session["message_count"] == 4
        assert [m["content"] for m in await _recent(api, SESSION, 2)] == ["Hello", "Hi there!"]

        assert (await api.request("bakery", "DELETE", f"/threads/{SESSION}")).status_code == 204
        for url in (f"/threads/{SESSION}", f"/threads/{SESSION}/messages", SUMMARY):
            assert (await api.request("bakery", "GET", url)).status_code == 404
        # A cleared id starts again from nothing.
        again = ok(
            await api.request("bakery", "POST", "/threads", json={"thread_id": SESSION}), 201
        )
        assert again["message_count"] == 0
        assert ok(await api.request("bakery", "GET", SUMMARY))["summary"] == ""
        assert await _recent(api, SESSION, 10) == []
