"""Seed 002 ("Session Management Guide", a shopping assistant keyed by `sessionId`) on SQLite.

The seed's service answers shopping questions per `sessionId`, keeps the conversation,
per-session preferences and a cart, and reports a session's analytics. Its client's calls, in
the seed's order ("Frontend Integration", then the session endpoints and "Backend
Integration"), and the HTTP calls that do the same here:

- `initializeSession(sessionId)`: `POST /threads {"thread_id": "user-123-session-456"}`
- `POST /api/v1/shopping/query {"q", "sessionId"}`: `POST /chat {"message", "thread_id"}`
- `POST /api/v1/shopping/query/stream`: `POST /threads/{id}/runs/stream` (server-sent events)
- `session_service.add_conversation_message(id, "user", question)`:
  `POST /threads/{id}/messages`
- `POST .../session/{id}/preferences`, `update_user_preferences(id, {...})`:
  `PUT /threads/{id}/memories/preferences` (the client merges an update into what it read)
- `GET .../cart`, `POST .../cart/add`, `DELETE .../cart/clear`:
  `GET`/`PUT`/`DELETE /threads/{id}/memories/cart` (404 is an empty cart)
- `GET .../session/{id}/info`: `GET /threads/{id}` (times, message count, analytics: duration,
  counts by role, top topics) with `GET /threads/{id}/memories` (preferences, cart)
- `GET .../session/{id}/conversation?limit=20`: `GET /threads/{id}/messages?limit=20&offset=-20`
- "validate session ownership": another user's session answers 404, and the same
  `sessionId` from another user is a session of that user's own
- "sessions expire after 24 hours of inactivity": the default idle timeout; a query on an
  expired `sessionId` goes to a new session (`POST /chat` names the old id and why)

The seed kept its sessions in Redis with a TTL: the same script runs on Redis too, with
`MEMORY_AGENT_TTL_MINUTES` set to the seed's 24 hours.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.plugins.server import Api, sse_events
from tests.seeds.harness import fresh_tenant, move_clock, ok, seed_api

SESSION_ID = "user-123-session-456"
QUERIES = [
    "What smartphones do you have?",
    "Which smartphone has the best camera?",
    "Is that smartphone camera good at night?",  # streamed
    "Show me a smartphone under 1000",  # recorded without a reply
]
PREFERENCES = {
    "budget_range": "500-1000",
    "preferred_brands": ["Apple", "Samsung"],
    "device_type": "smartphone",
    "shipping_preference": "express",
}
ITEMS = [
    {"name": "iPhone 15 Pro", "price": 999, "category": "smartphone", "sku": "IPH15PRO-256"},
    {"name": "Galaxy S24", "price": 899, "category": "smartphone", "sku": "SGS24-128"},
]


@pytest.fixture(params=["sqlite", "redis"])
def shop_backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict[str, Any]]:
    """The database URL and settings: SQLite, or Redis with the seed's 24-hour TTL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shop.sqlite'}", {}
    return request.getfixturevalue("redis_url"), {"ttl_minutes": 24 * 60}


async def _query(api: Api, user: str, q: str, session_id: str) -> dict[str, Any]:
    body = {"message": q, "thread_id": session_id}
    return ok(await api.request(user, "POST", "/chat", json=body))


async def _get_cart(api: Api, session_id: str) -> list[dict[str, Any]]:
    response = await api.request("shopper", "GET", f"/threads/{session_id}/memories/cart")
    return [] if response.status_code == 404 else ok(response)["value"]


async def _add_to_cart(api: Api, session_id: str, item: dict[str, Any]) -> list[dict[str, Any]]:
    cart = [*await _get_cart(api, session_id), item]
    url = f"/threads/{session_id}/memories/cart"
    return ok(await api.request("shopper", "PUT", url, json={"value": cart}))["value"]


async def _update_preferences(api: Api, session_id: str, update: dict[str, Any]) -> Any:
    url = f"/threads/{session_id}/memories/preferences"
    current = await api.request("shopper", "GET", url)
    merged = {**(ok(current)["value"] if current.status_code == 200 else {}), **update}
    return ok(await api.request("shopper", "PUT", url, json={"value": merged}))["value"]


async def _session_info(api: Api, session_id: str) -> dict[str, Any]:
    """The seed's `/session/{id}/info` body, from the session and its memories."""
    session = ok(await api.request("shopper", "GET", f"/threads/{session_id}"))
    memories = ok(await api.request("shopper", "GET", f"/threads/{session_id}/memories"))
    kept = {m["key"]: m["value"] for m in memories["items"]}
    counts = session["analytics"]["message_counts"]
    return {
        "session_info": {
            "created_at": session["created_at"],
            "last_active": session["last_active_at"],
            "conversation_count": session["message_count"],
            "preferences": kept.get("preferences", {}),
            "shopping_cart": kept.get("cart", []),
        },
        "analytics": {
            "session_duration": session["analytics"]["duration_seconds"],
            "user_message_count": counts.get("user", 0),
            "assistant_message_count": counts.get("assistant", 0),
            "top_topics": [
                {"word": t["topic"], "count": t["count"]}
                for t in session["analytics"]["top_topics"]
            ],
        },
    }


