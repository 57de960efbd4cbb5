"""The session database on Redis: every operation is one Lua script, atomic on the server.

Keys (all under `memory_agent:`), with `K` an owner's `tenant/user` and `T` a thread key:

- `session:T`: the session record (JSON);
- `sessions:K`: the owner's thread ids, scored by last activity (list order);
- `open:K`: the owner's open (active) thread ids, whose count is the cap's count;
- `idle`: every active thread key, scored by last activity (the idle sweeper's index);
- `lease:T`, `lease:<name>`: a lease token with a millisecond expiry (`SET NX PX`);
- `rate:K`: the owner's runs of the last window, scored by time;
- `transcript:T`: the thread's transcript, one JSON record per list element;
- `counts:T`: the transcript's records by role (a hash), changed by the script that
  changes the transcript;
- `run:…`, `runs:…`, `run_events:…`: the LangGraph runs (`memory.stores.rundb_redis`);
- `schema`: the database's schema version (`memory.stores.schema`), never expiring, and
  `lease:schema-upgrade`, held (`SET NX PX`) by the process upgrading it.

With a TTL (`MEMORY_AGENT_TTL_MINUTES`) every key a script touches, but leases and rate
windows (which carry their own expiry), expires that long after its last use.

Times come from the server's clock (`TIME`), so hosts with skewed clocks agree.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agent.namespaces import Owner
from memory.errors import UnavailableError
from memory.stores import schema
from memory.stores.outages import Breaker
from memory.stores.rundb_redis import RedisRunDB
from memory.stores.sessiondb import (
    Claim,
    LeaseLostError,
    RateLimit,
    Record,
    SessionDB,
    Steps,
    dumps,
    iso_ms,
    with_counts,
)

PREFIX = "memory_agent:"

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

_INSERT = """
local function insert(rec_key, list_key, open_key, idle_key, record, thread_id, thread_key, score)
  redis.call('SET', rec_key, record)
  redis.call('ZADD', list_key, score, thread_id)
  redis.call('SADD', open_key, thread_id)
  redis.call('ZADD', idle_key, score, thread_key)
end
"""

_COUNTS = """
local function count(counts_key, records, delta)
  for _, r in ipairs(records) do
    if r ~= 'null' then
      local role = cjson.decode(r)['role']
      if type(role) ~= 'string' then role = 'unknown' end
      redis.call('HINCRBY', counts_key, role, delta)
    end
  end
end
-- Records from `start` on leave the list and the counts; a thread written before counts
-- were kept is counted first.
local function cut(list_key, counts_key, start)
  local len = redis.call('LLEN', list_key)
  if len > 0 and redis.call('EXISTS', counts_key) == 0 then
    count(counts_key, redis.call('LRANGE', list_key, 0, -1), 1)
  end
  if start >= len then return len end
  count(counts_key, redis.call('LRANGE', list_key, start, -1), -1)
  if start <= 0 then redis.call('DEL', list_key) else redis.call('LTRIM', list_key, 0, start - 1) end
  return start
