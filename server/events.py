"""Domain events: every state change appends one event to a Redis Stream that webhooks,
workflows and analytics read with consumer groups of their own."""

from __future__ import annotations

import time
from typing import Any

import msgspec
import redis.asyncio as aioredis

DOMAIN_STREAM = "events:domain"
_MAXLEN = 1_000_000
_encode = msgspec.json.Encoder().encode


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
