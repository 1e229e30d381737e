"""Domain events: every state change appends one event to a Redis Stream that webhooks,
workflows and analytics read with consumer groups of their own."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError

DOMAIN_STREAM = "events:domain"
_MAXLEN = 1_000_000
_encode = msgspec.json.Encoder().encode
log = logging.getLogger("replyhq.events")


def event_fields(kind: str, app_id: str, data: Any) -> dict[Any, Any]:
    return {"kind": kind, "app_id": app_id, "ts": str(int(time.time() * 1000)), "data": _encode(data)}


async def append_events(redis: aioredis.Redis, events: list[tuple[str, str, Any]]) -> None:
    """One round trip for a batch of (kind, app_id, data)."""
    if not events:
        return
    async with redis.pipeline(transaction=False) as pipe:
        for kind, app_id, data in events:
            pipe.xadd(DOMAIN_STREAM, event_fields(kind, app_id, data), maxlen=_MAXLEN, approximate=True)
        await pipe.execute()


class DomainEventWriter:
    """Appends events off the hot path: whatever queued while the last write was in flight goes
    out in one pipeline. Events follow commits they describe; a replica dying in between loses
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
            batch, self._queue = self._queue[:5000], self._queue[5000:]
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
