"""Seed 003 ("Session Management - Knowledge Router", a tenant-aware HR assistant) on Postgres.

The seed's `SessionService` keeps `chat_sessions` and `chat_messages` in Postgres per tenant
and user, resumes or creates a session on each chat, ends sessions (explicitly, or when
inactive for 24 hours) and turns a session of at least `MIN_MESSAGES_FOR_SUMMARY` (4) messages
into a long-term-memory summary. Its client's calls, in the seed's order, and the HTTP calls
that do the same here (the seed's own database, tenant `1` and user `1`):

- `POST /api/chat/` without `session_id`, then with it: `POST /chat` without, then with
  `thread_id` (a new UUID session, then the same one resumed)
- `create_session(tenant_id=1, user_id=1)`: `POST /threads`
- `get_session_info(id)`: `GET /threads/{id}` (`created_at`, `message_count`)
- `add_message_to_session(id, role, content, metadata)`: `POST /threads/{id}/messages`
  (activity updated)
- `get_conversation_history(id, limit=20)`: `GET /threads/{id}/messages?limit=20&offset=-20`
  (the newest 20, oldest first, with id, role, content, created_at, metadata)
- `get_active_sessions_for_user(user, tenant, limit=10)`: `GET /threads?status=active&limit=10`
  (newest activity first)
- `resume_or_create_session(session_id, ...)`: `POST /chat`; another user's id or an ended
  one is not resumed
- `end_session(id)`: `POST /threads/{id}/end`; a session of 4+ messages leaves its summary
  in the user's long-term memory (`processed_for_ltm`: `summary_saved`); unknown is 404
- `process_multiple_sessions(ids)`: concurrent `POST /threads/{id}/end`
- `cleanup_inactive_sessions(hours_inactive=24)`: the idle timeout (24 hours, the seed's
  `SESSION_TIMEOUT_HOURS`); no session idle that long is listed as active, and each one
  long enough leaves its summary
- `MAX_SESSIONS_PER_USER=20`: `MEMORY_AGENT_MAX_OPEN_SESSIONS=20`, the 21st open one is a 409
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from tests.plugins.server import Api
from tests.seeds.harness import move_clock, ok, seed_api

SETTINGS = {"idle_timeout_hours": 24, "max_open_sessions": 20, "min_messages_for_summary": 4}


async def _chat(api: Api, query: str, session_id: str | None = None, user: str = "user1") -> Any:
    body: dict[str, Any] = {"message": query}
    if session_id:
        body["thread_id"] = session_id
    return ok(await api.request(user, "POST", "/chat", json=body))


async def _add_message(
    api: Api, session_id: str, role: str, content: str, metadata: dict[str, Any]
) -> None:
    body = {"messages": [{"role": role, "content": content, "metadata": metadata}]}
    ok(await api.request("user1", "POST", f"/threads/{session_id}/messages", json=body), 201)


async def _info(api: Api, session_id: str) -> dict[str, Any]:
    return ok(await api.request("user1", "GET", f"/threads/{session_id}"))


async def _history(api: Api, session_id: str, limit: int = 20) -> list[dict[str, Any]]:
    url = f"/threads/{session_id}/messages?limit={limit}&offset=-{limit}"
    return ok(await api.request("user1", "GET", url))["items"]


async def _active(api: Api, limit: int = 10) -> list[str]:
    page = ok(await api.request("user1", "GET", f"/threads?status=active&limit={limit}"))
    return [t["thread_id"] for t in page["items"]]


async def _create(api: Api) -> str:
    return str(ok(await api.request("user1", "POST", "/threads"), 201)["thread_id"])


async def _end(api: Api, session_id: str) -> dict[str, Any]:
    return ok(await api.request("user1", "POST", f"/threads/{session_id}/end"))


async def test_seed_003_knowledge_router_sessions(fresh_postgres_url: str) -> None:
    users = {"user1": ("1", "1"), "user2": ("1", "2")}
    async with seed_api(fresh_postgres_url, users, **SETTINGS) as api:
        first = await _chat(api, "Szia! Mi a távmunka szabályzat?")
        chat_id = first["thread_id"]
        assert len(chat_id) == 36 and first["previous_thread_id"] is None
        second = await _chat(api, "És mennyi home office nap engedélyezett?", chat_id)
        assert second["thread_id"] == chat_id and second["previous_thread_id"] is None
        assert [m["seq"] for m in second["messages"]] == [2, 3]

        session_id = await _create(api)
        info = await _info(api, session_id)
        assert info["message_count"] == 0 and info["created_at"] == info["last_active_at"]

        await _add_message(api, session_id, "user", "Hány nap szabadság jár?", {"lang": "hu"})
        sources = {"sources": ["hr_policy.pdf"], "confidence": 0.92}
        await _add_message(api, session_id, "assistant", "Évente 20 nap szabadság jár.", sources)
        info = await _info(api, session_id)
        assert info["message_count"] == 2 and info["last_active_at"] > info["created_at"]

        history = await _history(api, session_id)
        assert [(m["role"], m["content"], m["metadata"]) for m in history] == [
            ("user", "Hány nap szabadság jár?", {"lang": "hu"}),
            ("assistant", "Évente 20 nap szabadság jár.", sources),
        ]
        assert all(m["id"] and m["created_at"] for m in history)
        assert history[0]["created_at"] <= history[1]["created_at"]

        assert await _active(api) == [session_id, chat_id]
        await _chat(api, "És ki hagyja jóvá?", chat_id)
        assert await _active(api) == [chat_id, session_id]
        assert await _active(api, limit=1) == [chat_id]

        # Another user of the tenant cannot resume user 1's session: theirs is their own.
        theirs = await _chat(api, "Szia!", chat_id, user="user2")
        assert theirs["messages"][0]["seq"] == 0
        assert (await _info(api, chat_id))["message_count"] == 6

        # Ending: the short session keeps no summary, the long one leaves it in memory.
        short = await _end(api, session_id)
        assert short["status"] == "ended" and "summary_saved" not in short
        long = await _end(api, chat_id)
        assert long["status"] == "ended" and long["summary_saved"] is True
        memory = ok(await api.request("user1", "GET", f"/memories/session-summary-{chat_id}"))
        assert "távmunka" in memory["content"]
        assert (await api.request("user1", "POST", "/threads/no-such/end")).status_code == 404
        assert await _active(api) == []

        # Resume-or-create on an ended session creates a new one.
        resumed = await _chat(api, "Még egy kérdés", chat_id)
        assert resumed["thread_id"] != chat_id and resumed["previous_thread_id"] == chat_id

        batch = [await _create(api) for _ in range(3)]
        ended = await asyncio.gather(*(_end(api, sid) for sid in batch))
        assert [e["status"] for e in ended] == ["ended"] * 3

        # cleanup_inactive_sessions: a day later, nothing idle is active, and the long
        # session that went idle left its summary.
        idle = await _create(api)
        for i in range(4):
            role = "user" if i % 2 == 0 else "assistant"
            await _add_message(api, idle, role, f"üzenet {i} a szabadságról", {})
        move_clock(api, timedelta(hours=24, minutes=1))
        assert await _active(api) == []
        page = ok(await api.request("user1", "GET", "/threads?status=ended&limit=100"))
        reasons = {t["thread_id"]: t.get("end_reason") for t in page["items"]}
        assert reasons[idle] == reasons[resumed["thread_id"]] == "idle"
        assert reasons[chat_id] is None and page["total"] == 7
        assert (
            await api.request("user1", "GET", f"/memories/session-summary-{idle}")
        ).status_code == 200

        # MAX_SESSIONS_PER_USER=20.
        for _ in range(20):
            await _create(api)
        over = await api.request("user1", "POST", "/threads")
        assert over.status_code == 409 and "20 open sessions" in over.json()["detail"]
        assert len(await _active(api, limit=100)) == 20
