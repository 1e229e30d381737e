"""Fixed-window rate limits that hold across replicas at almost no cost per hit.

Each replica counts hits in memory and, every `sync_interval`, adds what it counted to one Redis
counter per (policy, subject, window) in a single pipeline (`INCRBY` + `EXPIRE`); the reply is the
count of all replicas together, which the next hits build on. A subject first counted in a window
triggers a sync at once (within MIN_SYNC_GAP_S), so a replica learns what the others counted of it
before admitting more than a Redis round trip's worth. So a hit is a dict lookup, and Redis sees a
few pipelines a second per replica, however busy the edge. On one replica the limits are exact;
across replicas a burst can pass a limit by what the other replicas admit before their next sync.
When Redis is away the local counts still limit, and they are added once it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

log = logging.getLogger("replyhq.rate_limits")
MIN_SYNC_GAP_S = 0.02


@dataclass(frozen=True)
class Policy:
    name: str  # as the RateLimit headers name it, e.g. "sdk-key"
    limit: int  # hits per window; 0 turns the policy off
    window: int  # seconds; windows start at multiples of it (the same on every replica)


@dataclass(frozen=True)
class Verdict:
    policy: Policy
    allowed: bool
    remaining: int  # hits left in this window after this one
    reset: int  # whole seconds until the window ends


class _Count:
    """One subject's hits in one window of one policy."""

    __slots__ = ("dirty", "ends_at", "known", "limit", "local", "redis_key", "ttl", "window_id")

    def __init__(self, redis_key: str, window_id: int, policy: Policy) -> None:
        self.redis_key = redis_key
        self.window_id = window_id
        self.ends_at = (window_id + 1) * policy.window
        self.ttl = policy.window * 2
        self.limit = policy.limit
        self.known = 0  # every replica's hits, as of the last sync
        self.local = 0  # this replica's hits since then
        self.dirty = False  # has hits Redis has not been told of


class WindowCounters:
    def __init__(self, redis: Any, *, sync_interval: float = 0.5, prefix: str = "rl",
                 clock: Callable[[], float] = time.time) -> None:
        self.redis = redis
        self.sync_interval = sync_interval
        self.prefix = prefix
        self.clock = clock
        self._counts: dict[str, dict[str, _Count]] = {}  # policy name -> subject -> count
        self._dirty: list[_Count] = []
        self._wake = asyncio.Event()

    def take(self, policy: Policy, subject: str, now: float) -> int:
        """Count one hit for `subject`: the hits left in the window after it, or -1 when it is over
        `policy`'s limit (then it is not counted: a client hammering a closed window does not keep
        it closed). The hot path: two dict lookups and an addition."""
        if policy.limit <= 0:
            return policy.limit
        window_id = int(now // policy.window)
        counts = self._counts.get(policy.name)
        if counts is None:
            counts = self._counts[policy.name] = {}
        count = counts.get(subject)
        if count is None or count.window_id != window_id:
            count = counts[subject] = _Count(f"{self.prefix}:{policy.name}:{subject}:{window_id}", window_id,
                                             policy)
            self._wake.set()  # a subject new here: learn what the other replicas counted, soon
        used = count.known + count.local
        if used >= count.limit:
            return -1
        count.local += 1
        if not count.dirty:
            count.dirty = True
            self._dirty.append(count)
        return count.limit - used - 1

    @staticmethod
    def reset_in(policy: Policy, now: float) -> int:
        """Whole seconds until `policy`'s current window ends (at least 1)."""
        return max(1, math.ceil((int(now // policy.window) + 1) * policy.window - now))

    def hit(self, policy: Policy, subject: str) -> Verdict:
        """`take`, with what the RateLimit headers say about it."""
        now = self.clock()
        left = self.take(policy, subject, now)
        return Verdict(policy, left >= 0, max(left, 0), self.reset_in(policy, now))

    async def sync(self) -> None:
        """Add this replica's new hits to the shared counters and learn everyone's totals."""
        now = self.clock()
        batch, self._dirty = self._dirty, []
        for count in batch:
            count.dirty = False
        seen = {id(c) for c in batch}
        for counts in self._counts.values():
            for subject in [s for s, c in counts.items() if c.ends_at <= now and not c.local]:
                del counts[subject]  # windows that ended, with nothing left to tell Redis
            # Subjects past half their limit are re-read even without new hits here, so a replica
            # they have gone quiet on learns that the others used the rest.
            batch.extend(c for c in counts.values() if (c.known + c.local) * 2 >= c.limit and id(c) not in seen)
        if not batch:
            return
        sent = [(count, count.local) for count in batch]
        pipe = self.redis.pipeline(transaction=False)
        for count, delta in sent:
            pipe.incrby(count.redis_key, delta)
            pipe.expire(count.redis_key, count.ttl)
        try:
            replies = await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("rate-limit counters not synced: %s", exc)
            for count, delta in sent:
                if delta and not count.dirty:  # their hits are added next time
                    count.dirty = True
                    self._dirty.append(count)
            return
        for (count, delta), total in zip(sent, replies[::2], strict=True):
            count.local -= delta  # hits counted meanwhile stay local (and dirty) until the next sync
            count.known = int(total)

    async def run(self) -> None:
        """Sync every `sync_interval`, and soon after a subject is first counted in a window (until
        then this replica knows only its own hits of it), until cancelled."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.sync_interval)
            self._wake.clear()
            await self.sync()
            await asyncio.sleep(MIN_SYNC_GAP_S)  # new subjects arriving together share a sync