end
"""

SCRIPTS: dict[str, str] = {
    # KEYS: record, list, open, idle. ARGV: record, cap, thread_id, thread_key, score, active
    "create": _INSERT
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then return 'exists' end
if ARGV[6] == '1' and redis.call('SCARD', KEYS[3]) >= tonumber(ARGV[2]) then return 'full' end
if ARGV[6] == '1' then
  insert(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[3], ARGV[4], ARGV[5])
else
  redis.call('SET', KEYS[1], ARGV[1])
  redis.call('ZADD', KEYS[2], ARGV[5], ARGV[3])
end
return 'created'
""",
    # KEYS: lease, rate, record, list, open, idle, counts.
    # ARGV: token, lease_ms, limit (0: none), window_ms, new record or '', cap, thread_id,
    #       thread_key, score
    "begin": _NOW
    + _INSERT
    + """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {'busy'} end
local limit = tonumber(ARGV[3])
if limit > 0 then
  local window = tonumber(ARGV[4])
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
  if redis.call('ZCARD', KEYS[2]) >= limit then
    local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    redis.call('DEL', KEYS[1])
    return {'limited', tostring(tonumber(first[2]) + window - now)}
  end
  redis.call('ZADD', KEYS[2], now, ARGV[1])
  redis.call('PEXPIRE', KEYS[2], window)
end
local record = redis.call('GET', KEYS[3])
if record then return {'ok', record, redis.call('HGETALL', KEYS[7])} end
if ARGV[5] == '' then redis.call('DEL', KEYS[1]); return {'missing'} end
if redis.call('SCARD', KEYS[5]) >= tonumber(ARGV[6]) then
  redis.call('DEL', KEYS[1])
  return {'full'}
end
insert(KEYS[3], KEYS[4], KEYS[5], KEYS[6], ARGV[5], ARGV[7], ARGV[8], ARGV[9])
return {'created', ARGV[5]}
""",
    # KEYS: lease, record, list, idle. ARGV: token or '', record, status, thread_id,
    #       thread_key, score, release ('1')
    "save": """
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local current = redis.call('GET', KEYS[2])
if not current or cjson.decode(current)['status'] ~= ARGV[3] then return 0 end
if ARGV[7] == '1' then redis.call('DEL', KEYS[1]) end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[6], ARGV[4])
if ARGV[3] == 'active' then redis.call('ZADD', KEYS[4], ARGV[6], ARGV[5]) end
return 1
""",
    # KEYS: record, list, open, idle. ARGV: expected status, record, new status, thread_id,
    #       thread_key, score
    "set_status": """
local current = redis.call('GET', KEYS[1])
if not current or cjson.decode(current)['status'] ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[6], ARGV[4])
if ARGV[3] == 'active' then
  redis.call('SADD', KEYS[3], ARGV[4])
  redis.call('ZADD', KEYS[4], ARGV[6], ARGV[5])
else
  redis.call('SREM', KEYS[3], ARGV[4])
  redis.call('ZREM', KEYS[4], ARGV[5])
end
return 1
""",
    # KEYS: record, list, open, idle, transcript, counts. ARGV: thread_id, thread_key
    "remove": """
local current = redis.call('GET', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[5], KEYS[6])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[2])
return current
""",
    # KEYS: list. ARGV: offset, limit, record key prefix, counts key prefix.
    # Answers the total, then each record followed by its counts.
    "list": """
local total = redis.call('ZCARD', KEYS[1])
local ids = redis.call('ZREVRANGE', KEYS[1], ARGV[1], tonumber(ARGV[1]) + tonumber(ARGV[2]) - 1)
local out = {total}
for _, id in ipairs(ids) do
  table.insert(out, redis.call('GET', ARGV[3] .. id) or false)
  table.insert(out, redis.call('HGETALL', ARGV[4] .. id))
end
return out
""",
    # KEYS: idle. ARGV: before (ms), limit, record key prefix
    "idle": """
local keys = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, ARGV[2])
if #keys == 0 then return {} end
for i, k in ipairs(keys) do keys[i] = ARGV[3] .. k end
return redis.call('MGET', unpack(keys))
""",
    # KEYS: record, counts
    "get": "return {redis.call('GET', KEYS[1]) or false, redis.call('HGETALL', KEYS[2])}",
    "exists": "return redis.call('EXISTS', KEYS[1])",
    # KEYS: lease. ARGV: token, lease_ms
    "acquire": """
local held = redis.call('GET', KEYS[1])
if held and held ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
""",
    "renew": """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
""",
    "release": """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
""",
    # KEYS: lease, transcript, counts. ARGV: token or '', start, records...
    "append": _COUNTS
    + """
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
if #ARGV <= 3 then return 1 end
local start = tonumber(ARGV[2])
local len = cut(KEYS[2], KEYS[3], start)
while len < start do redis.call('RPUSH', KEYS[2], 'null'); len = len + 1 end
local records = {}
for i = 3, #ARGV - 1 do records[#records + 1] = ARGV[i] end
redis.call('RPUSH', KEYS[2], unpack(records))
count(KEYS[3], records, 1)
return 1
""",
    # KEYS: transcript, counts. ARGV: start
    "truncate": _COUNTS
    + """
cut(KEYS[1], KEYS[2], tonumber(ARGV[1]))
return 1
""",
    # KEYS: transcript. ARGV: offset (negative: from the end), limit
    "page": """
local total = redis.call('LLEN', KEYS[1])
local start = tonumber(ARGV[1])
if start < 0 then start = math.max(0, total + start) end
local stop = math.min(total, start + tonumber(ARGV[2]))
if stop <= start then return {total} end
local out = redis.call('LRANGE', KEYS[1], start, stop - 1)
table.insert(out, 1, total)
return out
""",
}


