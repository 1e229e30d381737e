"""Domain events: every state change appends one event to a Redis Stream that webhooks,
workflows and analytics read with consumer groups of their own."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError

DOMAIN_STREAM = "events:domain"
_MAXLEN = 1_000_000
_CHUNK = 1000  # events per script call: Redis runs a call without interleaving other clients
_encode = msgspec.json.Encoder().encode
log = logging.getLogger("replyhq.events")

# A batch is one EVALSHA of three arguments an event, not a pipeline of XADDs: redis-py packs
# every argument and reads every reply in Python, and an XADD has 14 arguments and one reply.
# The entries are what XADD writes: kind, app_id, ts, data.
_APPEND_LUA = """
for i = 3, #ARGV, 3 do
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*',
               'kind', ARGV[i], 'app_id', ARGV[i + 1], 'ts', ARGV[2], 'data', ARGV[i + 2])
end
return (#ARGV - 2) / 3
"""
_APPEND_SHA = hashlib.sha1(_APPEND_LUA.encode()).hexdigest()


async def append_events(redis: aioredis.Redis, events: list[tuple[str, str, Any]]) -> None:
    """One round trip per 1,000 events of (kind, app_id, data)."""
    for start in range(0, len(events), _CHUNK):
        args: list[str | bytes | int] = [_MAXLEN, str(int(time.time() * 1000))]
        for kind, app_id, data in events[start:start + _CHUNK]:
            args += (kind, app_id, _encode(data))
        try:
            await redis.evalsha(_APPEND_SHA, 1, DOMAIN_STREAM, *args)
        except NoScriptError:  # a restarted Redis forgot the script: EVAL loads it again
            await redis.eval(_APPEND_LUA, 1, DOMAIN_STREAM, *args)


class DomainEventWriter:
    """Appends events off the hot path: whatever queued while the last write was in flight goes
    out in one script call. Events follow commits they describe; a replica dying in between loses
    only the notification, never the committed state."""

    def __init__(self, redis: aioredis.Redis, max_queue: int = 100_000) -> None:
        self.redis = redis
        self.max_queue = max_queue
        self._queue: list[tuple[str, str, Any]] = []
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="domain-events")

    def emit(self, kind: str, app_id: str, data: Any) -> None:
        if len(self._queue) >= self.max_queue:  # Redis is away for long: drop the oldest, say so
            del self._queue[: len(self._queue) // 10]
            log.warning("domain event queue full; oldest events dropped")
        self._queue.append((kind, app_id, data))
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._queue = self._queue[:_CHUNK], self._queue[_CHUNK:]
            if self._queue:
                self._wake.set()
            try:
                await append_events(self.redis, batch)
            except RedisError as exc:
                log.warning("domain events not appended yet (%s); retrying", exc)
                self._queue[:0] = batch
                self._wake.set()
                await asyncio.sleep(0.5)

    async def close(self) -> None:
        if self._queue:
            with contextlib.suppress(RedisError, OSError):
                await asyncio.wait_for(append_events(self.redis, self._queue), 2)
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
