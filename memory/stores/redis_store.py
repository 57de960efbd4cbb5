"""The Redis store: langgraph-checkpoint-redis's store with exact namespace and key lookups.

langgraph-checkpoint-redis 0.5.2 finds items through a full-text `prefix` field: the
namespace is joined with dots, backslash-escaped and matched as a quoted phrase. redis-py 6+
sends every query as DIALECT 2, under which RediSearch 2.10 keeps the backslash inside a
quoted phrase, so the phrase `"u1\\.memories"` never equals the indexed term `u1.memories`
and `get(("u1", "memories"), "k1")` returns None right after the put (one-label namespaces
have nothing to escape and work). Full-text and TAG matching is also wrong for ids: terms
are case-folded and stemmed, so putting `("Memory",)`/`k` deletes `("memories",)`/`k` and
putting key `key` deletes key `Key`; a search of `("u1",)` also returns `("u10",)`; and a
namespace that is a stopword (`("a",)`) can never be read back.

The same package's async store cannot even be constructed with redisvl 0.28 (it builds a
sync `SearchIndex` around its async client). The stores here therefore implement
LangGraph's `BaseStore` over the same modules (RedisJSON documents, a RediSearch index, the
package's value serialiser), with these differences:

- an item lives at a key derived from a hash of its namespace and key, so get, put and
  delete are direct JSON reads and writes, never a search;
- searches and namespace listings match hex digests of whole namespace prefixes in TAG
  fields, so labels are compared exactly, label by label;
- embeddings are stored in the item's own document (a multi-value vector field), so one key
  per item carries all of its data and its TTL;
- every document records when it expires and every query excludes expired documents, so an
  expired item is never returned, even before Redis deletes the key;
- with a `default_ttl` configured, every item gets a TTL, including puts that arrive as
  `PutOp`s with `ttl=None` (LangGraph nodes and this project's session code build those).

The logic is written once as generators that yield the Redis round trips and embedding
calls they need; the sync and async classes perform them with their own clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import random
import time
import uuid
from collections.abc import AsyncIterator, Generator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np
from langgraph.checkpoint.redis.jsonplus_redis import JsonPlusRedisSerializer
from langgraph.store.base import (
    BaseStore,
    GetOp,
    IndexConfig,
    Item,
    ListNamespacesOp,
    MatchCondition,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    TTLConfig,
    ensure_embeddings,
    get_text_at_path,
    tokenize_path,
    validate_op_namespace,
)
from langgraph.store.base.batch import AsyncBatchedBaseStore
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError, ResponseError

from memory.stores.atomic import Change, UpdateConflictError, put_of
from memory.stores.outages import Breaker, bounded
from memory.stores.values import EarlyPutCheck, checked, matches_filter

__all__ = [
    "DEFAULT_PREFIX",
    "AsyncKeyedRedisStore",
    "KeyedRedisStore",
    "RedisStoreSetupError",
    "async_redis_client",
    "redis_client",
]

#: Key prefix of store documents; the index names derive from it.
DEFAULT_PREFIX = "memory-agent:store"
#: `expires_at` of documents that never expire (milliseconds: the year 10000).
NEVER_MS = 253_402_300_800_000
#: Documents fetched per round trip when a search must scan (value filters).
_SCAN_PAGE = 500
#: Upper bound on rows a namespace listing aggregates.
_MAX_NAMESPACES = 1_000_000
_METRICS = {"cosine": "COSINE", "inner_product": "IP", "l2": "L2"}
#: Every query: no time limit (RediSearch's default returns partial results after 500 ms),
#: and the dialect that KNN queries and parameters need.
_QUERY_OPTIONS = ("TIMEOUT", 0, "DIALECT", 2)
#: Version of the document layout and index schema; a new layout gets a new index name.
SCHEMA_VERSION = 1


class RedisStoreSetupError(RuntimeError):
    """The Redis server cannot hold the store (missing modules or an incompatible index)."""


def _resp2_url(url: str) -> str:
    """`url` without a `protocol` option: the store parses RESP2 replies."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k.lower() != "protocol"]
    return urlunsplit(parts._replace(query=urlencode(query)))


