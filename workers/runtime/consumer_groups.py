"""The consumer runtime: named groups that read domain events at least once and apply each once.

A group reads the `events:domain` stream through a Redis consumer group (one consumer per
replica, so batches spread over replicas; entries a dead replica left pending are claimed by
the others). Whatever arrives, a batch is applied in one Postgres transaction that locks the
group's checkpoint row, skips what the checkpoint already covers (a redelivery has no second
effect), reads from Postgres whatever the stream lacks between the checkpoint and the entry
(Redis restarted empty, FLUSHALL, trimmed), lets the consumer apply the events, and moves the
checkpoint: the effect and the progress commit together. When the stream is quiet, the group
also reads Postgres past its checkpoint, so it never waits on the relay to notice a gap.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

import asyncpg
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from server.events import store
from server.events.catalog import STREAM, DomainEvent
from server.events.store import Position

log = logging.getLogger("replyhq.workers.event_consumers")
# The group's checkpoint, locked for the batch, with what retention deleted and how far the relay
# got. The effect and the checkpoint commit together, so a commit lost in a Postgres crash loses
# both and those events are applied again, once: the transaction need not wait for the WAL flush.
_CHECKPOINT_SQL = """
SELECT c.tx::text AS tx, c.seq, r.tx::text AS kept_tx, r.seq AS kept_seq, l.seq AS relayed_seq,
       set_config('synchronous_commit', 'off', true) AS async_commit
