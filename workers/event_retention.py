"""Event retention: deletes domain events older than EVENT_RETENTION_DAYS, in small batches of rows.

One replica at a time (the "event-retention" lease). Batches are small, taken in position order, so a
prune never holds locks the commit path waits on (commits only insert). The newest position
deleted is kept in event_retention: a consumer whose checkpoint is older has missed events and
says so loudly (workers/runtime/consumer_groups.py).
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg
import redis.asyncio as aioredis

from server.events.store import ROW_EVENTS
from workers.runtime.leased_worker import LeasedWorker

log = logging.getLogger("replyhq.workers.event_retention")
LEASE_KIND = "event-retention"

_PRUNE_SQL = f"""
WITH gone AS (
    -- The oldest rows (the primary key's order), of those the expired ones: positions follow
    -- time closely, so a batch with anything young in it is the last one needed. A row goes whole,
    -- with every event it lists (migration 045): they committed together. Its last event's
    -- position is the row's seq plus the events it lists, less one.
    DELETE FROM event_rows WHERE (tx, seq) IN (
        SELECT tx, seq FROM event_rows ORDER BY tx, seq LIMIT $2)
      AND occurred_at < now() - make_interval(days => $1)
    RETURNING tx, seq + {ROW_EVENTS} - 1 AS last, {ROW_EVENTS} AS n
), top AS (SELECT tx, last FROM gone ORDER BY tx DESC, last DESC LIMIT 1
), mark AS (
    UPDATE event_retention r SET tx = top.tx, seq = top.last FROM top
    WHERE r.id = 1 AND (r.tx, r.seq) < (top.tx, top.last) RETURNING 1
)
-- `mark` runs whether read or not (as every data-modifying WITH does).
SELECT count(*) AS rows, coalesce(sum(n), 0) AS events FROM gone
"""


class EventRetention(LeasedWorker):
    kind = LEASE_KIND
    log = log

    def __init__(self, pool: asyncpg.Pool, redis: aioredis.Redis, *, replica_id: str, days: int,
                 interval_s: float = 60.0, batch: int = 5000) -> None:
        super().__init__(redis, replica_id=replica_id, interval_s=interval_s)
        self.pool = pool
        self.days = days
        self.batch = batch

    async def tick(self) -> bool:
        await self.prune()
        return False

    async def prune(self) -> int:
        """Delete every expired event, a batch of rows per transaction; returns how many events."""
        total = 0
        while True:
            row = await self.pool.fetchrow(_PRUNE_SQL, self.days, self.batch)
            total += row["events"]
            if row["rows"] < self.batch:
                if total:
                    log.info("event retention: %d events older than %d days deleted", total, self.days)
                return total
            await asyncio.sleep(0.01)  # let other work in between batches