def redis_client(url: str, timeout: float | None = None) -> Redis:
    """A sync client for `url` that speaks RESP2, whose replies the store parses; with
    `timeout`, a server that does not answer within it raises instead of hanging."""
    return Redis.from_url(
        _resp2_url(url), protocol=2, socket_timeout=timeout, socket_connect_timeout=timeout
    )


def async_redis_client(url: str, timeout: float | None = None) -> AsyncRedis:
    """Async `redis_client`."""
    return AsyncRedis.from_url(
        _resp2_url(url), protocol=2, socket_timeout=timeout, socket_connect_timeout=timeout
    )


# --------------------------------------------------------------------------- encoding


def _digest(parts: Any) -> str:
    """A fixed-width, case-sensitive, escape-free token for a namespace or an item id."""
    raw = json.dumps(parts, ensure_ascii=True).encode("ascii")
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


def _encode_namespace(namespace: Sequence[str]) -> str:
    """The namespace as a TAG value that aggregations return verbatim (hex of its JSON)."""
    return json.dumps(list(namespace), ensure_ascii=True).encode("ascii").hex()


def _decode_namespace(value: str | bytes) -> tuple[str, ...]:
    text = value.decode() if isinstance(value, bytes) else value
    return tuple(json.loads(bytes.fromhex(text).decode("ascii")))


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _datetime(micros: int) -> datetime:
    return datetime.fromtimestamp(micros / 1_000_000, UTC)


def _alive(now_ms: int) -> str:
    """Query clause for documents that have not expired at `now_ms`."""
    return f"@expires_at:[({now_ms} +inf]"


def _scope(namespace_prefix: Sequence[str], now_ms: int) -> str:
    """Query for live documents in `namespace_prefix` or below it (label-exact)."""
    if not namespace_prefix:
        return _alive(now_ms)
    return f"@ns_path:{{{_digest(list(namespace_prefix))}}} {_alive(now_ms)}"


def _namespace_matches(namespace: tuple[str, ...], condition: MatchCondition) -> bool:
    path = tuple(condition.path)
    if len(namespace) < len(path):
        return False
    part = namespace[: len(path)] if condition.match_type == "prefix" else namespace[-len(path) :]
    if not path:
        return True
    return all(want == "*" or want == got for got, want in zip(part, path, strict=True))


def _search_rows(reply: list[Any]) -> list[tuple[str, dict[str, Any]]]:
    """`(key, fields)` pairs of an FT.SEARCH reply (RESP2)."""
    rows = []
    for i in range(1, len(reply), 2):
        raw = reply[i + 1] if i + 1 < len(reply) else []
        fields = {_text(raw[j]): raw[j + 1] for j in range(0, len(raw), 2)}
        rows.append((_text(reply[i]), fields))
    return rows


# --------------------------------------------------------------------------- requests


def index_missing(exc: BaseException) -> bool:
    """Whether a server error says a RediSearch index does not exist (a server restarted
    without its data, or flushed, has none until they are created again)."""
    text = str(exc).lower()
    return "no such index" in text or "unknown index name" in text


@dataclass
class _Round:
    """One round trip: commands sent together, as a MULTI/EXEC transaction if asked."""

    commands: list[tuple[Any, ...]]
    transaction: bool = False


@dataclass
class _Embed:
    """Embed texts as documents, or one text as a query."""

    texts: list[str]
    query: bool = False


@dataclass
class _Pause:
    """Wait before the next attempt of a compare-and-set loop."""

    seconds: float


@dataclass
class _Stored:
    """A store document as read back: the item and its TTL bookkeeping."""

    item: Item
    ttl_minutes: float | None
    redis_key: str


_Steps = Generator[_Round | _Embed | _Pause, Any, Any]

