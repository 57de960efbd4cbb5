"""The store contract on every backend, with each store opened the way the factory opens it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from langgraph.store.base import BaseStore, InvalidNamespaceError

from memory.settings import Settings
from memory.stores.factory import aopen_store, default_store_url, open_store
from memory.stores.values import StoreValueError

#: Labels that must stay apart: prefixes of one another, LIKE metacharacters, case and stem
#: variants, a full-text stopword, and RediSearch query syntax.
LOOKALIKE_LABELS = [
    "u1",
    "u10",
    "user_1",
    "userX1",
    "a%b",
    "aXb",
    "memories",
    "Memory",
    "a",
    "x@y{z}|w",
    "t:1-2",
    "u1*",
]


@pytest.fixture
async def store(backend_url: str, backend_settings: Settings) -> AsyncIterator[BaseStore]:
    async with aopen_store(default_store_url(backend_url), backend_settings) as opened:
        yield opened


@pytest.fixture
def root() -> str:
    """A first namespace label no other test uses (the servers are shared)."""
    return f"suite-{uuid.uuid4().hex[:12]}"


def _ids(items: list) -> set[tuple[tuple[str, ...], str]]:
    return {(tuple(item.namespace), item.key) for item in items}


async def test_put_get_search_delete_with_multi_label_namespaces(
    store: BaseStore, root: str
) -> None:
    memories, notes = (root, "u1", "memories"), (root, "u1", "notes")
    await store.aput(memories, "k1", {"text": "one"})
    await store.aput(memories, "k2", {"text": "two"})
    await store.aput(notes, "k1", {"text": "note"})

    item = await store.aget(memories, "k1")
    assert item is not None
    assert (tuple(item.namespace), item.key, item.value) == (memories, "k1", {"text": "one"})
    assert _ids(await store.asearch((root, "u1"))) == {
        (memories, "k1"),
        (memories, "k2"),
        (notes, "k1"),
    }
    assert _ids(await store.asearch(memories)) == {(memories, "k1"), (memories, "k2")}

    await store.aput(memories, "k1", {"text": "one, updated"})
    updated = await store.aget(memories, "k1")
    assert updated is not None and updated.value == {"text": "one, updated"}
    assert len(await store.asearch(memories)) == 2

    await store.adelete(memories, "k1")
    assert await store.aget(memories, "k1") is None
    assert await store.aget(memories, "missing") is None
    assert _ids(await store.asearch((root,))) == {(memories, "k2"), (notes, "k1")}


async def test_lookalike_labels_and_keys_never_leak(store: BaseStore, root: str) -> None:
    for label in LOOKALIKE_LABELS:
        await store.aput((root, label), "k", {"label": label})
    await store.aput((root, "keys"), "Key", {"case": "upper"})
    await store.aput((root, "keys"), "key", {"case": "lower"})

    for label in LOOKALIKE_LABELS:
        item = await store.aget((root, label), "k")
        assert item is not None and item.value == {"label": label}, label
        found = await store.asearch((root, label), limit=50)
        assert [hit.value for hit in found] == [{"label": label}], label
    upper, lower = await store.aget((root, "keys"), "Key"), await store.aget((root, "keys"), "key")
    assert upper is not None and upper.value == {"case": "upper"}
    assert lower is not None and lower.value == {"case": "lower"}
    listed = await store.alist_namespaces(prefix=(root,), limit=100)
    assert sorted(listed) == sorted([(root, label) for label in [*LOOKALIKE_LABELS, "keys"]])


async def test_list_namespaces_by_prefix_suffix_wildcard_and_depth(
    store: BaseStore, root: str
) -> None:
    spaces = [(root, "a", "x"), (root, "a", "y"), (root, "b", "x"), (root, "b")]
    for namespace in spaces:
        await store.aput(namespace, "k", {"n": 1})

    assert await store.alist_namespaces(prefix=(root,)) == sorted(spaces)
    assert await store.alist_namespaces(prefix=(root, "a")) == [(root, "a", "x"), (root, "a", "y")]
    assert await store.alist_namespaces(prefix=(root,), suffix=("x",)) == [
        (root, "a", "x"),
        (root, "b", "x"),
    ]
    assert await store.alist_namespaces(prefix=(root, "*", "x")) == [
        (root, "a", "x"),
        (root, "b", "x"),
    ]
    assert await store.alist_namespaces(prefix=(root,), max_depth=2) == [(root, "a"), (root, "b")]
    assert await store.alist_namespaces(prefix=(root,), limit=2, offset=1) == sorted(spaces)[1:3]

    await store.adelete((root, "b"), "k")
    assert (root, "b") not in await store.alist_namespaces(prefix=(root,))


async def test_search_filters_and_pages(store: BaseStore, root: str) -> None:
    namespace = (root, "items")
    for n in range(10):
        await store.aput(namespace, f"k{n}", {"n": n, "kind": "even" if n % 2 == 0 else "odd"})

    evens = await store.asearch(namespace, filter={"kind": "even"}, limit=20)
    assert {item.key for item in evens} == {"k0", "k2", "k4", "k6", "k8"}
    high = await store.asearch(namespace, filter={"n": {"$gte": 7}}, limit=20)
    assert {item.key for item in high} == {"k7", "k8", "k9"}
    assert len(await store.asearch(namespace, filter={"kind": "even"}, limit=2)) == 2

    seen: list[str] = []
    for offset in range(0, 12, 3):
        seen += [item.key for item in await store.asearch(namespace, limit=3, offset=offset)]
    assert sorted(seen) == sorted(f"k{n}" for n in range(10))


async def test_unicode_round_trips(store: BaseStore, root: str) -> None:
    namespace = (root, "ünïcödé", "日本語")
    value = {
        "text": "héllo wörld ✓ עברית 👩‍👩‍👧 e\u0301 \u2028 tab\there",
        "quotes": 'he said "hi" \\ / \' {} [] @:|*%_',
        "ключ": ["😀", {"深い": "値"}],
    }
    await store.aput(namespace, "ключ🔑", value)
    item = await store.aget(namespace, "ключ🔑")
    assert item is not None and item.value == value
    assert [hit.key for hit in await store.asearch((root, "ünïcödé"))] == ["ключ🔑"]
    assert await store.alist_namespaces(prefix=(root,)) == [namespace]


async def test_nul_and_unpaired_surrogates_are_rejected_clearly(
    store: BaseStore, root: str
) -> None:
    namespace = (root, "bad")
    with pytest.raises(StoreValueError, match=r"value\['text'\] contains a NUL character"):
        await store.aput(namespace, "k", {"text": "a\x00b"})
    with pytest.raises(StoreValueError, match="store key contains a NUL character"):
        await store.aput(namespace, "k\x00", {"text": "ok"})
    with pytest.raises(StoreValueError, match=r"value\['list'\]\[1\] is not valid Unicode"):
        await store.aput(namespace, "k", {"list": ["fine", "\ud800"]})
    with pytest.raises(InvalidNamespaceError, match="NUL"):
        await store.aput((root, "bad\x00label"), "k", {"text": "ok"})
    assert await store.aget(namespace, "k") is None
    assert await store.asearch((root,)) == []


async def test_a_one_megabyte_value_round_trips(store: BaseStore, root: str) -> None:
    value = {"blob": "ab" * (512 * 1024), "tail": "é✓"}
    await store.aput((root, "big"), "k", value)
    item = await store.aget((root, "big"), "k")
    assert item is not None and item.value == value
    (hit,) = await store.asearch((root, "big"))
    assert hit.value == value


async def test_semantic_search_puts_the_relevant_fact_first(store: BaseStore, root: str) -> None:
    mine, theirs = (root, "me", "memories"), (root, "them", "memories")
    await store.aput(mine, "shipping", {"content": "Prefers express shipping"})
    await store.aput(mine, "allergy", {"content": "Allergic to penicillin"})
    await store.aput(mine, "pet", {"content": "Has a dog called Rex"})
    await store.aput(theirs, "allergy", {"content": "Allergic to penicillin and aspirin"})

    found = await store.asearch(mine, query="which medicine must I avoid?", limit=3)
    assert [hit.key for hit in found][:1] == ["allergy"]
    assert {tuple(hit.namespace) for hit in found} == {mine}
    scores = [hit.score for hit in found]
    assert all(score is not None for score in scores)
    assert scores == sorted(scores, reverse=True)  # type: ignore[type-var]


async def test_expired_items_are_never_returned(store: BaseStore, root: str) -> None:
    kept, gone = (root, "kept"), (root, "gone")
    await store.aput(kept, "lasting", {"content": "The user's locker is on floor 3"})
    await store.aput(kept, "fleeting", {"content": "The user's locker code is 4711"}, ttl=0.01)
    await store.aput(gone, "only", {"content": "A passing remark"}, ttl=0.01)
    assert await store.aget(kept, "fleeting", refresh_ttl=False) is not None

    await asyncio.sleep(1.5)  # the TTL is 0.6 s; no sweeper runs in between

    assert await store.aget(kept, "fleeting") is None
    assert await store.aget(gone, "only") is None
    assert _ids(await store.asearch((root,))) == {(kept, "lasting")}
    found = await store.asearch((root,), query="locker code", limit=5)
    assert "fleeting" not in {hit.key for hit in found}
    assert await store.alist_namespaces(prefix=(root,)) == [kept]


def test_the_sync_twin_behaves_the_same(
    backend_url: str, backend_settings: Settings, root: str
) -> None:
    memories = (root, "u1", "memories")
    with open_store(default_store_url(backend_url), backend_settings) as store:
        store.put(memories, "k1", {"content": "I live in Berlin"})
        store.put((root, "u10", "memories"), "k1", {"content": "I live in Paris"})
        item = store.get(memories, "k1")
        assert item is not None and item.value == {"content": "I live in Berlin"}
        assert _ids(store.search((root, "u1"))) == {(memories, "k1")}
        assert store.search(memories, query="where do I live?")[0].key == "k1"
        assert store.list_namespaces(prefix=(root,)) == [
            (root, "u1", "memories"),
            (root, "u10", "memories"),
        ]
        with pytest.raises(StoreValueError):
            store.put(memories, "k2", {"content": "nul \x00"})
        store.delete(memories, "k1")
        assert store.get(memories, "k1") is None
