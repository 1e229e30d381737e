"""Event relay: copies committed domain events from Postgres to the `events:domain` Redis Stream.

Runs on every replica, works on one at a time (the "event-relay" lease; a dead holder's lease
expires and another replica resumes from the checkpoint in Postgres). Each stream entry carries
its position and the position before it (`prev`), so a consumer can tell when the stream lacks
something it needs (Redis restarted empty, FLUSHALL, trimming) and read that from Postgres.
A relay that dies between appending and saving its checkpoint appends some events again: the
consumers' checkpoints make the repeat a no-op.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import asyncpg
import msgspec
import redis.asyncio as aioredis

from server.events import store
from server.events.catalog import STREAM
from server.events.store import Position
from workers.runtime.leased_worker import LeasedWorker

log = logging.getLogger("replyhq.workers.event_relay")
LEASE_KIND = "event-relay"
CHECKPOINT_EVERY_S = 0.1
_CHUNK = 1000  # entries per script call: Redis runs one call without interleaving other clients
_encode = msgspec.json.Encoder().encode

# One EVAL per chunk: XADD has many arguments, and redis-py packs each and reads each reply in Python.
_APPEND_LUA = """
for i = 2, #ARGV, 3 do
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'pos', ARGV[i], 'prev', ARGV[i + 1], 'e', ARGV[i + 2])
end
return (#ARGV - 1) / 3
"""


class EventRelay(LeasedWorker):
    kind = LEASE_KIND
    log = log

    def __init__(self, pool: asyncpg.Pool, redis: aioredis.Redis, *, replica_id: str, metrics: Any = None,
                 interval_s: float = 0.01, batch: int = 5000, maxlen: int = 100_000) -> None:
        super().__init__(redis, replica_id=replica_id, interval_s=interval_s)
        self.pool = pool
        self.redis = redis
        self.metrics = metrics
        self.batch = batch
        self.maxlen = maxlen
        self._pos: Position | None = None  # where this relay has got to while it holds the lease
        self._saved_at = 0.0  # monotonic time of the last checkpoint saved
        self._unsaved = False  # _pos is ahead of the saved checkpoint

    async def tick(self) -> bool:
        return await self.relay_once() == self.batch

    def on_inactive(self) -> None:
        self._pos, self._unsaved = None, False  # another replica relays: resume from the checkpoint

    def on_error(self) -> None:
        self._pos, self._unsaved = None, False  # the checkpoint in Postgres keeps our place

    async def relay_once(self) -> int:
        """Append the next batch of committed events; returns how many."""
        if self._pos is None:
            self._pos = await store.relay_checkpoint(self.pool)
        events = await store.read_envelopes_after(self.pool, self._pos, self.batch)
        if not events:
            if self._unsaved:  # caught up: keep the checkpoint exact while idle
                await store.save_relay_checkpoint(self.pool, self._pos)
                self._unsaved = False
            return 0
        prev = self._pos
        for start in range(0, len(events), _CHUNK):
            args: list[Any] = [self.maxlen]
            for position, envelope in events[start:start + _CHUNK]:
                args += (str(position), str(prev), envelope)
                prev = position
            await self.redis.eval(_APPEND_LUA, 1, STREAM, *args)  # type: ignore[misc]
        self._pos = prev
        self._unsaved = True
        now = time.monotonic()
        if now - self._saved_at >= CHECKPOINT_EVERY_S:
            # Not after every batch: a checkpoint a moment old only makes a successor append a few
            # events again, which the consumers' checkpoints skip.
            await store.save_relay_checkpoint(self.pool, prev)
            self._saved_at, self._unsaved = now, False
        if self.metrics is not None:
            self.metrics.events_relayed.inc(len(events))
            # The oldest event's wait, the longest in the batch (a sample per batch is enough).
            oldest = store.decode_event(events[0][1])
            self.metrics.events_relay_delay.observe(oldest.age_s(time.time()))
        return len(events)

