"""Regression: the Redis store's get returned None for multi-label namespaces right after put.

langgraph-checkpoint-redis 0.5.2 looked items up with a quoted full-text phrase of the
dot-joined, backslash-escaped namespace; under DIALECT 2 (redis-py's default) RediSearch
2.10 keeps the backslash inside the phrase, so `get(("u1", "memories"), "k1")` found
nothing while `search(("u1",))` did, and a user's memories silently vanished. The same
full-text matching folded case and stems (a put to `("Memory",)` deleted the item of
`("memories",)`), could not find stopword labels, and let `("u1",)` match `("u10",)`.
`memory.stores.redis_store` addresses items by key and namespaces by exact TAG digests instead.
"""

from __future__ import annotations

import uuid

import redis
from langgraph.store.base import GetOp, PutOp

from memory.settings import Settings
from memory.stores.factory import aopen_store, open_store
from memory.stores.redis_store import AsyncKeyedRedisStore, KeyedRedisStore

SETTINGS = Settings(embeddings="none", ttl_minutes=None)


def _user() -> str:
    return f"u1-{uuid.uuid4().hex[:8]}"


async def test_redis_multilabel_get_returns_none(redis_url: str) -> None:
    user = _user()
    async with aopen_store(redis_url, SETTINGS) as store:
        assert isinstance(store, AsyncKeyedRedisStore)
        await store.aput((user, "memories"), "k1", {"fact": "likes tea"})
        item = await store.aget((user, "memories"), "k1")
        assert item is not None
        assert (item.namespace, item.key, item.value) == (
            (user, "memories"),
            "k1",
            {"fact": "likes tea"},
        )
        assert [hit.key for hit in await store.asearch((user,))] == ["k1"]
        # A put and a get of the same key in one batch: the get sees the state before.
        before, _ = await store.abatch(
            [GetOp((user, "memories"), "k2"), PutOp((user, "memories"), "k2", {"n": 2})]
        )
        assert before is None
        assert await store.aget((user, "memories"), "k2") is not None


def test_redis_multilabel_get_returns_none_sync_twin(redis_url: str) -> None:
    user = _user()
    with open_store(redis_url, SETTINGS) as store:
        assert isinstance(store, KeyedRedisStore)
        store.put((user, "memories", "deep", "er"), "k1", {"fact": "likes tea"})
        item = store.get((user, "memories", "deep", "er"), "k1")
        assert item is not None and item.value == {"fact": "likes tea"}


async def test_redis_folded_stemmed_and_stopword_labels_stay_apart(redis_url: str) -> None:
    user = _user()
    async with aopen_store(redis_url, SETTINGS) as store:
        await store.aput((user, "memories"), "k", {"who": "memories"})
        await store.aput((user, "Memory"), "k", {"who": "Memory"})
        await store.aput((user, "a"), "k", {"who": "a"})
        await store.aput((user, "keys"), "Key", {"who": "Key"})
        await store.aput((user, "keys"), "key", {"who": "key"})
        for namespace, key, who in [
            ((user, "memories"), "k", "memories"),
            ((user, "Memory"), "k", "Memory"),
            ((user, "a"), "k", "a"),
            ((user, "keys"), "Key", "Key"),
            ((user, "keys"), "key", "key"),
        ]:
            item = await store.aget(namespace, key)
            assert item is not None and item.value == {"who": who}, (namespace, key)


async def test_redis_items_live_at_one_key_each(redis_url: str) -> None:
    user = _user()
    async with aopen_store(redis_url, Settings(embeddings="local", ttl_minutes=None)) as store:
        assert isinstance(store, AsyncKeyedRedisStore)
        await store.aput((user, "memories"), "k1", {"content": "likes tea"})
        client = redis.Redis.from_url(redis_url)
        try:
            key = store.redis_key((user, "memories"), "k1")
            assert client.exists(key) == 1
            await store.adelete((user, "memories"), "k1")
            assert client.exists(key) == 0
        finally:
            client.close()
