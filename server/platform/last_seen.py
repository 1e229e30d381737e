"""'Last seen' bookkeeping: noted in memory on every use, written in the background in batches.

A busy key or admin is seen thousands of times a second; each is queued for writing at most once
per `every_s` per replica (the write itself also skips rows another replica wrote within that
time), one statement per flush for everything seen, never on the request's path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

import asyncpg

log = logging.getLogger("replyhq.last_seen")
K = TypeVar("K", bound=Hashable)

RECORD_EVERY_S = 60.0  # the "last used / last active" resolution the settings page shows
FLUSH_INTERVAL_S = 5.0


class LastSeen(Generic[K]):
    """`write({key: detail})` stores one batch (detail: e.g. the address it was seen from, or None)."""

    def __init__(self, write: Callable[[dict[K, str | None]], Awaitable[None]], *,
                 flush_interval: float = FLUSH_INTERVAL_S, every_s: float = RECORD_EVERY_S) -> None:
        self._write = write
        self.flush_interval = flush_interval
        self.every_s = every_s
        self._recorded: dict[K, float] = {}  # key -> monotonic time it was last queued
        self._pending: dict[K, str | None] = {}

    def seen(self, key: K, detail: str | None = None) -> None:
        """Cheap: a dict lookup on the hot path."""
        now = time.monotonic()
        last = self._recorded.get(key)
        if last is not None and now - last < self.every_s:
            return
        self._recorded[key] = now
        self._pending[key] = detail

    async def flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, {}
        stale = time.monotonic() - self.every_s
        self._recorded = {k: t for k, t in self._recorded.items() if t > stale}  # no longer seen
        try:
            await self._write(batch)
        except (asyncpg.PostgresError, OSError) as exc:  # Postgres away: try again next flush
            log.warning("could not record %d last-seen times: %s", len(batch), exc)
            for k, v in batch.items():
                self._pending.setdefault(k, v)

    async def run(self) -> None:
        """Flush every `flush_interval` until cancelled."""
        while True:
            await asyncio.sleep(self.flush_interval)
            await self.flush()