async def _conversation(api: Api, session_id: str, limit: int = 20) -> dict[str, Any]:
    url = f"/threads/{session_id}/messages?limit={limit}&offset=-{limit}"
    items = ok(await api.request("shopper", "GET", url))["items"]
    conversation = [
        {"role": m["role"], "content": m["content"], "timestamp": m["created_at"]} for m in items
    ]
    return {"session_id": session_id, "conversation": conversation, "count": len(conversation)}


async def test_seed_002_shopping_sessions(shop_backend: tuple[str, dict[str, Any]]) -> None:
    url, settings = shop_backend
    tenant = fresh_tenant("shop")
    users = {"shopper": (tenant, "user-123"), "other": (tenant, "user-789")}
    async with seed_api(url, users, **settings) as api:
        created = ok(
            await api.request("shopper", "POST", "/threads", json={"thread_id": SESSION_ID}), 201
        )
        assert created["thread_id"] == SESSION_ID

        for q in QUERIES[:2]:
            answer = await _query(api, "shopper", q, SESSION_ID)
            assert answer["thread_id"] == SESSION_ID and answer["previous_thread_id"] is None
            assert [m["role"] for m in answer["messages"]] == ["user", "assistant"]
            assert answer["messages"][0]["content"] == q and answer["reply"]

        streamed = await api.request(
            "shopper", "POST", f"/threads/{SESSION_ID}/runs/stream", json={"message": QUERIES[2]}
        )
        events = sse_events(streamed.text)
        assert events[0][0] == "metadata" and events[0][1]["thread_id"] == SESSION_ID
        assert events[0][1]["run_id"] == streamed.headers["content-location"].rsplit("/", 2)[1]
        done = [data for name, data in events if name == "done"]
        assert len(done) == 1 and done[0]["messages"][0]["content"] == QUERIES[2]
        assert "".join(d["text"] for n, d in events if n == "token") == done[0]["reply"]

        body = {"messages": [{"role": "user", "content": QUERIES[3]}]}
        added = ok(
            await api.request("shopper", "POST", f"/threads/{SESSION_ID}/messages", json=body), 201
        )
        assert added["total"] == 7

        prefs_url = f"/threads/{SESSION_ID}/memories/preferences"
        saved = ok(await api.request("shopper", "PUT", prefs_url, json={"value": PREFERENCES}))
        assert saved["value"] == PREFERENCES and saved["scope"] == "session"
        updated = await _update_preferences(
            api, SESSION_ID, {"budget_range": "500-1000", "preferred_brands": ["Apple"]}
        )
        assert updated == {**PREFERENCES, "preferred_brands": ["Apple"]}

        assert await _get_cart(api, SESSION_ID) == []
        assert await _add_to_cart(api, SESSION_ID, ITEMS[0]) == ITEMS[:1]
        assert await _add_to_cart(api, SESSION_ID, ITEMS[1]) == ITEMS
        assert await _get_cart(api, SESSION_ID) == ITEMS

        info = await _session_info(api, SESSION_ID)
        assert info["session_info"]["conversation_count"] == 7
        assert info["session_info"]["preferences"]["preferred_brands"] == ["Apple"]
        assert info["session_info"]["shopping_cart"] == ITEMS
        assert info["session_info"]["created_at"] < info["session_info"]["last_active"]
        analytics = info["analytics"]
        assert (analytics["user_message_count"], analytics["assistant_message_count"]) == (4, 3)
        assert analytics["session_duration"] >= 0
        assert analytics["top_topics"][:2] == [
            {"word": "smartphone", "count": 3},
            {"word": "camera", "count": 2},
        ]

        conversation = await _conversation(api, SESSION_ID)
        assert conversation["count"] == 7
        first = conversation["conversation"][0]
        assert (first["role"], first["content"]) == ("user", "What smartphones do you have?")
        assert [m["role"] for m in conversation["conversation"]] == ["user", "assistant"] * 3 + [
            "user"
        ]
        newest = await _conversation(api, SESSION_ID, limit=2)
        assert [m["content"] for m in newest["conversation"]][-1] == QUERIES[3]
        assert newest["count"] == 2

        cart_url = f"/threads/{SESSION_ID}/memories/cart"
        assert (await api.request("shopper", "DELETE", cart_url)).status_code == 204
        assert await _get_cart(api, SESSION_ID) == []

        # Ownership: another user neither reads nor changes this session; the same
        # sessionId from them is a session of their own.
        for method, path in (
            ("GET", f"/threads/{SESSION_ID}"),
            ("GET", f"/threads/{SESSION_ID}/messages"),
            ("GET", prefs_url),
            ("DELETE", prefs_url),
        ):
            assert (await api.request("other", method, path)).status_code == 404
        theirs = await _query(api, "other", QUERIES[0], SESSION_ID)
        assert theirs["thread_id"] == SESSION_ID and theirs["messages"][0]["seq"] == 0
        assert (await _session_info(api, SESSION_ID))["session_info"]["conversation_count"] == 7

        # A day without activity: the session has expired; the next query starts a new one.
        move_clock(api, timedelta(hours=24, minutes=1))
        expired = ok(await api.request("shopper", "GET", f"/threads/{SESSION_ID}"))
        assert (expired["status"], expired["end_reason"]) == ("ended", "idle")
        again = await _query(api, "shopper", QUERIES[0], SESSION_ID)
        assert again["previous_thread_id"] == SESSION_ID and again["thread_id"] != SESSION_ID
        assert again["reason"] and again["messages"][0]["seq"] == 0
        # The expired conversation can still be read.
        assert (await _conversation(api, SESSION_ID))["count"] == 7