_TTL = """
local result = main()
local ttl = tonumber(ARGV[#ARGV])
if ttl > 0 then
  for _, key in ipairs(KEYS) do
    if not string.find(key, ':lease:', 1, true) and not string.find(key, ':rate:', 1, true) then
      redis.call('PEXPIRE', key, ttl)
    end
  end
end
return result
"""


def _wrapped(body: str) -> str:
    """A script whose keys (but leases and rate windows) expire `ttl` ms after each use;
    the caller passes the TTL as the last argument (0: keys never expire)."""
    return f"local function main()\n{body}\nend\n{_TTL}"


@dataclass(frozen=True)
class Script:
    """One Lua script call."""

    name: str
    keys: tuple[str, ...]
    args: tuple[Any, ...]


@dataclass(frozen=True)
class Command:
    """One plain Redis command: no script, no TTL applied to its key."""

    args: tuple[Any, ...]


@dataclass(frozen=True)
class Pause:
    """Wait this many seconds (`time.sleep` or `asyncio.sleep` by the driver)."""

    seconds: float


_SCHEMA_KEY = f"{PREFIX}schema"
_UPGRADE_LOCK = "schema-upgrade"
#: How long the upgrade lock lasts unless renewed (between steps), and how long another
#: process's lock is waited for.
_UPGRADE_LOCK_MS = 30_000
_UPGRADE_WAIT_SECONDS = 60.0


def _owner_key(owner: Owner) -> str:
    return owner.key


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _record_keys(owner: Owner, thread_id: str) -> tuple[str, str, str, str]:
    who = _owner_key(owner)
    return (
        f"{PREFIX}session:{owner.thread_key(thread_id)}",
        f"{PREFIX}sessions:{who}",
        f"{PREFIX}open:{who}",
        f"{PREFIX}idle",
    )


def _lease_key(key: str) -> str:
    return f"{PREFIX}lease:{key}"


def _transcript_key(thread_key: str) -> str:
    return f"{PREFIX}transcript:{thread_key}"


def _counts_key(thread_key: str) -> str:
    return f"{PREFIX}counts:{thread_key}"


def _counted(record: Any, counts: Any) -> Record:
    """A session record with its transcript's counts (a flat `HGETALL` reply; empty: no
    counts kept for the thread, so the record's own stay)."""
    pairs = dict(zip(counts[::2], counts[1::2], strict=True)) if counts else None
    kept = {_text(k): int(v) for k, v in pairs.items()} if pairs else None
    return with_counts(json.loads(record), kept)


