"""Seed 001 ("Session Management Layer", PropertyEngine's knowledge-base backend) on memory://.

The seed's `SessionManager` keeps sessions in Firestore with an in-memory fallback; each
session holds the user's details, its messages (`role`, `content`, `timestamp`, metadata) and
counters, and expires after 2 hours without activity. Its client's calls, in the seed's order
("Session Lifecycle": login, chat message, agent response, history, timeout), and the HTTP
calls that do the same here (`MEMORY_AGENT_IDLE_TIMEOUT_HOURS=2`):

- `create_session(user_info)`: `POST /threads {"metadata": user_info}`, a UUID id back
- `add_message(session_id, role, content, metadata)`: `POST /threads/{id}/messages` with
  the message's `metadata`, user question then agent response, turn after turn
- `get_history(session_id, limit=5)`: `GET /threads/{id}/messages?limit=5&offset=-5`
- `get_session(session_id)`: `GET /threads/{id}` (user info, message count, status, summary)
- `get_active_sessions()`: `GET /threads?status=active` (its `total`)
- session timeout, then `clear_expired_sessions()`: the server's sweeper ends idle sessions
  by itself (`MEMORY_AGENT_SWEEP_INTERVAL_SECONDS`); `GET /threads?status=ended` lists them
- "Session Recovery": `get_session` of an expired or unknown id finds no live session, so
  `create_session(user_info)` again; `POST /chat` with the expired id does the same in one call
  and names the old id and the reason
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from tests.plugins.server import Api
from tests.seeds.harness import move_clock, ok, seed_api

USER_INFO = {
    "user_email": "melville.duplessis@betterhome.co.za",
    "user_name": "Melville du Plessis",
    "company": "Betterhome",
    "division": "Property Management",
    "user_type": "agent",
}
TURNS = [
    ("What does erf size mean?", "Erf size is the registered land area of a property.", 0.85),
    ("Is it the same as floor area?", "No: floor area measures the building only.", 0.9),
    ("Where do I find it?", "On the title deed and the municipal valuation.", 0.8),
]


async def _create_session(api: Api, user_info: dict[str, Any]) -> str:
    created = ok(await api.request("agent", "POST", "/threads", json={"metadata": user_info}), 201)
    assert created["metadata"] == user_info and created["status"] == "active"
    return str(created["thread_id"])


async def _add_message(
    api: Api, session_id: str, role: str, content: str, metadata: dict[str, Any]
) -> bool:
    body = {"messages": [{"role": role, "content": content, "metadata": metadata}]}
    response = await api.request("agent", "POST", f"/threads/{session_id}/messages", json=body)
    return response.status_code == 201


async def _get_history(api: Api, session_id: str, limit: int) -> list[dict[str, Any]]:
    url = f"/threads/{session_id}/messages?limit={limit}&offset=-{limit}"
    return ok(await api.request("agent", "GET", url))["items"]


async def _get_session(api: Api, session_id: str) -> dict[str, Any] | None:
    """The seed's `get_session`: None for an unknown or expired session."""
    response = await api.request("agent", "GET", f"/threads/{session_id}")
    if response.status_code == 404:
        return None
    session = ok(response)
    return session if session["status"] == "active" else None


async def _count(api: Api, status: str) -> int:
    return int(ok(await api.request("agent", "GET", f"/threads?status={status}"))["total"])


async def test_seed_001_session_lifecycle_on_memory() -> None:
    users = {"agent": ("betterhome", "melville-duplessis")}
    settings = {"idle_timeout_hours": 2, "sweep_interval_seconds": 0.1}
    async with seed_api("memory://", users, **settings) as api:
        session_id = await _create_session(api, USER_INFO)
        for query, answer, confidence in TURNS:
            assert await _add_message(api, session_id, "user", query, {"channel": "web"})
            meta = {"confidence": confidence, "collections_used": ["property_docs"]}
            assert await _add_message(api, session_id, "assistant", answer, meta)

        history = await _get_history(api, session_id, limit=5)
        assert len(history) == 5
        assert [m["content"] for m in history[-2:]] == [TURNS[2][0], TURNS[2][1]]
        assert history[-1]["metadata"] == {"confidence": 0.8, "collections_used": ["property_docs"]}
        assert history[-2]["metadata"] == {"channel": "web"} and history[-2]["role"] == "user"
        assert all(m["created_at"] for m in history)

        session = await _get_session(api, session_id)
        assert session is not None
        assert session["metadata"] == USER_INFO and session["message_count"] == 6
        assert session["analytics"]["message_counts"] == {"user": 3, "assistant": 3}
        assert session["summary"] == ""

        other = await _create_session(api, {**USER_INFO, "division": "Sales"})
        assert await _count(api, "active") == 2
        # The client's own id for a session it never created: nothing to resume.
        assert await _get_session(api, "no-such-session") is None

        # Two hours pass without activity; the sweeper ends both sessions on its own.
        move_clock(api, timedelta(hours=2, minutes=1))
        sweeper = asyncio.create_task(_sweep_until_ended(api, 2))
        assert await asyncio.wait_for(sweeper, timeout=20) == 2
        assert await _count(api, "active") == 0
        assert await _get_session(api, session_id) is None
        expired = ok(await api.request("agent", "GET", f"/threads/{session_id}"))
        assert expired["end_reason"] == "idle"
        # What the session said is still there to read.
        assert len(await _get_history(api, session_id, limit=20)) == 6

        # Session recovery, the seed's way: no live session, so a new one for the same user.
        recovered = await _create_session(api, USER_INFO)
        assert recovered not in (session_id, other)
        assert await _add_message(api, recovered, "user", "What does erf size mean?", {})
        assert await _count(api, "active") == 1

        # And in one call: a chat on the expired id starts a new session and says so.
        chat = ok(
            await api.request(
                "agent",
                "POST",
                "/chat",
                json={"thread_id": other, "message": "What does erf size mean?"},
            )
        )
        assert chat["previous_thread_id"] == other and chat["thread_id"] != other
        assert "expired" in chat["reason"] and chat["reply"]
        assert await _count(api, "active") == 2


async def _sweep_until_ended(api: Api, expected: int) -> int:
    """Wait for the server's sweeper (not a read, which would expire sessions too) to end
    `expected` sessions; `GET /threads?status=ended` lists ended ones without expiring any."""
    while (ended := await _count(api, "ended")) < expected:
        await asyncio.sleep(0.05)
    return ended
