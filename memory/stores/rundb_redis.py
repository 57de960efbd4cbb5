"""The run database on Redis: every operation is one Lua script, atomic on the server.

Keys (all under `memory_agent:`), with `R` a run id and `T` a thread key:

- `run:R`: the run, a hash: `record` (the JSON `create` took, never rewritten), the
  fields that change as it lives (`status`, `attempt`, `worker`, `cancel`, `updated_at`,
  and `result`, `error` as JSON), and the backend's own: `thread` (T), `seq` (its
  creation order), `due` (its `run_at`) and `lease` (its holder's lease expiry). A record
  is the JSON object with the changing fields laid over it, so nothing is re-encoded by
  Lua's JSON (which would turn `[]` into `{}` and round large numbers);
- `runs:T`: the thread's run ids, scored by `seq` (list order);
- `runs_active:T`: the thread's pending and running run ids by `seq`. Its first is the
  thread's head: the running run (a thread runs one at a time, the oldest), or else the
  pending run it runs next; a pending run may start only as its thread's head;
- `runs_queue`: the head of each thread whose head is pending, scored by `seq`: what a
  claim of the next run scans, oldest first (heads not due yet are skipped);
- `runs_running`: the running runs, scored by lease expiry (takeovers);
- `runs_keep`: the finished runs whose events are kept, scored by the end of keeping;
- `run_events:R`: the run's events, scored by id, each member the JSON `[id, event,
  data]` (the id exact beyond a score's 2**53);
- `runs_seq`: the counter of `seq` (it never expires).

The scripts build their keys from the prefix (as the session scripts' `list` does): a
claim of the next run finds its keys on the server. With a TTL (`MEMORY_AGENT_TTL_MINUTES`)
a run's hash and events, and its thread's two sets with every active run of the thread,
expire that long after the last use of any of them; the global sets do not expire, and
the scripts drop the ids whose run expired as they meet them.

Times (`run_at`, leases, keeping) come from the server's clock (`TIME`), so hosts with
skewed clocks agree.
"""

from __future__ import annotations

import builtins
import inspect
from collections.abc import Callable, Sequence
from typing import Any

from memory.stores.outages import Breaker, guarded
from memory.stores.rundb import (
    CancelAction,
    Control,
    Event,
    Record,
    RunDB,
    dumps,
    loads,
)

PREFIX = "memory_agent:"
#: Runs a claim of the next run looks at, of the lapsed leases and of the queued heads.
SCAN = 200
#: Runs whose events one sweep script deletes (a sweep runs scripts until done).
SWEEP_BATCH = 500

