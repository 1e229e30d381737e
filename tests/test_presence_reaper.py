"""The presence reaper judges replicas by the heartbeat set (real Redis): a replica missing from
two reads in a row is reaped once; a stale view of the heartbeats (Redis just restarted, every
heartbeat old) reaps nobody."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from server.realtime import sessions
from server.realtime.presence import Presence


class Emits:
    """Records what Presence would emit to the agents."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []

    async def emit(self, event: str, data: Any, **_: Any) -> None:
        self.sent.append((event, data))


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url)  # a logical DB of this test's own, flushed
    yield client
    await client.aclose()


async def _heartbeat(redis: aioredis.Redis, *replicas: str, age_ms: int = 0) -> None:
    now_ms = int(time.time() * 1000)
    await redis.zadd(sessions.REPLICAS_KEY, {r: now_ms - age_ms for r in replicas})


async def _replicas(redis: aioredis.Redis, watcher: str, other: str) -> tuple[Emits, Presence, Presence]:
    """Two heartbeating replicas' presence, both started; what the first emits is recorded."""
    agents = Emits()
    first, second = Presence(redis, agents, watcher), Presence(redis, Emits(), other)
    await _heartbeat(redis, watcher, other)
    await first.start()
    await second.start()
    return agents, first, second


async def test_a_replica_missing_from_two_rounds_is_reaped_once(redis: aioredis.Redis) -> None:
    agents, survivor, doomed = await _replicas(redis, "survivor", "doomed")
    await doomed.connected("app", "ann", "sid-1")
    await doomed.connected("app", "ann", "sid-2")

    await _heartbeat(redis, "doomed", age_ms=60_000)  # stops heartbeating
    await _heartbeat(redis, "survivor")
    assert await survivor.reap_dead() == 0  # first sight: only a suspect
    assert agents.sent == []
    assert await survivor.reap_dead() == 2
    assert agents.sent == [("presence", {"user_id": "ann", "online": False})]
    assert await survivor.reap_dead() == 0  # nothing left, nothing announced twice
    assert await redis.exists("presence:app:ann") == 0


async def test_a_stale_view_of_the_heartbeats_reaps_nobody(redis: aioredis.Redis) -> None:
    agents, one, two = await _replicas(redis, "one", "two")
    await two.connected("app", "bea", "sid-1")

    await _heartbeat(redis, "one", "two", age_ms=60_000)  # Redis back with old heartbeats
    for _ in range(3):
        assert await one.reap_dead() == 0
    await _heartbeat(redis, "one")  # our own tick comes first; "two" is just as alive
    assert await one.reap_dead() == 0  # "two" is a suspect, no more
    await _heartbeat(redis, "two")
    assert await one.reap_dead() == 0
    assert agents.sent == []
    assert await redis.hlen("presence:app:bea") == 1