#: Turns an update waits for the item's lock (1-3 ms apart) before it gives up.
UPDATE_ATTEMPTS = 3000
#: Compare-and-set writes an update may lose (its lock ran out meanwhile) before it gives up.
_CAS_ATTEMPTS = 10
#: How long an update's lock is held at most (it is released as soon as it has written).
_LOCK_MS = 2000
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# Runs a put's commands only if the document is still the one read (ARGV[1] = 1: absent).
_GUARDED_PUT = """
local current = redis.call('JSON.GET', KEYS[1])
if ARGV[1] == '1' then
  if current then return 0 end
elseif current ~= ARGV[2] then
  return 0
end
for _, command in ipairs(cjson.decode(ARGV[3])) do redis.call(unpack(command)) end
return 1
"""


class _KeyedCore:
    """Shared logic of the sync and async stores; subclasses supply the I/O."""

    supports_ttl = True
    index_config: IndexConfig | None
    ttl_config: TTLConfig | None

    def _configure(self, index: IndexConfig | None, ttl: TTLConfig | None, key_prefix: str) -> None:
        self.key_prefix = key_prefix
        self.ttl_config = ttl
        self.index_config = None
        self.embeddings: Any = None
        self._serde = JsonPlusRedisSerializer()
        self._dims: int | None = None
        self._metric = "cosine"
        if index:
            config = cast(dict[str, Any], dict(index))
            fields = config.get("fields") or ["$"]
            fields = [fields] if isinstance(fields, str) else list(fields)
            config["__tokenized_fields"] = [
                (path, path if path == "$" else tokenize_path(path)) for path in fields
            ]
            metric = str(config.get("distance_type", "cosine")).lower()
            if metric not in _METRICS:
                raise ValueError(
                    f"unsupported distance_type {metric!r}: use cosine, inner_product or l2"
                )
            self.index_config = cast(IndexConfig, config)
            self.embeddings = ensure_embeddings(config.get("embed"))
            self._dims = int(config["dims"])
            self._metric = metric

    def _serialize_value(self, value: Any) -> Any:
        """The value as JSON; values that are not plain JSON are wrapped by the serialiser."""
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            kind, data = self._serde.dumps_typed(value)
            encoded = data.decode() if kind == "json" else data.hex()
            return {"__serde_type__": kind, "__serde_data__": encoded}
        return value

    def _deserialize_value(self, value: Any) -> Any:
        if isinstance(value, dict) and set(value) == {"__serde_type__", "__serde_data__"}:
            kind, data = value["__serde_type__"], value["__serde_data__"]
            raw = data.encode() if kind == "json" else bytes.fromhex(data)
            return self._serde.loads_typed((kind, raw))
        return value

    # -- naming --------------------------------------------------------------

    @property
    def index_name(self) -> str:
        """The RediSearch index over the store documents (one per vector layout)."""
        suffix = f":vec{self._dims}:{self._metric}" if self._dims else ""
        return f"{self.key_prefix}:idx:v{SCHEMA_VERSION}{suffix}"

    def redis_key(self, namespace: Sequence[str], key: str) -> str:
        """The Redis key of the document holding item `key` of `namespace`."""
        return f"{self.key_prefix}:{_digest({'namespace': list(namespace), 'key': key})}"

    def _create_index_command(self) -> tuple[Any, ...]:
        schema: list[Any] = [
            "$.ns",
            "AS",
            "ns",
            "TAG",
            "$.ns_path[*]",
            "AS",
            "ns_path",
            "TAG",
            "$.updated_at",
            "AS",
            "updated_at",
            "NUMERIC",
            "SORTABLE",
            "$.expires_at",
            "AS",
            "expires_at",
            "NUMERIC",
        ]
        if self._dims:
            schema += ["$.embedding[*]", "AS", "embedding", "VECTOR", "FLAT", 6]
            schema += ["TYPE", "FLOAT32", "DIM", self._dims]
            schema += ["DISTANCE_METRIC", _METRICS[self._metric]]
        return (
            "FT.CREATE",
            self.index_name,
            "ON",
            "JSON",
            "PREFIX",
            1,
            f"{self.key_prefix}:",
            "SCHEMA",
            *schema,
        )

    # -- steps ---------------------------------------------------------------

    def _setup_steps(self) -> _Steps:
        (modules,) = yield _Round([("MODULE", "LIST")])
        names = set()
        for entry in modules:
            pairs = dict(zip(entry[::2], entry[1::2], strict=False))
            names.add(_text(pairs.get(b"name") or pairs.get("name") or b"").lower())
        missing = {"rejson", "search"} - names
        if missing:
            raise RedisStoreSetupError(
                f"the Redis server lacks the modules {sorted(missing)}: the store needs "
                "RedisJSON and RediSearch (Redis Stack, Redis 8, or Valkey with both loaded)"
            )
        try:
            yield _Round([self._create_index_command()])
        except ResponseError as exc:
            message = str(exc).lower()
            if "db != 0" in message:
                raise RedisStoreSetupError(
                    "RediSearch indexes only live in database 0: use a redis://host:port/0 URL"
                ) from exc
            if "already exists" not in message:
                raise

    def _batch_steps(self, ops: Iterable[Op]) -> _Steps:
        ops = list(ops)
        results: list[Result] = [None] * len(ops)
        gets = [(i, op) for i, op in enumerate(ops) if isinstance(op, GetOp)]
        searches = [(i, op) for i, op in enumerate(ops) if isinstance(op, SearchOp)]
        lists = [(i, op) for i, op in enumerate(ops) if isinstance(op, ListNamespacesOp)]
        puts = [op for op in ops if isinstance(op, PutOp)]
        for op in ops:
            if not isinstance(op, GetOp | SearchOp | ListNamespacesOp | PutOp):
                raise ValueError(f"unknown store operation {type(op).__name__}")
            validate_op_namespace(op)
        # Reads see the state before this batch's writes, as in the other stores.
        refresh: list[_Stored] = []
        if gets:
            found = yield from self._get_steps([op for _, op in gets])
            for (i, op), stored in zip(gets, found, strict=True):
                results[i] = stored.item if stored else None
                if stored and op.refresh_ttl:
                    refresh.append(stored)
        for i, op in searches:
            stored_items = yield from self._search_steps(op)
            results[i] = [s.item for s in stored_items]
            if op.refresh_ttl:
                refresh.extend(stored_items)
        for i, op in lists:
            results[i] = yield from self._list_steps(op)
        if refresh:
            yield from self._refresh_steps(refresh)
        if puts:
            yield from self._put_steps(puts)
        return results

    def _parse_doc(self, redis_key: str, raw: Any, score: float | None = None) -> _Stored | None:
        if raw is None:
            return None
        doc = json.loads(raw)
        if isinstance(doc, list):  # JSON.GET with a `$` path answers with a list
            if not doc:
                return None
            doc = doc[0]
        namespace = tuple(doc["namespace"])
        value = self._deserialize_value(doc["value"])
        common = {
            "value": value,
            "key": doc["key"],
            "namespace": namespace,
            "created_at": _datetime(doc["created_at"]),
            "updated_at": _datetime(doc["updated_at"]),
        }
        item: Item = SearchItem(**common, score=score) if score is not None else Item(**common)
        return _Stored(item, doc.get("ttl_minutes"), redis_key)

    def _get_steps(self, ops: Sequence[GetOp]) -> _Steps:
        keys = [self.redis_key(op.namespace, op.key) for op in ops]
        replies = yield _Round([("JSON.GET", key) for key in keys])
        return [self._parse_doc(key, raw) for key, raw in zip(keys, replies, strict=True)]

    def _search_steps(self, op: SearchOp) -> _Steps:
        if op.limit <= 0 or op.offset < 0:
            return []
        if op.query and self._dims:
            return (yield from self._vector_search_steps(op))
        query = _scope(op.namespace_prefix, _now_ms())
        wanted = op.offset + op.limit
        if not op.filter:
            page = yield from self._fetch_page(query, op.offset, op.limit)
            return page
        matched: list[_Stored] = []
        start = 0
        while len(matched) < wanted:
            page = yield from self._fetch_page(query, start, _SCAN_PAGE)
            matched += [s for s in page if matches_filter(s.item.value, op.filter)]
            if len(page) < _SCAN_PAGE:
                break
            start += _SCAN_PAGE
        return matched[op.offset : wanted]

    def _fetch_page(self, query: str, offset: int, limit: int) -> _Steps:
        command: tuple[Any, ...] = (
            *("FT.SEARCH", self.index_name, query, "SORTBY", "updated_at", "DESC"),
            *("RETURN", 1, "$", "LIMIT", offset, limit, *_QUERY_OPTIONS),
        )
        (reply,) = yield _Round([command])
        docs = (self._parse_doc(key, fields.get("$")) for key, fields in _search_rows(reply))
        return [doc for doc in docs if doc is not None]

    def _score(self, distance: float) -> float:
        if self._metric == "l2":  # RediSearch reports the squared euclidean distance
            return -math.sqrt(max(distance, 0.0))
        return 1.0 - distance  # cosine and inner product distances are 1 - similarity

    def _vector_search_steps(self, op: SearchOp) -> _Steps:
        (vector,) = yield _Embed([cast(str, op.query)], query=True)
        blob = np.asarray(vector, dtype=np.float32).tobytes()
        wanted = op.offset + op.limit
        k = max(wanted, 10)
        while True:
            query = f"({_scope(op.namespace_prefix, _now_ms())})=>[KNN $K @embedding $BLOB AS dist]"
            command: tuple[Any, ...] = (
                *("FT.SEARCH", self.index_name, query, "PARAMS", 4, "K", k, "BLOB", blob),
                *("SORTBY", "dist", "ASC", "RETURN", 2, "dist", "$"),
                *("LIMIT", 0, k, *_QUERY_OPTIONS),
            )
            (reply,) = yield _Round([command])
            rows = _search_rows(reply)
            found: list[_Stored] = []
            for key, fields in rows:
                score = self._score(float(_text(fields["dist"])))
                stored = self._parse_doc(key, fields.get("$"), score=score)
                if stored and (not op.filter or matches_filter(stored.item.value, op.filter)):
                    found.append(stored)
            if len(found) >= wanted or len(rows) < k:
                return found[op.offset : wanted]
            k *= 4

    def _list_steps(self, op: ListNamespacesOp) -> _Steps:
        now = _now_ms()
        query = _alive(now)
        for condition in op.match_conditions or ():
            path = tuple(condition.path)
            if condition.match_type == "prefix" and path and "*" not in path:
                query = _scope(path, now)
                break
        command: tuple[Any, ...] = (
            *("FT.AGGREGATE", self.index_name, query, "GROUPBY", 1, "@ns"),
            *("LIMIT", 0, _MAX_NAMESPACES, *_QUERY_OPTIONS),
        )
        (reply,) = yield _Round([command])
        namespaces: set[tuple[str, ...]] = set()
        for row in reply[1:]:
            pairs = dict(zip(row[::2], row[1::2], strict=False))
            encoded = pairs.get(b"ns", pairs.get("ns"))
            if encoded is None:
                continue
            namespace = _decode_namespace(encoded)
            if all(_namespace_matches(namespace, c) for c in op.match_conditions or ()):
                depth = op.max_depth
                namespaces.add(namespace[:depth] if depth is not None else namespace)
        return sorted(namespaces)[op.offset : op.offset + op.limit]

    def _refresh_steps(self, stored: Sequence[_Stored]) -> _Steps:
        now = _now_ms()
        commands: list[tuple[Any, ...]] = []
        for entry in {s.redis_key: s for s in stored}.values():
            if entry.ttl_minutes is None:
                continue
            ttl_ms = max(1, round(entry.ttl_minutes * 60_000))
            # XX: a key deleted meanwhile is not resurrected as a bare expiry field.
            commands.append(("JSON.SET", entry.redis_key, "$.expires_at", now + ttl_ms, "XX"))
            commands.append(("PEXPIRE", entry.redis_key, ttl_ms))
        if commands:
            yield _Round(commands, transaction=True)

    def _update_steps(self, namespace: tuple[str, ...], key: str, change: Change) -> _Steps:
        """Read the document, apply `change`, write only if the document is unchanged.

        Writers of one item take turns under a short lock (`SET NX PX`), so the change (and
        its embedding) runs once per update rather than once per lost race; the write itself
        is still a compare-and-set, so a holder whose lock ran out cannot overwrite a newer
        value: it reads again. Both loops are bounded."""
        redis_key = self.redis_key(namespace, key)
        lock_key = f"{self.key_prefix}-lock:{redis_key.rsplit(':', 1)[1]}"
        token = uuid.uuid4().hex
        conflicts = 0
        for _ in range(UPDATE_ATTEMPTS):
            (locked,) = yield _Round([("SET", lock_key, token, "NX", "PX", _LOCK_MS)])
            if not locked:
                yield _Pause(random.uniform(0.0005, 0.003))
                continue
            try:
                (raw,) = yield _Round([("JSON.GET", redis_key)])
                stored = self._parse_doc(redis_key, raw)
                op = put_of(namespace, key, change(stored.item if stored else None))
                written = yield from self._put_steps([op], guard=(raw is None, raw or ""))
            finally:
                yield _Round([("EVAL", _UNLOCK, 1, lock_key, token)])
            if written:
                (after,) = yield from self._get_steps([GetOp(namespace, key)])
                return after.item if after else None
            conflicts += 1
            if conflicts >= _CAS_ATTEMPTS:
                break
        raise UpdateConflictError(
            f"store item {key!r} stayed busy through {UPDATE_ATTEMPTS} attempts; try again"
        )

    def _put_steps(self, puts: Sequence[PutOp], guard: tuple[bool, Any] | None = None) -> _Steps:
        latest: dict[tuple[tuple[str, ...], str], PutOp] = {}
        for op in puts:  # the last write to a key wins
            latest[(op.namespace, op.key)] = op
        ops = list(latest.values())
        keys = [self.redis_key(op.namespace, op.key) for op in ops]
        created = yield _Round([("JSON.GET", key, "$.created_at") for key in keys])
        texts: list[str] = []
        owners: list[int] = []
        for n, op in enumerate(ops):
            for text in self._texts_to_embed(op):
                texts.append(text)
                owners.append(n)
        vectors = (yield _Embed(texts)) if texts else []
        by_op: dict[int, list[list[float]]] = {}
        for n, vector in zip(owners, vectors, strict=True):
            by_op.setdefault(n, []).append([float(x) for x in vector])
        now_us = time.time_ns() // 1000
        now = now_us // 1000
        # Puts built as PutOps (not through `put`) carry ttl=None; with a default TTL
        # configured, every item the store writes still gets one.
        default_ttl = (self.ttl_config or {}).get("default_ttl")
        commands: list[tuple[Any, ...]] = []
        for n, (op, key, old) in enumerate(zip(ops, keys, created, strict=True)):
            commands.append(("DEL", key))
            if op.value is None:
                continue
            previous = json.loads(old) if old else []
            ttl = op.ttl if op.ttl is not None else default_ttl
            ttl_ms = max(1, round(ttl * 60_000)) if ttl is not None else None
            doc: dict[str, Any] = {
                "namespace": list(op.namespace),
                "key": op.key,
                "value": self._serialize_value(op.value),
                "created_at": previous[0] if previous else now_us,
                "updated_at": now_us,
                "ttl_minutes": ttl,
                "expires_at": now + ttl_ms if ttl_ms else NEVER_MS,
                "ns": _encode_namespace(op.namespace),
                "ns_path": [
                    _digest(list(op.namespace[:i])) for i in range(1, len(op.namespace) + 1)
                ],
            }
            if n in by_op:
                doc["embedding"] = by_op[n]
            commands.append(("JSON.SET", key, "$", json.dumps(doc, ensure_ascii=False)))
            if ttl_ms:
                commands.append(("PEXPIRE", key, ttl_ms))
        if guard is None:
            yield _Round(commands, transaction=True)
            return True
        absent, raw = guard
        script = json.dumps(
            [[_text(a) if isinstance(a, bytes) else str(a) for a in c] for c in commands]
        )
        (done,) = yield _Round([("EVAL", _GUARDED_PUT, 1, keys[0], int(absent), raw, script)])
        return bool(done)

    def _texts_to_embed(self, op: PutOp) -> list[str]:
        if op.value is None or op.index is False or not self.index_config:
            return []
        if op.index is None:
            paths = self.index_config["__tokenized_fields"]  # type: ignore[typeddict-item]
        else:
            paths = [(path, tokenize_path(path)) for path in op.index]
        texts: list[str] = []
        for _, tokens in paths:
            texts.extend(get_text_at_path(op.value, tokens))
        return texts