# Every script takes the prefix first and the TTL (ms, 0: none) last.
_PRELUDE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local P = ARGV[1]
local TTL = tonumber(ARGV[#ARGV])
local QUEUE, RUNNING, KEEP = P .. 'runs_queue', P .. 'runs_running', P .. 'runs_keep'
local FIELDS = {'record', 'status', 'attempt', 'worker', 'cancel', 'updated_at', 'result', 'error'}
local function run_key(id) return P .. 'run:' .. id end
local function events_key(id) return P .. 'run_events:' .. id end
local function runs_key(thread) return P .. 'runs:' .. thread end
local function active_key(thread) return P .. 'runs_active:' .. thread end
local function read(id) return redis.call('HMGET', run_key(id), unpack(FIELDS)) end
local function touch_run(id)
  if TTL > 0 then
    redis.call('PEXPIRE', run_key(id), TTL)
    redis.call('PEXPIRE', events_key(id), TTL)
  end
end
local function touch_thread(thread)
  if TTL <= 0 then return end
  redis.call('PEXPIRE', runs_key(thread), TTL)
  redis.call('PEXPIRE', active_key(thread), TTL)
  for _, id in ipairs(redis.call('ZRANGE', active_key(thread), 0, -1)) do touch_run(id) end
end
-- The thread's head (see the module docstring), dropping ids whose run expired.
local function head(thread)
  while true do
    local first = redis.call('ZRANGE', active_key(thread), 0, 0)
    if #first == 0 then return nil end
    if redis.call('EXISTS', run_key(first[1])) == 1 then return first[1] end
    redis.call('ZREM', active_key(thread), first[1])
  end
end
-- After the thread's active runs changed: a pending head joins the queue.
local function requeue(thread)
  local id = head(thread)
  if id then
    local status, seq = unpack(redis.call('HMGET', run_key(id), 'status', 'seq'))
    if status == 'pending' then redis.call('ZADD', QUEUE, seq, id) end
  end
end
-- A run leaves the active ones (ended, or removed).
local function deactivate(id, thread)
  redis.call('ZREM', active_key(thread), id)
  redis.call('ZREM', QUEUE, id)
  redis.call('ZREM', RUNNING, id)
end
local function drop(id)
  local thread = redis.call('HGET', run_key(id), 'thread')
  if thread then
    deactivate(id, thread)
    redis.call('ZREM', runs_key(thread), id)
  end
  redis.call('ZREM', KEEP, id)
  redis.call('DEL', run_key(id), events_key(id))
end
"""

SCRIPTS: dict[str, str] = {
    # ARGV: P, run_id, thread, record, strategy, created_at, delay_ms, status, attempt,
    #       worker or '', cancel or '', result, error, ttl. Answers {inserted, asked...}.
    "create": """
local id, thread, strategy = ARGV[2], ARGV[3], ARGV[5]
if redis.call('EXISTS', run_key(id)) == 1 then drop(id) end
local active = {}
for _, other in ipairs(redis.call('ZRANGE', active_key(thread), 0, -1)) do
  if redis.call('EXISTS', run_key(other)) == 1 then
    table.insert(active, other)
  else
    redis.call('ZREM', active_key(thread), other)
  end
end
if strategy == 'reject' and #active > 0 then return {0} end
local out = {1}
if strategy == 'interrupt' or strategy == 'rollback' then
  for _, other in ipairs(active) do
    local key = run_key(other)
    if redis.call('HGET', key, 'status') == 'pending' then
      redis.call('HSET', key, 'status', 'interrupted')
      deactivate(other, thread)
    else
      redis.call('HSET', key, 'cancel', strategy)
    end
    redis.call('HSET', key, 'updated_at', ARGV[6])
    table.insert(out, other)
  end
end
local seq = redis.call('INCR', P .. 'runs_seq')
local key = run_key(id)
redis.call('HSET', key, 'record', ARGV[4], 'thread', thread, 'seq', seq,
  'due', now + tonumber(ARGV[7]), 'status', ARGV[8], 'attempt', ARGV[9],
  'updated_at', ARGV[6], 'result', ARGV[12], 'error', ARGV[13])
if ARGV[10] ~= '' then redis.call('HSET', key, 'worker', ARGV[10]) end
if ARGV[11] ~= '' then redis.call('HSET', key, 'cancel', ARGV[11]) end
redis.call('ZADD', runs_key(thread), seq, id)
if ARGV[8] == 'pending' or ARGV[8] == 'running' then
  redis.call('ZADD', active_key(thread), seq, id)
end
requeue(thread)
touch_run(id)
touch_thread(thread)
return out
""",
    # ARGV: P, thread, run_id, ttl
    "get": """
if redis.call('HGET', run_key(ARGV[3]), 'thread') ~= ARGV[2] then return false end
touch_run(ARGV[3])
touch_thread(ARGV[2])
return read(ARGV[3])
""",
    # ARGV: P, thread, offset, limit, status or '', ttl. Newest first.
    "list": """
local key = runs_key(ARGV[2])
local skip, limit, want = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local out, gone, pos = {}, {}, 0
while #out < limit do
  local ids = redis.call('ZREVRANGE', key, pos, pos + 99)
  if #ids == 0 then break end
  for _, id in ipairs(ids) do
    local status = redis.call('HGET', run_key(id), 'status')
    if not status then
      table.insert(gone, id)
    elseif want == '' or status == want then
      if skip > 0 then
        skip = skip - 1
      elseif #out < limit then
        table.insert(out, read(id))
        touch_run(id)
      end
    end
  end
  pos = pos + 100
end
for _, id in ipairs(gone) do redis.call('ZREM', key, id) end
touch_thread(ARGV[2])
return out
""",
    # ARGV: P, thread, ttl. Oldest first.
    "active": """
local out = {}
for _, id in ipairs(redis.call('ZRANGE', active_key(ARGV[2]), 0, -1)) do
  local run = read(id)
  if run[1] then table.insert(out, run) else redis.call('ZREM', active_key(ARGV[2]), id) end
end
touch_thread(ARGV[2])
return out
""",
    # ARGV: P, worker, lease_ms, run_id or '' (the next run), scan, ttl
    "claim": """
local function eligible(id)
  local status, due, lease, thread =
    unpack(redis.call('HMGET', run_key(id), 'status', 'due', 'lease', 'thread'))
  if status == 'running' then return tonumber(lease or 0) <= now end
  if status ~= 'pending' or tonumber(due) > now then return false end
  return head(thread) == id
end
local best = nil
if ARGV[4] ~= '' then
  if eligible(ARGV[4]) then best = ARGV[4] end
else
  -- The oldest (by seq) of the runs whose lease lapsed and the queued heads now due.
  local oldest, scan = math.huge, tonumber(ARGV[5])
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', RUNNING, '-inf', now, 'LIMIT', 0, scan)) do
    local status, seq = unpack(redis.call('HMGET', run_key(id), 'status', 'seq'))
    if status ~= 'running' then
      redis.call('ZREM', RUNNING, id)
    elseif tonumber(seq) < oldest then
      best, oldest = id, tonumber(seq)
    end
  end
  local queued = redis.call('ZRANGE', QUEUE, 0, scan - 1, 'WITHSCORES')
  for i = 1, #queued, 2 do
    local id = queued[i]
    if tonumber(queued[i + 1]) >= oldest then break end
    local status, due, thread = unpack(redis.call('HMGET', run_key(id), 'status', 'due', 'thread'))
    if status ~= 'pending' or head(thread) ~= id then
      redis.call('ZREM', QUEUE, id)
    elseif tonumber(due) <= now then
      best = id
      break
    end
  end
end
if not best then return false end
local key = run_key(best)
local lease = now + tonumber(ARGV[3])
redis.call('HINCRBY', key, 'attempt', 1)
redis.call('HSET', key, 'status', 'running', 'worker', ARGV[2], 'lease', lease)
redis.call('ZREM', QUEUE, best)
redis.call('ZADD', RUNNING, lease, best)
touch_run(best)
touch_thread(redis.call('HGET', key, 'thread'))
return read(best)
""",
    # ARGV: P, run_id, worker, lease_ms, ttl. Answers {held, cancel}.
    "renew": """
local key = run_key(ARGV[2])
local status, worker, cancel, thread =
  unpack(redis.call('HMGET', key, 'status', 'worker', 'cancel', 'thread'))
if status ~= 'running' or worker ~= ARGV[3] then return {0} end
local lease = now + tonumber(ARGV[4])
redis.call('HSET', key, 'lease', lease)
redis.call('ZADD', RUNNING, lease, ARGV[2])
touch_run(ARGV[2])
touch_thread(thread)
return {1, cancel}
""",
    # ARGV: P, run_id, worker, status, result, error, keep_ms, updated_at, ttl
    "finish": """
local id = ARGV[2]
local key = run_key(id)
local status, worker, thread = unpack(redis.call('HMGET', key, 'status', 'worker', 'thread'))
if status ~= 'running' or worker ~= ARGV[3] then return 0 end
redis.call('HSET', key, 'status', ARGV[4], 'result', ARGV[5], 'error', ARGV[6],
  'updated_at', ARGV[8])
redis.call('HDEL', key, 'lease')
deactivate(id, thread)
redis.call('ZADD', KEEP, now + tonumber(ARGV[7]), id)
requeue(thread)
touch_run(id)
touch_thread(thread)
return 1
""",
    # ARGV: P, thread, action, updated_at, all ('1': every active run) or '0', run_ids...,
    #       ttl. Answers the runs found, in the thread's order.
    "cancel": """
local thread, action, at = ARGV[2], ARGV[3], ARGV[4]
local found, seen = {}, {}
local ids = {}
if ARGV[5] == '1' then
  ids = redis.call('ZRANGE', active_key(thread), 0, -1)
else
  for i = 6, #ARGV - 1 do ids[#ids + 1] = ARGV[i] end
end
for _, id in ipairs(ids) do
  local status, of, seq = unpack(redis.call('HMGET', run_key(id), 'status', 'thread', 'seq'))
  if status and of == thread and not seen[id] then
    seen[id] = true
    table.insert(found, {tonumber(seq), id, status})
  end
end
table.sort(found, function(a, b) return a[1] < b[1] end)
local out = {}
for _, entry in ipairs(found) do
  local id, status = entry[2], entry[3]
  local key = run_key(id)
  if status == 'pending' then
    redis.call('HSET', key, 'status', 'interrupted', 'cancel', action, 'updated_at', at)
    deactivate(id, thread)
    redis.call('ZADD', KEEP, now, id)
  elseif status == 'running' then
    redis.call('HSET', key, 'cancel', action, 'updated_at', at)
  end
  if status == 'pending' or status == 'running' or ARGV[5] ~= '1' then
    table.insert(out, read(id))
    touch_run(id)
  end
end
requeue(thread)
touch_thread(thread)
return out
""",
    # ARGV: P, thread, run_id, ttl
    "delete": """
local status, thread = unpack(redis.call('HMGET', run_key(ARGV[3]), 'status', 'thread'))
if thread ~= ARGV[2] or status == 'running' then return 0 end
drop(ARGV[3])
requeue(thread)
touch_thread(thread)
return 1
""",
    # ARGV: P, thread, ttl. Answers how many runs it removed.
    "delete_thread": """
local count = 0
for _, id in ipairs(redis.call('ZRANGE', runs_key(ARGV[2]), 0, -1)) do
  if redis.call('EXISTS', run_key(id)) == 1 then count = count + 1 end
  drop(id)
end
redis.call('DEL', runs_key(ARGV[2]), active_key(ARGV[2]))
return count
""",
    # ARGV: P, run_id, (score, member)..., ttl
    "add_events": """
local id = ARGV[2]
local thread = redis.call('HGET', run_key(id), 'thread')
if not thread then return 0 end
for i = 3, #ARGV - 2, 2 do redis.call('ZADD', events_key(id), ARGV[i], ARGV[i + 1]) end
touch_run(id)
touch_thread(thread)
return 1
""",
    # ARGV: P, run_id, after, limit, ttl
    "events": """
touch_run(ARGV[2])
return redis.call('ZRANGEBYSCORE', events_key(ARGV[2]), '(' .. ARGV[3], '+inf',
  'LIMIT', 0, ARGV[4])
""",
    # ARGV: P, run_id, ttl
    "last_event": "return redis.call('ZRANGE', events_key(ARGV[2]), -1, -1)",
    # ARGV: P, limit, ttl. Answers how many runs' keeping ended.
    "sweep": """
local due = redis.call('ZRANGEBYSCORE', KEEP, '-inf', now, 'LIMIT', 0, ARGV[2])
for _, id in ipairs(due) do
  redis.call('DEL', events_key(id))
  redis.call('ZREM', KEEP, id)
end
return #due
""",
}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _record(reply: Any) -> Record | None:
    """A run from its hash's `record, status, attempt, worker, cancel, updated_at, result,
    error` (a missing record: None)."""
    if not reply or reply[0] is None:
        return None
    record, status, attempt, worker, cancel, updated_at, result, error = (
        None if v is None else _text(v) for v in reply
    )
    run: Record = loads(record)
    run.update(status=status, attempt=int(attempt or 0), worker=worker, cancel=cancel)
    run.update(updated_at=updated_at, result=loads(result or "null"), error=loads(error or "null"))
    return run


def _event(member: Any) -> Event:
    event_id, name, data = loads(member)
    return Event(int(event_id), name, data)


class RedisRunDB(RunDB):
    """Runs in Redis (single instance), beside the session database's keys.

    Args:
        client: A `redis.asyncio.Redis` client (a sync `redis.Redis` works too, blocking
            the loop); this object does not close it.
        ttl_ms: A run's keys expire this long after their last use (0: never).
        prefix: The prefix of every key.
    """

    kind = "redis"

    def __init__(
        self, client: Any, ttl_ms: int = 0, prefix: str = PREFIX, breaker: Breaker | None = None
    ) -> None:
        self.client = client
        self.breaker = breaker
        self.ttl_ms = ttl_ms
        self.prefix = prefix
        self._scripts = {
            name: client.register_script(_PRELUDE + lua) for name, lua in SCRIPTS.items()
        }

    async def _call(
        self, name: str, *args: Any, on_late: Callable[[Any], Any] | None = None
    ) -> Any:
        """One script, within the database's deadline and breaker."""
        return await guarded(self.breaker, self._script(name, *args), on_late)

    async def _script(self, name: str, *args: Any) -> Any:
        reply = self._scripts[name](keys=(), args=(self.prefix, *args, self.ttl_ms))
        return await reply if inspect.isawaitable(reply) else reply

    async def create(self, run: Record, delay_ms: int = 0) -> tuple[bool, builtins.list[str]]:
        head = (run["run_id"], run["thread_key"], dumps(run), run["multitask_strategy"])
        fields = (run["status"], int(run["attempt"]), run["worker"] or "", run["cancel"] or "")
        ends = (dumps(run["result"]), dumps(run["error"]))
        late = self.late_writes(run, delay_ms / 1000)
        reply = await self._call(
            "create", *head, run["created_at"], int(delay_ms), *fields, *ends, on_late=late
        )
        return int(reply[0]) == 1, [_text(r) for r in reply[1:]]

    async def get(self, thread_key: str, run_id: str) -> Record | None:
        return _record(await self._call("get", thread_key, run_id))

    async def list(
        self, thread_key: str, limit: int, offset: int, status: str | None = None
    ) -> builtins.list[Record]:
        reply = await self._call("list", thread_key, max(offset, 0), limit, status or "")
        return [r for r in map(_record, reply) if r is not None]

    async def active(self, thread_key: str) -> builtins.list[Record]:
        reply = await self._call("active", thread_key)
        return [r for r in map(_record, reply) if r is not None]

    async def claim(self, worker: str, lease_ms: int, run_id: str | None = None) -> Record | None:
        return _record(await self._call("claim", worker, int(lease_ms), run_id or "", SCAN))

    async def renew(self, run_id: str, worker: str, lease_ms: int) -> Control:
        reply = await self._call("renew", run_id, worker, int(lease_ms))
        if int(reply[0]) != 1:
            return Control(False)
        cancel = _text(reply[1]) if len(reply) > 1 and reply[1] is not None else None
        return Control(True, cancel)  # type: ignore[arg-type]

    async def finish(
        self,
        run_id: str,
        worker: str,
        status: str,
        result: Any,
        error: Any,
        keep_ms: int,
        updated_at: str,
        events: Sequence[Event] = (),
    ) -> bool:
        if events:  # a run that lost its claim meanwhile is refused below all the same
            await self.add_events(run_id, events)
        ends = (dumps(result), dumps(error), int(keep_ms), updated_at)
        reply = await self._call("finish", run_id, worker, status, *ends)
        return int(reply) == 1

    async def cancel(
        self, thread_key: str, run_ids: Sequence[str] | None, action: CancelAction, updated_at: str
    ) -> builtins.list[Record]:
        every = "1" if run_ids is None else "0"
        reply = await self._call("cancel", thread_key, action, updated_at, every, *(run_ids or ()))
        return [r for r in map(_record, reply) if r is not None]

    async def delete(self, thread_key: str, run_id: str) -> bool:
        return int(await self._call("delete", thread_key, run_id)) == 1

    async def delete_thread(self, thread_key: str) -> int:
        return int(await self._call("delete_thread", thread_key))

    async def add_events(self, run_id: str, events: Sequence[Event]) -> None:
        if not events:
            return
        pairs: builtins.list[Any] = []
        for event in events:
            pairs += [str(event.id), dumps([event.id, event.event, event.data])]
        await self._call("add_events", run_id, *pairs)

    async def events(self, run_id: str, after: int, limit: int = 1000) -> builtins.list[Event]:
        if limit <= 0:
            return []
        reply = await self._call("events", run_id, int(after), int(limit))
        return [_event(m) for m in reply]

    async def last_event_id(self, run_id: str) -> int:
        reply = await self._call("last_event", run_id)
        return _event(reply[0]).id if reply else 0

    async def sweep(self) -> int:
        total = 0
        while True:
            swept = int(await self._call("sweep", SWEEP_BATCH))
            total += swept
            if swept < SWEEP_BATCH:
                return total
