"""Secret-key API calls: counted in memory on the request's path, added to Redis counters once a
tick (the shared pipeline), moved to `usage_daily` in batches, exactly once.

  request  -> `ApiCallMeter.secret_call(app_id)`: a dict increment, nothing awaited
  each tick-> HINCRBY usage:calls "<app_id>|<day>" n   (the replica's RedisWriter pipeline)
  every USAGE_FLUSH_INTERVAL, on every replica:
     Lua: when no batch is in flight, RENAME usage:calls -> usage:calls:batch and stamp a batch id;
          return the batch in flight
     Postgres, one transaction: INSERT the batch id into usage_flushes (a batch already there was
          added before: skipped) and add its counts to usage_daily
     Lua: delete the batch if it still has that id

A flusher dying anywhere loses nothing and doubles nothing: the batch stays in Redis until some
replica has committed it once and deleted it (two replicas flushing the same batch at once: the
second waits on the batch id's row, then skips). What can be lost: the calls of the current tick of
a replica that dies (milliseconds), a pipeline that fails (logged), and the counts not yet flushed
(at most one interval) when Redis itself loses its data.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import date
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from server.platform.redis.writer import RedisWriter

log = logging.getLogger("replyhq.usage")

METRIC = "api_calls.secret"
COUNTERS = "usage:calls"
BATCH = "usage:calls:batch"
_BATCH_FIELD = b"#batch"

_TAKE = """
if redis.call('EXISTS', KEYS[2]) == 0 then
    if redis.call('EXISTS', KEYS[1]) == 0 then return nil end
    redis.call('RENAME', KEYS[1], KEYS[2])
    redis.call('HSET', KEYS[2], '#batch', ARGV[1])
end
return redis.call('HGETALL', KEYS[2])
"""
_DONE = """
if redis.call('HGET', KEYS[1], '#batch') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_ADD = """
WITH fresh AS (INSERT INTO usage_flushes (batch_id) VALUES ($1) ON CONFLICT DO NOTHING RETURNING 1)
INSERT INTO usage_daily (app_id, day, metric, count)
SELECT a, d, $5, n FROM unnest($2::uuid[], $3::date[], $4::bigint[]) AS x(a, d, n), fresh
ORDER BY 1, 2
ON CONFLICT (app_id, day, metric) DO UPDATE SET count = usage_daily.count + EXCLUDED.count
"""


def _utc_day(now: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(now))


class ApiCallMeter:
    """The replica's share of the API call counters (a RedisWriter sink)."""

    order = 100  # after fan-out and the actors' commands in a shared pipeline

    def __init__(self, pool: asyncpg.Pool, redis: aioredis.Redis, writer: RedisWriter) -> None:
        self.pool = pool
        self.redis = redis
        self.writer = writer
        self._pending: dict[tuple[str, str], int] = {}
        self._day_ends = 0.0
        self._day = ""
        self._take = redis.register_script(_TAKE)
        self._done = redis.register_script(_DONE)
        self._last_prune = 0.0

    # --- the request's path
    def secret_call(self, app_id: Any) -> None:
        """A REST call made with a secret key was served (cheap: a dict increment)."""
        now = time.time()
        if now >= self._day_ends:
            self._day = _utc_day(now)
            self._day_ends = (now // 86400 + 1) * 86400
        key = (str(app_id), self._day)
        pending = self._pending
        if not pending:
            self.writer.put(self, None)  # one item per tick: queue() takes everything pending
        pending[key] = pending.get(key, 0) + 1

    # --- the RedisWriter sink
    def queue(self, pipe: Any, items: list[Any]) -> None:
        pending, self._pending = self._pending, {}
        for (app_id, day), n in pending.items():
            pipe.hincrby(COUNTERS, f"{app_id}|{day}", n)

    def failed(self, items: list[Any], exc: Exception) -> None:
        log.warning("API call counts of one tick may be lost (Redis write failed: %r)", exc)

    # --- the flusher
    async def flush(self) -> int:
        """Move the counters from Redis to usage_daily; returns the calls added."""
        batch_id = uuid.uuid4().hex
        found = await self._take(keys=[COUNTERS, BATCH], args=[batch_id])
        if not found:
            return 0
        fields = dict(zip(found[::2], found[1::2], strict=True))
        batch_id = fields.pop(_BATCH_FIELD).decode()
        apps: list[uuid.UUID] = []
        days: list[date] = []
        counts: list[int] = []
        for field, n in fields.items():
            app_id, _, day = field.decode().partition("|")
            try:
                parsed = uuid.UUID(app_id), date.fromisoformat(day)
            except ValueError:
                log.warning("usage counter with a bad field %r dropped", field)
                continue
            apps.append(parsed[0])
            days.append(parsed[1])
            counts.append(int(n))
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(_ADD, batch_id, apps, days, counts, METRIC)
            now = time.monotonic()
            if now - self._last_prune > 3600:
                self._last_prune = now
                await conn.execute("DELETE FROM usage_flushes WHERE flushed_at < now() - interval '2 days'")
        await self._done(keys=[BATCH], args=[batch_id])
        return sum(counts)

    async def run(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Postgres or Redis away: the batch waits in Redis
                log.warning("could not flush API call counts: %r", exc)

    async def close(self) -> None:
        """Write what this replica counted, and flush once (at stop)."""
        if self._pending:
            await self.writer.put(self, None)
        try:
            await self.flush()
        except Exception as exc:
            log.warning("could not flush API call counts at stop: %r", exc)