class KeyedRedisStore(_KeyedCore, BaseStore):
    """Sync Redis store with exact lookups (see the module docstring).

    Args:
        conn: A Redis client speaking RESP2 (see `redis_client`); the caller closes it.
        index: Semantic index configuration (`dims`, `embed`, `fields`, `distance_type`).
        ttl: TTL configuration; items written with a TTL expire in Redis and are never
            returned once expired.
        key_prefix: Prefix of every key the store writes.
    """

    def __init__(
        self,
        conn: Redis,
        *,
        index: IndexConfig | None = None,
        ttl: TTLConfig | None = None,
        key_prefix: str = DEFAULT_PREFIX,
    ) -> None:
        super().__init__()
        self._redis = conn
        self._configure(index, ttl, key_prefix)

    @classmethod
    @contextmanager
    def from_conn_string(
        cls,
        conn_string: str,
        *,
        index: IndexConfig | None = None,
        ttl: TTLConfig | None = None,
        key_prefix: str = DEFAULT_PREFIX,
    ) -> Iterator[KeyedRedisStore]:
        """Open a client for `conn_string`, set the store up, and close the client on exit."""
        client = redis_client(conn_string)
        try:
            store = cls(client, index=index, ttl=ttl, key_prefix=key_prefix)
            store.setup()
            yield store
        finally:
            client.close()

    def setup(self) -> None:
        """Check the server's modules and create the index (idempotent)."""
        self._drive(self._setup_steps())

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        """Execute store operations: reads first, then writes."""
        return cast(list[Result], self._drive(self._batch_steps(checked(ops))))

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """Execute store operations in a worker thread (this store's client is sync)."""
        return await asyncio.get_running_loop().run_in_executor(None, self.batch, list(ops))

    def _drive(self, steps: _Steps) -> Any:
        try:
            request = steps.send(None)
            while True:
                try:
                    result = self._perform(request)
                except RedisError as exc:  # the steps decide whether a server error is fatal
                    request = steps.throw(exc)
                else:
                    request = steps.send(result)
        except StopIteration as done:
            return done.value

    def update(self, namespace: tuple[str, ...], key: str, change: Change) -> Item | None:
        """Apply `change` to the item atomically (a compare-and-set loop); the item after
        it, None if deleted."""
        return cast(Item | None, self._drive(self._update_steps(namespace, key, change)))

    async def aupdate(self, namespace: tuple[str, ...], key: str, change: Change) -> Item | None:
        """Async `update`, in a worker thread."""
        return await asyncio.to_thread(self.update, namespace, key, change)

    def _perform(self, request: _Round | _Embed | _Pause) -> Any:
        if isinstance(request, _Pause):
            return time.sleep(request.seconds)
        if isinstance(request, _Round):
            return self._execute(request)
        if request.query:
            return [self.embeddings.embed_query(request.texts[0])]
        return self.embeddings.embed_documents(request.texts)

    def _execute(self, request: _Round) -> list[Any]:
        if not request.commands:
            return []
        try:
            return self._pipeline(request)
        except ResponseError as exc:
            if not index_missing(exc):
                raise
        # The server lost its data (restarted without it, or flushed): the index again.
        self._drive(self._setup_steps())
        return self._pipeline(request)

    def _pipeline(self, request: _Round) -> list[Any]:
        pipe = self._redis.pipeline(transaction=request.transaction)
        for command in request.commands:
            pipe.execute_command(*command)
        return list(pipe.execute())