FROM event_consumers c, event_retention r, event_relay l
WHERE c.name = $1 AND r.id = 1 AND l.id = 1
FOR UPDATE OF c
"""


class Consumer(Protocol):
    """What a group does with events: runs inside the transaction that moves its checkpoint."""

    name: str

    async def apply(self, conn: asyncpg.Connection, events: list[DomainEvent]) -> None: ...


class ConsumerGroup:
    def __init__(self, pool: asyncpg.Pool, redis: aioredis.Redis, consumer: Consumer, *, replica_id: str,
                 metrics: Any = None, batch: int = 1000, block_ms: int = 200, claim_idle_ms: int = 10_000,
                 idle_catch_up_s: float = 1.0) -> None:
        self.pool = pool
        self.redis = redis
        self.consumer = consumer
        self.name = consumer.name
        self.replica_id = replica_id
        self.metrics = metrics
        self.batch = batch
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.idle_catch_up_s = idle_catch_up_s
        self._task: asyncio.Task[None] | None = None
        self._warned_retention = False
        self._next_claim = 0.0  # loop time of the next look for entries a dead replica left

    async def start(self) -> None:
        await self.pool.execute(
            """INSERT INTO event_consumers (name, tx, seq)
               SELECT $1, tx, seq FROM event_retention WHERE id = 1 ON CONFLICT (name) DO NOTHING""", self.name)
        self._task = asyncio.create_task(self._run(), name=f"event-consumer-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(STREAM, self.name, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        quiet_since = loop.time()
        group_ready = False
        while True:
            try:
                if not group_ready:
                    await self._ensure_group()
                    group_ready = True
                entries = await self._read()
                if entries:
                    await self.handle(entries)
                    quiet_since = loop.time()
                elif loop.time() - quiet_since >= self.idle_catch_up_s:
                    await self.catch_up()
                    quiet_since = loop.time()
            except asyncio.CancelledError:
                raise
            except ResponseError as exc:
                if "NOGROUP" in str(exc):  # Redis lost the stream and its groups: make them again
                    group_ready = False
                    continue
                log.warning("event consumer %s: %r; retrying", self.name, exc)
                await asyncio.sleep(0.5)
            except Exception as exc:  # Postgres or Redis away: the checkpoint keeps our place
                log.warning("event consumer %s: %r; retrying", self.name, exc)
                group_ready = False
                await asyncio.sleep(0.5)

    async def _read(self) -> list[tuple[bytes, dict[bytes, bytes]]]:
        # Entries another replica took and never acknowledged (it died): looked for now and then,
        # not on every read (they can be claimed only claim_idle_ms after they were taken anyway).
        now = asyncio.get_running_loop().time()
        if now >= self._next_claim:
            self._next_claim = now + self.claim_idle_ms / 4000
            claimed: Any = await self.redis.xautoclaim(STREAM, self.name, self.replica_id, self.claim_idle_ms,
                                                       start_id="0-0", count=self.batch)
            if claimed and claimed[1]:
                self._next_claim = now  # there may be more
                return [e for e in claimed[1] if e[1]]
        found: Any = await self.redis.xreadgroup(self.name, self.replica_id, {STREAM: ">"}, count=self.batch,
                                                 block=self.block_ms)
        return list(found[0][1]) if found else []  # RESP2: [[stream, [(id, fields), ...]]]

    async def handle(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> int:
        """Apply a batch of stream entries once; returns how many events were applied."""
        events = []
        for _, fields in entries:
            event = store.decode_event(fields[b"e"])
            events.append((Position.parse(fields[b"prev"]), event))
        applied = await self._apply(events)
        await self.redis.xack(STREAM, self.name, *[entry_id for entry_id, _ in entries])
        return applied

    async def catch_up(self) -> int:
        """Apply what Postgres holds past the checkpoint (the stream may have lost it)."""
        total = 0
        while True:
            applied = await self._apply(None)
            total += applied
            if applied < self.batch:
                return total

    async def _apply(self, events: list[tuple[Position, DomainEvent]] | None) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(_CHECKPOINT_SQL, self.name)  # one round trip: it is on every batch
            checkpoint = Position(int(row["tx"]), row["seq"])
            self._check_retention(checkpoint, Position(int(row["kept_tx"]), row["kept_seq"]))
            if self.metrics is not None:  # numbers follow commit order closely: a fair estimate of the lag
                self.metrics.event_consumer_lag.labels(self.name).set(max(0, row["relayed_seq"] - checkpoint.n))
            todo: list[DomainEvent] = []
            cursor = checkpoint
            if events is None:
                todo = await store.read_after(conn, cursor, self.batch)
                if todo:
                    cursor = Position.parse(todo[-1].position)
            else:
                for prev, event in sorted(events, key=lambda pe: Position.parse(pe[1].position)):
                    pos = Position.parse(event.position)
                    if pos <= cursor:
                        continue  # applied before: a redelivery, or the relay appending again
                    if prev != cursor:
                        # The stream lacks what lies between: every event before a relayed one is
                        # committed and visible, so Postgres has it all.
                        todo += await _all_between(conn, cursor, pos)
                    todo.append(event)
                    cursor = pos
            if not todo:
                return 0
            await self.consumer.apply(conn, todo)
            await conn.execute(
                """UPDATE event_consumers SET tx = $2::text::xid8, seq = $3, applied = applied + $4,
                   updated_at = now() WHERE name = $1""", self.name, str(cursor.tx), cursor.n, len(todo))
        if self.metrics is not None:
            self.metrics.event_consumer_applied.labels(self.name).inc(len(todo))
            now = time.time()
            delay = self.metrics.event_consumer_delay.labels(self.name)
            for event in todo[:: max(1, len(todo) // 20)]:  # a sample per batch is enough for the histogram
                delay.observe(event.age_s(now))
        return len(todo)

    def _check_retention(self, checkpoint: Position, mark: Position) -> None:
        behind = checkpoint < mark
        if self.metrics is not None:
            self.metrics.event_consumer_behind_retention.labels(self.name).set(1 if behind else 0)
        if behind and not self._warned_retention:
            log.error("EVENT CONSUMER %s FELL BEHIND RETENTION: its checkpoint %s is older than the events "
                      "already deleted (up to %s); the events in between are lost to it. Raise "
                      "EVENT_RETENTION_DAYS or fix the consumer.", self.name, checkpoint, mark)
        self._warned_retention = behind


async def _all_between(conn: asyncpg.Connection, after: Position, before: Position) -> list[DomainEvent]:
    out: list[DomainEvent] = []
    while True:
        page = await store.read_between(conn, after, before, 5000)
        out += page
        if len(page) < 5000:
            return out
        after = Position.parse(page[-1].position)
