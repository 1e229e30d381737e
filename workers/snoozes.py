"""Snooze worker: reopens snoozed conversations when their snoozed_until passes.

Runs on every replica but works on exactly one at a time: the holder of the single
"snooze-worker" lease (actors/leases.PartitionLeases with one partition; when that replica
dies its lease expires and another takes over). Each reopen goes through the conversation
actor like an agent's status change, so `conversation:updated` reaches agents and the user.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from server.conversations import snoozes
from server.conversations.models import UpdateCommand
from server.errors import ApiError
from workers.runtime.leased_worker import LeasedWorker

log = logging.getLogger("replyhq.workers.snoozes")
LEASE_KIND = "snooze-worker"
BATCH = 200


class SnoozeWorker(LeasedWorker):
    kind = LEASE_KIND
    log = log

    def __init__(self, pool: asyncpg.Pool, redis: aioredis.Redis, messaging: Any, *, replica_id: str,
                 interval_s: float) -> None:
        super().__init__(redis, replica_id=replica_id, interval_s=interval_s, error_delay_s=0)
        self.pool = pool
        self.messaging = messaging

    async def tick(self) -> bool:
        await self.reopen_due()
        return False

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
