"""Conditional and partial writes of memories: ETags, If-Match, If-None-Match, JSON Patch."""

from __future__ import annotations

import pytest

from agent import OfflineChatModel, build_graph
from agent.namespaces import Owner
from memory.errors import NotFoundError, PatchError, PreconditionError
from memory.sessions import SessionManager
from memory.settings import Settings
from memory.stores import aopen_backends
from tests.plugins.server import Api, fresh_id

_PATCH = {"content-type": "application/json-patch+json"}


@pytest.mark.parametrize("scope", ["user", "session"])
async def test_reads_carry_the_version_and_stale_if_match_writes_nothing(
    api: Api, scope: str
) -> None:
    base = "/memories"
    if scope == "session":
        thread = fresh_id("t")
        assert (await api.run("alice", thread, "hello")).status_code == 200
        base = f"/threads/{thread}/memories"
    url = f"{base}/{fresh_id('k')}"
    first = await api.request("alice", "PUT", url, json={"value": {"n": 1}})
    assert first.status_code == 200 and first.headers["etag"] == first.json()["etag"]
    got = await api.request("alice", "GET", url)
    assert got.headers["etag"] == first.headers["etag"]
    listed = (await api.request("alice", "GET", base)).json()["items"]
    assert [m["etag"] for m in listed if m["key"] == url.rsplit("/", 1)[1]] == [got.json()["etag"]]
    stale = first.headers["etag"]
    second = await api.request(
        "alice", "PUT", url, json={"value": {"n": 2}}, headers={"If-Match": stale}
    )
    assert second.status_code == 200 and second.headers["etag"] != stale
    # The first version again: refused, nothing written, by PUT, PATCH and DELETE.
    for method, kwargs in (
        ("PUT", {"json": {"value": {"n": 3}}}),
        ("PATCH", {"json": [{"op": "replace", "path": "/n", "value": 3}], "headers": _PATCH}),
        ("DELETE", {}),
    ):
        headers = {"If-Match": stale, **kwargs.pop("headers", {})}  # type: ignore[dict-item]
        refused = await api.request("alice", method, url, headers=headers, **kwargs)
        assert refused.status_code == 412, (method, refused.text)
        assert "version" in refused.json()["detail"]
    now = await api.request("alice", "GET", url)
    assert now.json()["value"] == {"n": 2} and now.headers["etag"] == second.headers["etag"]
    # The current version: deleted.
    gone = await api.request("alice", "DELETE", url, headers={"If-Match": now.headers["etag"]})
    assert gone.status_code == 204
    assert (await api.request("alice", "GET", url)).status_code == 404


async def test_if_none_match_star_creates_only(api: Api) -> None:
    url = f"/memories/{fresh_id('k')}"
    star = {"If-None-Match": "*"}
    made = await api.request("alice", "PUT", url, json={"value": "one"}, headers=star)
    assert made.status_code == 200
    again = await api.request("alice", "PUT", url, json={"value": "two"}, headers=star)
    assert again.status_code == 412 and "exists" in again.json()["detail"]
    assert (await api.request("alice", "GET", url)).json()["value"] == "one"
    bad = await api.request(
        "alice", "PUT", url, json={"value": "x"}, headers={"If-None-Match": '"a"'}
    )
    assert bad.status_code == 422
    missing = await api.request(
        "alice", "PUT", f"/memories/{fresh_id('k')}", json={"value": 1}, headers={"If-Match": "*"}
    )
    assert missing.status_code == 412


async def test_a_patch_that_fails_writes_nothing(api: Api) -> None:
    url = f"/memories/{fresh_id('k')}"
    put = await api.request("alice", "PUT", url, json={"value": {"items": ["a"], "n": 1}})
    before = put.headers["etag"]
    cases = [
        (
            [
                {"op": "add", "path": "/items/-", "value": "b"},
                {"op": "test", "path": "/n", "value": 2},
            ],
            409,
            1,
        ),
        ([{"op": "remove", "path": "/missing"}], 409, 0),
        ([{"op": "replace", "path": "/items/7", "value": 1}], 409, 0),
    ]
    for patch, status, operation in cases:
        response = await api.request("alice", "PATCH", url, json=patch, headers=_PATCH)
        assert response.status_code == status, response.text
        assert response.json()["operation"] == operation
        assert f"operation {operation}" in response.json()["detail"]
    for body in ([{"op": "launch", "path": "/n"}], {"op": "add"}, [{"op": "add"}]):
        response = await api.request("alice", "PATCH", url, json=body, headers=_PATCH)
        assert response.status_code == 422, response.text
    # A result no memory can hold: 422.
    huge = [{"op": "add", "path": "/big", "value": "x" * 5000}]
    response = await api.request("alice", "PATCH", url, json=huge, headers=_PATCH)
    assert response.status_code == 422 and "limit" in response.json()["detail"]
    plain = await api.request("alice", "PATCH", url, json=[{"op": "remove", "path": "/n"}])
    assert plain.status_code == 415 and "json-patch+json" in plain.json()["detail"]
    now = await api.request("alice", "GET", url)
    assert now.json()["value"] == {"items": ["a"], "n": 1} and now.headers["etag"] == before
    ok = await api.request(
        "alice",
        "PATCH",
        url,
        json=[{"op": "test", "path": "/n", "value": 1}, {"op": "remove", "path": "/n"}],
        headers={**_PATCH, "If-Match": before},
    )
    assert ok.status_code == 200 and ok.json()["value"] == {"items": ["a"]}
    absent = await api.request(
        "alice", "PATCH", f"/memories/{fresh_id('k')}", json=[], headers=_PATCH
    )
    assert absent.status_code == 404
    other = await api.request("bob", "PATCH", url, json=[], headers=_PATCH)
    assert other.status_code == 404


async def test_python_api_versions_and_patches(
    backend_url: str, owner: Owner, backend_settings: Settings
) -> None:
    settings = backend_settings.model_copy(update={"database_url": backend_url})
    async with aopen_backends(settings=settings) as backends:
        graph = build_graph(backends.checkpointer, backends.store, chat_model=OfflineChatModel())
        sessions = SessionManager(graph)
        made = await sessions.asave_memory(owner, "cart", {"items": []}, expected_version="!*")
        with pytest.raises(PreconditionError):
            await sessions.asave_memory(owner, "cart", {"items": []}, expected_version="!*")
        patched = await sessions.apatch_memory(
            owner, "cart", [{"op": "add", "path": "/items/-", "value": "tea"}]
        )
        assert patched["value"] == {"items": ["tea"]} and patched["etag"] != made["etag"]
        with pytest.raises(PreconditionError):
            await sessions.adelete_memory(owner, "cart", expected_version=made["etag"])
        with pytest.raises(PatchError) as failed:
            await sessions.apatch_memory(owner, "cart", [{"op": "remove", "path": "/nope"}])
        assert failed.value.operation == 0
        assert (await sessions.aget_memory(owner, "cart"))["etag"] == patched["etag"]
        await sessions.adelete_memory(owner, "cart", expected_version=patched["etag"])
        with pytest.raises(NotFoundError):
            await sessions.aget_memory(owner, "cart")