class AsyncKeyedRedisStore(_KeyedCore, EarlyPutCheck, AsyncBatchedBaseStore):
    """Async Redis store with exact lookups (see the module docstring).

    Concurrent `aget`/`aput`/`asearch` calls are gathered into batches by LangGraph's
    `AsyncBatchedBaseStore`; construct it inside the event loop that uses it.

    Args:
        redis_client: An async Redis client speaking RESP2 (see `async_redis_client`);
            the caller closes it.
        index: Semantic index configuration (`dims`, `embed`, `fields`, `distance_type`).
        ttl: TTL configuration; items written with a TTL expire in Redis and are never
            returned once expired.
        key_prefix: Prefix of every key the store writes.
        breaker: Bounds each round trip (see `memory.stores.outages.Breaker`); None: no
            deadline.
    """

    def __init__(
        self,
        redis_client: AsyncRedis,
        *,
        index: IndexConfig | None = None,
        ttl: TTLConfig | None = None,
        key_prefix: str = DEFAULT_PREFIX,
        breaker: Breaker | None = None,
    ) -> None:
        super().__init__()
        self._redis = redis_client
        self.breaker = breaker
        self._configure(index, ttl, key_prefix)

    @classmethod
    @asynccontextmanager
    async def from_conn_string(
        cls,
        conn_string: str,
        *,
        index: IndexConfig | None = None,
        ttl: TTLConfig | None = None,
        key_prefix: str = DEFAULT_PREFIX,
    ) -> AsyncIterator[AsyncKeyedRedisStore]:
        """Open a client for `conn_string`, set the store up, and close the client on exit."""
        client = async_redis_client(conn_string)
        store = cls(client, index=index, ttl=ttl, key_prefix=key_prefix)
        try:
            await store.setup()
            yield store
        finally:
            await store.aclose()
            await client.aclose()

    async def setup(self) -> None:
        """Check the server's modules and create the index (idempotent)."""
        await self._adrive(self._setup_steps())

    async def aclose(self) -> None:
        """Stop the background batching task (the client belongs to the caller)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """Execute store operations: reads first, then writes."""
        return cast(list[Result], await self._adrive(self._batch_steps(checked(ops))))

    async def _adrive(self, steps: _Steps) -> Any:
        try:
            request = steps.send(None)
            while True:
                try:
                    result = await self._aperform(request)
                except RedisError as exc:  # the steps decide whether a server error is fatal
                    request = steps.throw(exc)
                else:
                    request = steps.send(result)
        except StopIteration as done:
            return done.value

    async def aupdate(self, namespace: tuple[str, ...], key: str, change: Change) -> Item | None:
        """Apply `change` to the item atomically (a compare-and-set loop); the item after
        it, None if deleted."""
        steps = self._update_steps(namespace, key, change)
        return cast(Item | None, await self._adrive(steps))

    def update(self, namespace: tuple[str, ...], key: str, change: Change) -> Item | None:
        raise TypeError("this store is async: use `await store.aupdate(...)`")

    async def _aperform(self, request: _Round | _Embed | _Pause) -> Any:
        if isinstance(request, _Pause):
            return await asyncio.sleep(request.seconds)
        if isinstance(request, _Round):
            return await bounded(self.breaker, self._aexecute(request))
        if request.query:
            return [await self.embeddings.aembed_query(request.texts[0])]
        return await self.embeddings.aembed_documents(request.texts)

    async def _aexecute(self, request: _Round) -> list[Any]:
        if not request.commands:
            return []
        try:
            return await self._apipeline(request)
        except ResponseError as exc:
            if not index_missing(exc):
                raise
        # The server lost its data (restarted without it, or flushed): the index again.
        await self._adrive(self._setup_steps())
        return await self._apipeline(request)

    async def _apipeline(self, request: _Round) -> list[Any]:
        pipe = self._redis.pipeline(transaction=request.transaction)
        for command in request.commands:
            pipe.execute_command(*command)
        return list(await pipe.execute())
