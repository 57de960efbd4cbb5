"""What one HTTP turn costs in backend calls, counted through wrappers on every backend.

Besides the saver calls of the graph's own steps, a plain turn makes at most four store
or session-database calls (the claim, the memory search, the transcript append, the
record update that releases the lease), reads the checkpoint once (the run's own load),
and embeds at most once. The first turn of a thread creates its session inside the claim.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from memory.embeddings import LocalEmbeddings
from tests.plugins.server import Api, ApiFactory, fresh_id

_DB_METHODS = (
    "acreate",
    "aget",
    "alist",
    "abegin",
    "asave",
    "aset_status",
    "aremove",
    "aidle",
    "aacquire",
    "arenew",
    "arelease",
    "aleased",
    "aappend",
    "apage",
)


def _count(calls: Counter[str], name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    async def counted(*args: Any, **kwargs: Any) -> Any:
        calls[name] += 1
        return await method(*args, **kwargs)

    return counted


def _instrument(api: Api, monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    calls: Counter[str] = Counter()
    sessions = api.app.state.sessions
    for name in _DB_METHODS:
        monkeypatch.setattr(
            sessions.db, name, _count(calls, f"db.{name}", getattr(sessions.db, name))
        )
    store = sessions.store
    monkeypatch.setattr(store, "abatch", _count(calls, "store.abatch", store.abatch))
    saver = sessions.checkpointer
    for name in ("aget_tuple", "alist", "aput", "aput_writes"):
        monkeypatch.setattr(saver, name, _count(calls, f"saver.{name}", getattr(saver, name)))
    for name in ("embed_documents", "embed_query"):
        original = getattr(LocalEmbeddings, name)

        def counted(self: Any, *args: Any, _name: str = name, _orig: Any = original) -> Any:
            calls["embed"] += 1
            return _orig(self, *args)

        monkeypatch.setattr(LocalEmbeddings, name, counted)
    return calls


def _besides_saver(calls: Counter[str]) -> int:
    return sum(n for k, n in calls.items() if k.startswith(("db.", "store.")))


async def test_a_plain_turn_makes_four_calls_besides_the_savers(
    make_api: ApiFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with make_api(embeddings="local") as api:
        thread = fresh_id("t")
        calls = _instrument(api, monkeypatch)

        first = await api.run("alice", thread, "Hello there.")
        assert first.status_code == 200
        first_calls = Counter(calls)
        calls.clear()

        second = await api.run("alice", thread, "What is my name?")
        assert second.status_code == 200
        await api.app.state.runner.drain()

        assert _besides_saver(calls) <= 4, calls
        assert calls["db.abegin"] == 1 and calls["db.asave"] == 1, calls
        assert calls["saver.aget_tuple"] == 1, calls  # no state read before or after the run
        assert calls["embed"] <= 1, calls
        # The first turn creates the session inside the claim: at most two calls more.
        assert _besides_saver(first_calls) <= 4 + 2, first_calls
        assert first_calls["embed"] <= 1, first_calls
        assert first_calls["saver.aget_tuple"] == 1, first_calls


async def test_a_first_turn_costs_the_same_whatever_the_number_of_sessions(
    make_api: ApiFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with make_api() as api:
        for _ in range(30):
            assert (await api.request("bob", "POST", "/threads", json={})).status_code == 201
        calls = _instrument(api, monkeypatch)
        assert (await api.run("bob", fresh_id("t"), "hello")).status_code == 200
        assert _besides_saver(calls) <= 6, calls
        assert calls["db.alist"] == 0, calls
