"""Fixed-window rate limits that hold across replicas at almost no cost per hit.

Each replica counts hits in memory and, every `sync_interval`, adds what it counted to one Redis
counter per (policy, subject, window) in a single pipeline (`INCRBY` + `EXPIRE`); the reply is the
count of all replicas together, which the next hits build on. So a hit is a dict lookup, and Redis
sees one round trip per interval per replica, however busy the edge. On one replica the limits are
exact; across replicas a burst can overshoot by what the other replicas admit within one interval.
When Redis is away the local counts still limit, and they are added once it is back.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

log = logging.getLogger("replyhq.rate_limits")


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
    __slots__ = ("known", "local", "window_id")

    def __init__(self, window_id: int) -> None:
        self.window_id = window_id
        self.known = 0  # every replica's hits, as of the last sync
        self.local = 0  # this replica's hits since then


class WindowCounters:
    def __init__(self, redis: Any, *, sync_interval: float = 0.5, prefix: str = "rl",
                 clock: Callable[[], float] = time.time) -> None:
        self.redis = redis
        self.sync_interval = sync_interval
        self.prefix = prefix
        self.clock = clock
        self._counts: dict[tuple[str, str], _Count] = {}
        self._dirty: set[tuple[str, str]] = set()
        self._windows: dict[str, int] = {}  # policy name -> window length, for syncing

    def hit(self, policy: Policy, subject: str) -> Verdict:
        """Count one hit for `subject` unless it is over `policy`'s limit (refused hits are not
        counted: a client hammering a closed window does not keep it closed)."""
        now = self.clock()
        window_id = int(now // policy.window)
        reset = max(1, math.ceil((window_id + 1) * policy.window - now))
        if policy.limit <= 0:
            return Verdict(policy, True, 0, reset)
        key = (policy.name, subject)
        count = self._counts.get(key)
        if count is None or count.window_id != window_id:
            count = self._counts[key] = _Count(window_id)
        used = count.known + count.local
        if used >= policy.limit:
            return Verdict(policy, False, 0, reset)
        count.local += 1
        self._dirty.add(key)
        self._windows[policy.name] = policy.window
        return Verdict(policy, True, policy.limit - used - 1, reset)

    async def sync(self) -> None:
        """Add this replica's new hits to the shared counters and learn everyone's totals."""
        now = self.clock()
        self._forget_ended(now)
        if not self._dirty:
            return
        batch = [(key, self._counts[key]) for key in self._dirty if key in self._counts]
        self._dirty = set()
        sent = [(key, count, count.local) for key, count in batch if count.local]
        if not sent:
            return
        pipe = self.redis.pipeline(transaction=False)
        for (name, subject), count, delta in sent:
            redis_key = f"{self.prefix}:{name}:{subject}:{count.window_id}"
            pipe.incrby(redis_key, delta)
            pipe.expire(redis_key, self._windows[name] * 2)
        try:
            replies = await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("rate-limit counters not synced: %s", exc)
            self._dirty.update(key for key, _, _ in sent)  # their local hits are added next time
            return
        for (key, count, delta), total in zip(sent, replies[::2], strict=True):
            count.local -= delta  # hits counted meanwhile stay local until the next sync
            count.known = int(total)
            if count.local:
                self._dirty.add(key)

    def _forget_ended(self, now: float) -> None:
        ended = [key for key, count in self._counts.items()
                 if (count.window_id + 1) * self._windows.get(key[0], 1) <= now and key not in self._dirty]
        for key in ended:
            del self._counts[key]

    async def run(self) -> None:
        """Sync every `sync_interval` until cancelled."""
        while True:
            await asyncio.sleep(self.sync_interval)
            await self.sync()
