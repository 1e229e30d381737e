"""Event relay: copies committed domain events from Postgres to the `events:domain` Redis Stream.

Runs on every replica, works on one at a time (the "event-relay" lease; a dead holder's lease
expires and another replica resumes from the checkpoint in Postgres). Each stream entry carries
about ENTRY_EVENTS consecutive events: on the stream, the position of the last (`pos`) and the
position before the first (`prev`), so a consumer can tell when the stream lacks something it needs
(Redis restarted empty, FLUSHALL, trimming) and read that from Postgres; how many events are new
(`n`), the oldest one's commit time (`at`, Unix seconds) and their types (`ts`, comma-separated),
so a group with no use for them passes them over without reading them. Their rows of `event_rows`
(`rs`, server/events/store.py RowForm: a row of messages as its arrays) go on a second stream under
the same id, which this process's groups need not read back. A message.created names its message rather
than carrying it (server/events/store.py): the runtime builds the message for the groups that use it.
A relay that dies between appending and saving its checkpoint appends some events again: the
consumers' checkpoints make the repeat a no-op.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from server.events import store
from server.events.catalog import PAYLOADS, STREAM
from server.events.store import Position
from workers.runtime.consumer_groups import remember_payload
from workers.runtime.leased_worker import LeasedWorker

log = logging.getLogger("replyhq.workers.event_relay")
LEASE_KIND = "event-relay"
CHECKPOINT_EVERY_S = 0.1
# Events per stream entry, about: Redis, the relay and the consumers handle an entry, not each
# event (a few µs each, and most of what relaying cost), and the stream's length bound (in entries)
# still bounds its memory: `maxlen` entries hold 1 to ENTRY_EVENTS events each, or one row (a
# commit's messages of one workspace: up to 1,024).
ENTRY_EVENTS = 100

# One EVAL per batch: XADD has several arguments, and redis-py packs each and reads each reply in Python.
# An entry's positions go on STREAM, its envelopes on PAYLOADS under the same id (see
# server/events/catalog.py). pcall: a payload that cannot be added (PAYLOADS ahead of STREAM, say
# after STREAM alone was deleted) is only missing, and a group reads those events from Postgres.
_APPEND_LUA = """
local ids = {}
for i = 2, #ARGV, 6 do
    local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'pos', ARGV[i], 'prev', ARGV[i + 1],
                          'n', ARGV[i + 2], 'at', ARGV[i + 3], 'ts', ARGV[i + 4])
    redis.pcall('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], id, 'rs', ARGV[i + 5])
    ids[#ids + 1] = id
end
return ids
"""
_PER_ENTRY = 6  # the arguments of an entry in _APPEND_LUA


class EventRelay(LeasedWorker):
    kind = LEASE_KIND
    log = log

    def __init__(self, pool: asyncpg.Pool, redis: aioredis.Redis, *, replica_id: str, metrics: Any = None,
                 interval_s: float = 0.01, batch: int = 5000, rows: int = 1000, maxlen: int = 1_000) -> None:
        super().__init__(redis, replica_id=replica_id, interval_s=interval_s)
        self.pool = pool
        self.redis = redis
        self.metrics = metrics
        self.batch = batch  # events a read, about (no row past it)
        self.rows = rows  # rows a read at most
        self.maxlen = maxlen
        self._pos: Position | None = None  # where this relay has got to while it holds the lease
        self._saved_at = 0.0  # monotonic time of the last checkpoint saved
        self._unsaved = False  # _pos is ahead of the saved checkpoint
        self._caught_up = False  # the last read found nothing new
        self._more = False  # the last read stopped at a bound: more may be waiting
        # One connection held while relaying: a pool round trip per cycle resets the connection
        # (a statement of its own) on every release.
        self._conn: asyncpg.Connection | None = None

    async def tick(self) -> bool:
        await self.relay_once()
        return self._more

    def on_inactive(self) -> None:
        self._pos, self._unsaved = None, False  # another replica relays: resume from the checkpoint

    def on_error(self) -> None:
        self._pos, self._unsaved = None, False  # the checkpoint in Postgres keeps our place

    async def rest(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await self.pool.release(conn)
            except Exception as exc:  # a broken connection: the pool replaces it
                log.debug("event relay: releasing its connection: %r", exc)

    async def relay_once(self) -> int:
        """Append the next batch of committed events; returns how many."""
        if self._conn is None:
            self._conn = await self.pool.acquire()
        conn = self._conn
        if self._pos is None:
            self._pos = await store.relay_checkpoint(conn)
        now = time.monotonic()
        # The checkpoint rides on the read, at most every CHECKPOINT_EVERY_S and once caught up:
        # a checkpoint a moment old only makes a successor append a few events again, which the
        # consumers' checkpoints skip.
        save = self._unsaved and (self._caught_up or now - self._saved_at >= CHECKPOINT_EVERY_S)
        entries = await store.read_entries_after(conn, self._pos, self.rows, self.batch, ENTRY_EVENTS,
                                                 save_checkpoint=save)
        if save:
            self._saved_at, self._unsaved = now, False
        self._caught_up = not entries
        count = sum(entry.size for entry in entries)
        self._more = count >= self.batch or sum(entry.row_count for entry in entries) >= self.rows
        if not entries:
            return 0
        prev = self._pos
        args: list[Any] = [self.maxlen]
        for entry in entries:
            args += (entry.last, str(prev), entry.size, repr(entry.oldest), entry.types, entry.rows)
            prev = Position.parse(entry.last)
        ids = await self.redis.eval(_APPEND_LUA, 2, STREAM, PAYLOADS, *args)  # type: ignore[misc]
        # This process's groups find the envelopes here rather than reading them back from Redis.
        for entry_id, entry, prev_text in zip(ids, entries, args[2::_PER_ENTRY], strict=True):
            remember_payload(self.redis, entry_id, prev_text, entry.last, entry.rows)
        self._pos = prev
        self._unsaved = True
        if self.metrics is not None:
            self.metrics.events_relayed.inc(count)
            # Each entry's oldest event's wait, the longest of its (up to ENTRY_EVENTS) events: a
            # bound on each, weighed about by how many there are (a sample per batch weighed a stall's
            # big batch like a quiet one).
            now = time.time()
            for entry in entries:
                self.metrics.events_relay_delay.observe(max(0.0, now - entry.oldest))
        return count