class RedisSessionDB(SessionDB):
    """The session database in Redis (single instance, database 0), sync or async.

    Args:
        client: A `redis.Redis` or `redis.asyncio.Redis` client; this object does not
            close it.
        ttl_minutes: Every key but leases and rate windows expires this long after its
            last use (None: never), like the checkpointer's and the store's keys.
    """

    kind = "redis"
    shared = True

    def __init__(
        self, client: Any, ttl_minutes: float | None = None, breaker: Breaker | None = None
    ) -> None:
        self.client = client
        self.breaker = breaker
        self.ttl_ms = int(ttl_minutes * 60_000) if ttl_minutes else 0
        self._scripts = {
            name: client.register_script(_wrapped(lua)) for name, lua in SCRIPTS.items()
        }
        self.runs = RedisRunDB(client, self.ttl_ms, PREFIX, breaker)

    def setup(self) -> schema.SchemaChange:
        """Check the schema version and run the pending upgrades under the upgrade lock
        (other keys appear as they are written).

        Raises:
            SchemaVersionError: The database's schema version is newer than this release's.
            UnavailableError: Another process held the upgrade lock for too long.
        """
        return self._drive(self._upgrade(), True)  # type: ignore[no-any-return]

    async def asetup(self) -> schema.SchemaChange:
        """Async `setup`."""
        return await self._adrive(self._upgrade(), True)  # type: ignore[no-any-return]

    def _upgrade(self) -> Steps:
        token = uuid.uuid4().hex
        lock = _lease_key(_UPGRADE_LOCK)
        deadline = time.monotonic() + _UPGRADE_WAIT_SECONDS
        while not (yield Command(("SET", lock, token, "NX", "PX", _UPGRADE_LOCK_MS))):
            if time.monotonic() > deadline:
                raise UnavailableError(
                    f"another process has held the Redis schema upgrade lock ({lock}) for "
                    f"over {_UPGRADE_WAIT_SECONDS:g}s; retry once it has finished"
                )
            yield Pause(0.05)
        try:
            found = yield Command(("GET", _SCHEMA_KEY))
            version = int(found) if found is not None else None
            # No key but the lock: a new database (the savers' and stores' indexes are no keys).
            fresh = version is None and (yield Command(("DBSIZE",))) == 1
            for upgrade in schema.pending(version):
                for lua in upgrade.redis:
                    yield Command(("EVAL", lua, 0))
                    yield from self._renew(_UPGRADE_LOCK, token, _UPGRADE_LOCK_MS)
            if version != schema.SCHEMA_VERSION:
                yield Command(("SET", _SCHEMA_KEY, schema.SCHEMA_VERSION))
        finally:
            yield from self._release(_UPGRADE_LOCK, token)
        return schema.SchemaChange(version or 0, schema.SCHEMA_VERSION, fresh)

    def _perform(self, request: Script | Command | Pause) -> Any:
        if isinstance(request, Command):
            return self.client.execute_command(*request.args)
        if isinstance(request, Pause):
            return time.sleep(request.seconds)
        return self._scripts[request.name](keys=request.keys, args=(*request.args, self.ttl_ms))

    async def _aperform(self, request: Script | Command | Pause) -> Any:
        if isinstance(request, Command):
            return await self.client.execute_command(*request.args)
        if isinstance(request, Pause):
            return await asyncio.sleep(request.seconds)
        script = self._scripts[request.name]
        return await script(keys=request.keys, args=(*request.args, self.ttl_ms))

    def _create(self, owner: Owner, record: Record, cap: int) -> Steps:
        thread_id = record["thread_id"]
        active = record.get("status", "active") == "active"
        reply = yield Script(
            "create",
            _record_keys(owner, thread_id),
            (
                dumps(record),
                cap,
                thread_id,
                owner.thread_key(thread_id),
                iso_ms(record["last_active_at"]),
                "1" if active else "0",
            ),
        )
        return _text(reply)

    def _get(self, owner: Owner, thread_id: str) -> Steps:
        keys = (_record_keys(owner, thread_id)[0], _counts_key(owner.thread_key(thread_id)))
        record, counts = yield Script("get", keys, ())
        return _counted(record, counts) if record else None

    def _list(self, owner: Owner, limit: int, offset: int, status: str | None) -> Steps:
        keys = _record_keys(owner, "")
        prefixes = (keys[0], _counts_key(owner.thread_key("")))
        if status is None:
            reply = yield Script("list", (keys[1],), (offset, limit, *prefixes))
            return _records(reply[1:]), int(reply[0])
        # A status filter reads the owner's whole list (bounded by what one user keeps).
        reply = yield Script("list", (keys[1],), (0, 1 << 30, *prefixes))
        records = [r for r in _records(reply[1:]) if r.get("status") == status]
        return records[offset : offset + limit], len(records)

    def _begin(
        self,
        owner: Owner,
        thread_id: str,
        token: str,
        lease_ms: int,
        rate: RateLimit | None,
        new: Record | None,
        cap: int,
    ) -> Steps:
        key = owner.thread_key(thread_id)
        record_key, list_key, open_key, idle_key = _record_keys(owner, thread_id)
        reply = yield Script(
            "begin",
            (
                _lease_key(key),
                f"{PREFIX}rate:{_owner_key(owner)}",
                record_key,
                list_key,
                open_key,
                idle_key,
                _counts_key(key),
            ),
            (
                token,
                lease_ms,
                rate.limit if rate else 0,
                rate.window_ms if rate else 0,
                dumps(new) if new is not None else "",
                cap,
                thread_id,
                key,
                iso_ms(new["last_active_at"]) if new is not None else 0,
            ),
        )
        outcome = _text(reply[0])
        if outcome == "limited":
            return Claim("limited", retry_after=float(_text(reply[1])) / 1000)
        if outcome in ("ok", "created"):
            counts = reply[2] if len(reply) > 2 else []
            return Claim(outcome, _counted(reply[1], counts))  # type: ignore[arg-type]
        return Claim(outcome)  # type: ignore[arg-type]

    def _save(self, owner: Owner, record: Record, token: str | None, release: bool) -> Steps:
        thread_id = record["thread_id"]
        key = owner.thread_key(thread_id)
        record_key, list_key, _, idle_key = _record_keys(owner, thread_id)
        reply = yield Script(
            "save",
            (_lease_key(key), record_key, list_key, idle_key),
            (
                token or "",
                dumps(record),
                record["status"],
                thread_id,
                key,
                iso_ms(record["last_active_at"]),
                "1" if release and token else "0",
            ),
        )
        return int(reply) == 1

    def _set_status(self, owner: Owner, record: Record, expect: str) -> Steps:
        thread_id = record["thread_id"]
        reply = yield Script(
            "set_status",
            _record_keys(owner, thread_id),
            (
                expect,
                dumps(record),
                record["status"],
                thread_id,
                owner.thread_key(thread_id),
                iso_ms(record["last_active_at"]),
            ),
        )
        return int(reply) == 1

    def _remove(self, owner: Owner, thread_id: str) -> Steps:
        key = owner.thread_key(thread_id)
        reply = yield Script(
            "remove",
            (*_record_keys(owner, thread_id), _transcript_key(key), _counts_key(key)),
            (thread_id, key),
        )
        return json.loads(reply) if reply else None

    def _idle(self, before: str, limit: int) -> Steps:
        reply = yield Script(
            "idle", (f"{PREFIX}idle",), (iso_ms(before), limit, f"{PREFIX}session:")
        )
        return [json.loads(r) for r in reply if r is not None]

    def _acquire(self, key: str, token: str, lease_ms: int) -> Steps:
        return int((yield Script("acquire", (_lease_key(key),), (token, lease_ms)))) == 1

    def _renew(self, key: str, token: str, lease_ms: int) -> Steps:
        return int((yield Script("renew", (_lease_key(key),), (token, lease_ms)))) == 1

    def _release(self, key: str, token: str) -> Steps:
        yield Script("release", (_lease_key(key),), (token,))

    def _leased(self, key: str) -> Steps:
        return int((yield Script("exists", (_lease_key(key),), ()))) == 1

    def _append(
        self, thread_key: str, start: int, records: Sequence[Record], token: str | None
    ) -> Steps:
        reply = yield Script(
            "append",
            (_lease_key(thread_key), _transcript_key(thread_key), _counts_key(thread_key)),
            (token or "", start, *(dumps(r) for r in records)),
        )
        if int(reply) == -1:
            raise LeaseLostError(f"the run no longer holds thread {thread_key!r}")

    def _page(self, thread_key: str, offset: int, limit: int) -> Steps:
        reply = yield Script("page", (_transcript_key(thread_key),), (offset, limit))
        records = [json.loads(r) for r in reply[1:]]
        return [r for r in records if r is not None], int(reply[0])

    def _truncate(self, thread_key: str, start: int) -> Steps:
        yield Script("truncate", (_transcript_key(thread_key), _counts_key(thread_key)), (start,))


def _records(reply: Sequence[Any]) -> list[Record]:
    """Session records with their counts from `record, counts, record, counts, ...`."""
    pairs = zip(reply[::2], reply[1::2], strict=True)
    return [_counted(record, counts) for record, counts in pairs if record]
