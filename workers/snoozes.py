"""Snooze worker: reopens snoozed conversations when their snoozed_until passes.

Runs on every replica but works on exactly one at a time: the holder of the single
"snooze-worker" lease (actors/leases.PartitionLeases with one partition; when that replica
dies its lease expires and another takes over). Each reopen goes through the conversation
actor like an agent's status change, so `conversation:updated` reaches agents and the user.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from actors.leases import PartitionLeases
from server.errors import ApiError
from server.inbox import snoozes
from server.messaging.models import UpdateCommand

log = logging.getLogger("replyhq.workers.snoozes")
LEASE_KIND = "snooze-worker"
BATCH = 200


class SnoozeWorker:
    def __init__(self, pool: asyncpg.Pool, redis: aioredis.Redis, messaging: Any, *, replica_id: str,
                 interval_s: float) -> None:
        self.pool = pool
        self.messaging = messaging
        self.interval_s = interval_s
        self.lease = PartitionLeases(redis, kind=LEASE_KIND, partitions=1, replica_id=replica_id)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.lease.start()
        self._task = asyncio.create_task(self._run(), name="snooze-worker")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.lease.stop()

    @property
    def active(self) -> bool:
        """This replica holds the lease: it is the one reopening snoozes."""
        return self.lease.owns(0)

    async def _run(self) -> None:
        while True:
            try:
                if self.active:
                    await self.reopen_due()
            except asyncio.CancelledError:
                raise
            except Exception:  # storage hiccup: try again next tick
                log.exception("snooze tick failed")
            await asyncio.sleep(self.interval_s)

    async def reopen_due(self) -> int:
        """Reopen every due snooze (in batches); returns how many were reopened."""
        reopened = 0
        while self.active:
            found = await snoozes.due(self.pool, BATCH)
            before = reopened
            for item in found:
                if not self.active:  # lost the lease mid-batch: the new holder carries on
                    return reopened
                if await self._reopen(item):
                    reopened += 1
            if len(found) < BATCH or reopened == before:  # done, or stuck: retry next tick
                break
        return reopened

    async def _reopen(self, item: snoozes.DueSnooze) -> bool:
        if not await snoozes.still_due(self.pool, item.conversation_id):
            return False
        try:
            await self.messaging.update(UpdateCommand(conversation_id=str(item.conversation_id),
                                                      app_id=str(item.app_id), status="open"))
        except ApiError as exc:  # e.g. the actor timed out: the snooze is still due next tick
            log.warning("snooze of %s not reopened: %s", item.conversation_id, exc.message)
            return False
        return True
