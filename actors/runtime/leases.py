"""Partition leases: each partition is owned by exactly one live replica at a time.

Replicas heartbeat into a sorted set; each aims for ceil(partitions / live replicas) leases,
takes free ones and gives back extras, so partitions rebalance when replicas join or leave.
A lease is a Redis key with a short TTL renewed only by its holder (compare-and-extend in Lua);
a dead replica's leases expire and the others take them.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger("replyhq.actors.leases")

_RENEW = """
local out = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2]); out[i] = 1
  else
    out[i] = 0
  end
end
return out
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

Callback = Callable[[int], Awaitable[None]]


class PartitionCountMismatch(Exception):
    """This replica's partition count differs from the one live replicas use."""


class PartitionLeases:
    def __init__(self, redis: aioredis.Redis, *, kind: str, partitions: int, replica_id: str,
                 ttl_ms: int = 2000, tick_s: float = 0.4,
                 on_acquired: Callback | None = None, on_lost: Callback | None = None) -> None:
        self.redis = redis
        self.kind = kind
        self.partitions = partitions
        self.replica_id = replica_id
        self.ttl_ms = ttl_ms
        self.tick_s = tick_s
        self.on_acquired = on_acquired
        self.on_lost = on_lost
        self.owned: set[int] = set()
        self.live_replicas = 1
        self._valid_until = 0.0  # monotonic time our leases are certainly still ours
        self._task: asyncio.Task[None] | None = None
        self._members = f"actors:{kind}:replicas"
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    def lease_key(self, partition: int) -> str:
        return f"actors:{self.kind}:lease:{partition}"

    def owns(self, partition: int) -> bool:
        return partition in self.owned and time.monotonic() < self._valid_until

    async def start(self) -> None:
        await self._check_partition_count()
        await self._tick()
        self._task = asyncio.create_task(self._run(), name=f"leases-{self.kind}")

    async def stop(self) -> None:
        """Hand partitions back at once so another replica need not wait for expiry."""
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for p in sorted(self.owned):
            await self._lose(p)
            try:
                await self._release(keys=[self.lease_key(p)], args=[self.replica_id])
            except RedisError:
                pass
        try:
            await self.redis.zrem(self._members, self.replica_id)
        except RedisError:
            pass

    async def _check_partition_count(self) -> None:
        """Refuse to join replicas that split the same conversations into a different number of
        partitions: one conversation would map to two partitions, so have two owners at once."""
        key = f"actors:{self.kind}:partitions"
        live = await self.redis.zrangebyscore(self._members, int(time.time() * 1000) - self.ttl_ms, "+inf")
        others = [m for m in live if (m.decode() if isinstance(m, bytes) else m) != self.replica_id]
        used = await self.redis.get(key)
        if others and used is not None and int(used) != self.partitions:
            raise PartitionCountMismatch(
                f"ACTOR_PARTITIONS is {self.partitions} here but {int(used)} on the {len(others)} running "
                f"replica(s): every replica must use the same value (change it only with all replicas stopped)")
        await self.redis.set(key, self.partitions)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            try:
                await self._tick()
            except RedisError as exc:
                log.warning("lease tick failed: %s", exc)
                if time.monotonic() >= self._valid_until:
                    for p in sorted(self.owned):
                        await self._lose(p)
            except Exception:
                log.exception("lease tick crashed")

    async def _tick(self) -> None:
        started = time.monotonic()
        now_ms = int(time.time() * 1000)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(self._members, {self.replica_id: now_ms})
            pipe.zremrangebyscore(self._members, 0, now_ms - self.ttl_ms)
            pipe.zcard(self._members)
            _, _, live = await pipe.execute()
        self.live_replicas = max(1, int(live))
        share = math.ceil(self.partitions / self.live_replicas)

        if self.owned:  # renew what we hold; anything we lost to expiry is no longer ours
            held = sorted(self.owned)
            kept = await self._renew(keys=[self.lease_key(p) for p in held], args=[self.replica_id, self.ttl_ms])
            for p, ok in zip(held, kept, strict=True):
                if not ok:
                    await self._lose(p)
        self._valid_until = started + self.ttl_ms / 1000 * 0.8

        for p in sorted(self.owned, reverse=True)[: max(0, len(self.owned) - share)]:
            await self._lose(p)  # give extras back for a newly joined replica
            await self._release(keys=[self.lease_key(p)], args=[self.replica_id])

        if len(self.owned) < share:
            free = [p for p in range(self.partitions) if p not in self.owned]
            holders = await self.redis.mget([self.lease_key(p) for p in free]) if free else []
            # Start at an offset per replica so joiners don't all race for the same partitions.
            candidates = [p for p, h in zip(free, holders, strict=True) if h is None]
            for p in candidates:
                if len(self.owned) >= share:
                    break
                if await self.redis.set(self.lease_key(p), self.replica_id, nx=True, px=self.ttl_ms):
                    self.owned.add(p)
                    if self.on_acquired:
                        await self.on_acquired(p)

    async def _lose(self, partition: int) -> None:
        if partition in self.owned:
            self.owned.discard(partition)
            if self.on_lost:
                await self.on_lost(partition)
