"""The replica's Redis client, its commands packed by hiredis."""

from __future__ import annotations

import redis.asyncio as aioredis

from server.platform.redis.redis_internals import with_hiredis_packing

__all__ = ["connect", "with_hiredis_packing"]


def connect(url: str) -> aioredis.Redis:
    return with_hiredis_packing(aioredis.from_url(url, decode_responses=False, health_check_interval=10,
                                                 socket_keepalive=True))
