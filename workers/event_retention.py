"""Event retention: deletes domain events older than EVENT_RETENTION_DAYS, in small batches.

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

from workers.runtime.leased_worker import LeasedWorker

log = logging.getLogger("replyhq.workers.event_retention")
LEASE_KIND = "event-retention"

_PRUNE_SQL = """
WITH gone AS (
    -- The oldest positions (the primary key's order), of those the expired ones: positions follow
    -- time closely, so a batch with anything young in it is the last one needed.
    DELETE FROM domain_events WHERE (tx, seq) IN (
        SELECT tx, seq FROM domain_events ORDER BY tx, seq LIMIT $2)
      AND occurred_at < now() - make_interval(days => $1)
    RETURNING tx, seq
), top AS (SELECT tx, seq FROM gone ORDER BY tx DESC, seq DESC LIMIT 1
), mark AS (
    UPDATE event_retention r SET tx = top.tx, seq = top.seq FROM top
    WHERE r.id = 1 AND (r.tx, r.seq) < (top.tx, top.seq) RETURNING 1
)
SELECT (SELECT count(*) FROM gone) + 0 * (SELECT count(*) FROM mark) AS deleted
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
        """Delete every expired event, a batch per transaction; returns how many."""
        total = 0
        while True:
            deleted = await self.pool.fetchval(_PRUNE_SQL, self.days, self.batch) or 0
            total += deleted
            if deleted < self.batch:
                if total:
                    log.info("event retention: %d events older than %d days deleted", total, self.days)
                return total
            await asyncio.sleep(0.01)  # let other work in between batches
