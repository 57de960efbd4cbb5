"""An application's `langgraph_sdk.Auth` `on` handlers (`tests/authpolicy.py`) applied as
LangGraph's server applies them: the same langgraph-sdk script gives the same answers from
memory-agent and from `langgraph dev` serving the same module; the native API's session
routes ask the same handlers."""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client

from memory.settings import Settings
from server.app import create_app
from tests.lgserver import langgraph_server
from tests.plugins.server import running

AUTH = "tests/authpolicy.py:auth"
RED, BLUE, ADMIN = "user:t1:alice:red", "user:t1:alice:blue", "user:t1:alice:red:admin"
DEV, OURS = "langgraph dev", "memory-agent"


def _human(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


async def _status(call: Any) -> Any:
    """The call's answer, or the HTTP status it was refused with."""
    try:
        return await call
    except httpx.HTTPStatusError as exc:
        return exc.response.status_code


async def _script(url: str) -> dict[str, Any]:
    red, blue, admin = (
        get_client(url=url, headers={"Authorization": f"Bearer {t}"}) for t in (RED, BLUE, ADMIN)
    )
    out: dict[str, Any] = {}
    none = get_client(url=url, headers={"Authorization": "Bearer nobody"})
    out["no user"] = await _status(none.threads.search())
    thread = await red.threads.create(metadata={"topic": "bread"})
    tid = thread["thread_id"]
    out["created metadata"] = {k: thread["metadata"].get(k) for k in ("topic", "org")}
    out["red reads"] = (await _status(red.threads.get(tid)))["thread_id"] == tid
    out["blue reads"] = await _status(blue.threads.get(tid))
    out["blue state"] = await _status(blue.threads.get_state(tid))
    out["red search"] = [t["thread_id"] == tid for t in await red.threads.search()]
    out["blue search"] = await blue.threads.search()
    out["blue count"] = await blue.threads.count()
    ran = await _status(red.runs.wait(tid, "agent", input=_human("hello")))
    out["red run"] = ran["messages"][-1]["type"]
    out["blue run"] = await _status(blue.runs.wait(tid, "agent", input=_human("hello")))
    out["blue patch"] = await _status(blue.threads.update(tid, metadata={"x": 1}))
    # A thread a run creates carries the run's metadata, the org among it.
    made = str(uuid.uuid4())
    await red.runs.wait(made, "agent", input=_human("hi"), if_not_exists="create")
    out["run-made metadata org"] = (await red.threads.get(made))["metadata"].get("org")
    out["blue reads run-made"] = await _status(blue.threads.get(made))
    out["red deletes"] = await _status(red.threads.delete(tid))
    out["admin deletes"] = await _status(admin.threads.delete(tid))
    out["after delete"] = await _status(red.threads.get(tid))
    # The store, each user under their own id.
    await red.store.put_item(["notes"], "k", {"v": 1})
    item = await red.store.get_item(["notes"], "k")
    out["store item"] = (item["namespace"], item["value"])
    out["store search"] = [
        i["namespace"] for i in (await red.store.search_items(["notes"]))["items"]
    ]
    out["store namespaces"] = (await red.store.list_namespaces())["namespaces"]
    out["assistants"] = [a["graph_id"] for a in await blue.assistants.search()]
    return out


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    from tests.test_langgraph_dev import langgraph_dev

    tmp = tmp_path_factory.mktemp("auth-policy")
    with (
        langgraph_dev(tmp_path_factory.mktemp("auth-policy-dev"), AUTH) as dev,
        langgraph_server(
            f"sqlite:///{tmp / 'agent.sqlite'}", tmp, auth="tests.authpolicy:auth", api_keys=""
        ) as ours,
    ):
        return {DEV: asyncio.run(_script(dev)), OURS: asyncio.run(_script(ours.url))}


@pytest.mark.slow
def test_the_same_script_gets_the_same_answers(answers: dict[str, dict[str, Any]]) -> None:
    dev, ours = answers[DEV], answers[OURS]
    assert ours == dev


def _as(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_the_native_session_routes_ask_the_same_handlers() -> None:
    settings = Settings(
        database_url="memory://",
        embeddings="none",
        sweep_interval_seconds=3600,
        auth="tests.authpolicy:auth",
    )
    async with running(create_app(settings)) as client:
        red, blue, admin = _as(RED), _as(BLUE), _as(ADMIN)
        ran = await client.post("/threads/t1/runs", json={"message": "hi"}, headers=red)
        assert ran.status_code == 200, ran.text
        mine = await client.get("/threads/t1", headers=red)
        assert mine.status_code == 200 and mine.json()["metadata"] == {"org": "red"}
        # The same user working in another org sees none of it.
        for method, path, body in [
            ("GET", "/threads/t1", None),
            ("GET", "/threads/t1/messages", None),
            ("GET", "/threads/t1/state", None),
            ("POST", "/threads/t1/runs", {"message": "hi"}),
            ("POST", "/threads/t1/messages", {"messages": [{"role": "user", "content": "x"}]}),
        ]:
            theirs = await client.request(method, path, json=body, headers=blue)
            assert theirs.status_code == 404, (method, path, theirs.text)
        assert (await client.get("/threads", headers=blue)).json()["total"] == 0
        assert (await client.get("/threads", headers=red)).json()["total"] == 1
        made = await client.post("/threads", json={"metadata": {"topic": "x"}}, headers=red)
        assert made.json()["metadata"] == {"topic": "x", "org": "red"}
        chatted = await client.post("/chat", json={"message": "hello"}, headers=red)
        assert chatted.status_code == 200, chatted.text
        tid = chatted.json()["thread_id"]
        assert (await client.get(f"/threads/{tid}", headers=blue)).status_code == 404
        assert (await client.get("/threads", headers=red)).json()["total"] == 3
        # Only an admin deletes, and only what their org sees.
        refused = await client.delete("/threads/t1", headers=red)
        assert (
            refused.status_code == 403
            and refused.json()["detail"] == "only an admin deletes threads"
        )
        assert (await client.delete("/threads/t1", headers=admin)).status_code == 204
        page = await client.get("/threads/t1/messages", headers=red)
        assert page.status_code == 404


async def test_langgraph_json_names_the_auth_object(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no `MEMORY_AGENT_AUTH` and no keys, the `auth.path` of the working directory's
    `langgraph.json` is the identity source, a file path read from there as `langgraph dev`
    reads it; keys or `MEMORY_AGENT_AUTH`, when set, win."""
    (tmp_path / "mine").mkdir()
    shutil.copy(Path(__file__).with_name("authpolicy.py"), tmp_path / "mine" / "auth.py")
    config = {
        "graphs": {"agent": "./agent/served.py:graph"},
        "auth": {"path": "./mine/auth.py:auth"},
    }
    (tmp_path / "langgraph.json").write_text(json.dumps(config))
    for name in ("MEMORY_AGENT_AUTH", "MEMORY_AGENT_API_KEYS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    settings = Settings(database_url="memory://", embeddings="none", sweep_interval_seconds=3600)
    assert settings.auth_mode == "sdk"
    assert settings.auth == f"{tmp_path / 'mine' / 'auth.py'}:auth"
    async with running(create_app(settings)) as client:
        assert (await client.get("/threads")).status_code == 401
        made = await client.post("/threads", json={}, headers=_as(RED))
        assert made.status_code == 201 and made.json()["metadata"] == {"org": "red"}
    keyed = Settings(database_url="memory://", embeddings="none", api_keys="k1=acme/sam")
    assert keyed.auth_mode == "keys"
