"""The broadcast scheduler: turns due occurrences into runs and asks the actor to start them.

It ticks on every replica, without a lease: a due broadcast's run is created in one transaction
guarded by the broadcast's old next_run_at (and the run is unique per occurrence), so however many
replicas tick at once, one of them makes the run and moves next_run_at on. After an outage only
the latest missed occurrence runs. A run the actor was not told about (the start call failed, the
replica died right after the commit) is asked for again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime
from uuid import UUID

import asyncpg

from server.broadcasts import store
from server.broadcasts.ports import BroadcastCommands
from server.broadcasts.schedule import latest_due_and_next

log = logging.getLogger("replyhq.workers.broadcast_scheduler")
BATCH = 100  # due broadcasts per query; a tick carries on while a batch comes back full
ACTIVE = ("scheduled", "sending")  # a paused, cancelled or finished broadcast has no due occurrence


class BroadcastScheduler:
    def __init__(self, pool: asyncpg.Pool, commands: Callable[[], BroadcastCommands], *, interval_s: float,
                 pending_retry_s: float | None = None) -> None:
        self.pool = pool
        self.commands = commands  # read at each call: the actor's port is wired after the scheduler starts
        self.interval_s = interval_s
        # A run still pending this long after it was made was never (or not successfully) started.
        self.pending_retry_s = pending_retry_s if pending_retry_s is not None else max(10.0, 10 * interval_s)
        self._asked: dict[UUID, float] = {}  # run id -> when this replica last re-asked for it
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="broadcast-scheduler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Postgres away: the next tick tries again
                log.warning("broadcast scheduler tick failed: %r", exc)
            await asyncio.sleep(self.interval_s)

    async def tick(self, now: datetime | None = None) -> list[UUID]:
        """Fire what is due at `now` (the database's clock when None); returns the runs this call made."""
        made: list[UUID] = []
        while True:
            rows = await self.pool.fetch(
                """SELECT id, app_id, schedule, next_run_at, coalesce($1::timestamptz, now()) AS now
                   FROM broadcasts WHERE next_run_at <= coalesce($1::timestamptz, now())
                     AND status = ANY($2::text[])
                   ORDER BY next_run_at LIMIT $3""", now, list(ACTIVE), BATCH)
            for row in rows:
                run_id = await self._fire(row)
                if run_id is not None:
                    made.append(run_id)
                    await self._start(row["app_id"], row["id"], run_id)
            if len(rows) < BATCH:
                break
        await self._restart_pending(now)
        return made

    async def _fire(self, row: asyncpg.Record) -> UUID | None:
        try:
            due, following = latest_due_and_next(store.schedule_of(row["schedule"]), row["next_run_at"], row["now"])
        except Exception:  # a stored schedule that no longer reads (a zone gone from tzdata): stop it
            log.exception("broadcast %s: its schedule cannot be read; no further occurrence", row["id"])
            due, following = None, None
        async with self.pool.acquire() as conn, conn.transaction():
            moved = await conn.fetchval(
                """UPDATE broadcasts SET next_run_at = $3
                   WHERE id = $1 AND next_run_at = $2 AND status = ANY($4::text[]) RETURNING id""",
                row["id"], row["next_run_at"], following, list(ACTIVE))
            if moved is None or due is None:  # another replica got there first, or nothing to run
                return None
            return await store.insert_run(conn, row["app_id"], row["id"], due)

    async def _start(self, app_id: UUID, broadcast_id: UUID, run_id: UUID) -> None:
        try:
            await self.commands().start(app_id, broadcast_id, run_id)
        except Exception:
            log.warning("could not ask the actor to start run %s of broadcast %s; asking again later", run_id,
                        broadcast_id, exc_info=True)

    async def _restart_pending(self, now: datetime | None) -> None:
        rows = await self.pool.fetch(
            """SELECT r.id, r.app_id, r.broadcast_id FROM broadcast_runs r JOIN broadcasts b ON b.id = r.broadcast_id
               WHERE r.status = 'pending' AND b.status = ANY($3::text[])
                 AND r.created_at < coalesce($1::timestamptz, now()) - $2 * interval '1 second'
               ORDER BY r.created_at LIMIT $4""", now, self.pending_retry_s, list(ACTIVE), BATCH)
        clock = time.monotonic()
        self._asked = {k: v for k, v in self._asked.items() if clock - v < self.pending_retry_s}
        for r in rows:
            if r["id"] in self._asked:  # asked recently: give the actor time to pick it up
                continue
            self._asked[r["id"]] = clock
            await self._start(r["app_id"], r["broadcast_id"], r["id"])
