"""Writes every kind of data into a database with the project code found on `sys.path`
(the previous release's tree, for `tests/test_upgrade.py`) and prints what it wrote.

Run as `python tests/upgrade_writer.py` with `PYTHONPATH` set to that tree and the
database named by `MEMORY_AGENT_DATABASE_URL`. It speaks only the HTTP API both releases
serve, in process, and prints one JSON object: replies, transcripts, summaries, state,
memories, runs and their events, as that release reads them back.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import httpx

HEADERS = {"Authorization": "Bearer upgrade-key"}


async def write(client: httpx.AsyncClient) -> dict[str, Any]:
    out: dict[str, Any] = {"replies": {}}

    async def ok(method: str, path: str, **kwargs: Any) -> Any:
        response = await client.request(method, path, headers=HEADERS, **kwargs)
        assert response.status_code < 300, (method, path, response.status_code, response.text)
        return response.json() if response.content else None

    # Two native threads with several turns each; one is ended (its summary becomes a memory).
    for thread, name in (("kept", "Ada"), ("ended", "Bo")):
        replies = []
        for text in (f"my name is {name}", "I like green tea", "what is my name?", "thanks"):
            body = await ok("POST", f"/threads/{thread}/runs", json={"message": text})
            replies.append(body["reply"])
        out["replies"][thread] = replies
    await ok("PUT", "/memories/color", json={"value": {"favourite": "green"}})
    await ok("PUT", "/threads/kept/memories/cart", json={"value": ["tea", "cups"]})
    await ok("POST", "/threads/ended/end")
    # A LangGraph thread with a waited run and a streamed run (its events are kept).
    thread = await ok("POST", "/langgraph/threads", json={"metadata": {"from": "v0.1.0"}})
    lg = thread["thread_id"]
    out["lg_thread"] = lg
    message = {"role": "user", "content": "my name is Cy"}
    await ok(
        "POST",
        f"/langgraph/threads/{lg}/runs/wait",
        json={"assistant_id": "agent", "input": {"messages": [message]}},
    )
    async with client.stream(
        "POST",
        f"/langgraph/threads/{lg}/runs/stream",
        headers=HEADERS,
        json={
            "assistant_id": "agent",
            "input": {"messages": [{"role": "user", "content": "what is my name?"}]},
            "stream_mode": ["values"],
        },
    ) as response:
        assert response.status_code == 200, response.status_code
        async for _ in response.aiter_bytes():
            pass
    # What this release reads back, for the next one to match.
    for thread in ("kept", "ended"):
        out[thread] = {
            "detail": await ok("GET", f"/threads/{thread}"),
            "messages": await ok("GET", f"/threads/{thread}/messages", params={"limit": 200}),
            "summary": await ok("GET", f"/threads/{thread}/summary"),
            "state": await ok("GET", f"/threads/{thread}/state"),
            "history": await ok("GET", f"/threads/{thread}/history"),
        }
    out["memories"] = await ok("GET", "/memories")
    out["session_memories"] = await ok("GET", "/threads/kept/memories")
    out["lg_state"] = await ok("GET", f"/langgraph/threads/{lg}/state")
    out["lg_runs"] = await ok("GET", f"/langgraph/threads/{lg}/runs")
    return out


async def main() -> None:
    import agent
    import memory
    from server.app import create_app

    for package in (agent, memory):
        where = os.path.dirname(package.__file__ or "")
        assert where.startswith(os.environ["UPGRADE_OLD_TREE"]), where
    app = create_app()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            result = await write(client)
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    asyncio.run(main())
