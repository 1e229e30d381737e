"""API keys' "last used": noted in memory on every use, written to Postgres in the background.

A busy SDK key is used thousands of times a second; its row is written at most once a minute per
replica (the UPDATE also skips rows written by another replica within the minute), in one
statement per flush for every key seen, never on the request's path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from uuid import UUID

import asyncpg

from server.tenancy import api_keys

log = logging.getLogger("replyhq.key_usage")

RECORD_EVERY_S = 60.0  # the "last used" resolution the settings page shows
FLUSH_INTERVAL_S = 5.0


class KeyUsage:
    def __init__(self, pool: asyncpg.Pool, flush_interval: float = FLUSH_INTERVAL_S) -> None:
        self.pool = pool
        self.flush_interval = flush_interval
        self._recorded: dict[UUID, float] = {}  # key id -> monotonic time it was last queued
        self._pending: set[UUID] = set()

    def seen(self, key_id: UUID) -> None:
        """A request or socket used this key (cheap: a dict lookup on the hot path)."""
        now = time.monotonic()
        last = self._recorded.get(key_id)
        if last is not None and now - last < RECORD_EVERY_S:
            return
        self._recorded[key_id] = now
        self._pending.add(key_id)

    async def flush(self) -> None:
        if not self._pending:
            return
        ids, self._pending = list(self._pending), set()
        stale = time.monotonic() - RECORD_EVERY_S
        self._recorded = {k: t for k, t in self._recorded.items() if t > stale}  # keys no longer used
        try:
            await api_keys.touch(self.pool, ids)
        except (asyncpg.PostgresError, OSError) as exc:  # Postgres away: try again next flush
            log.warning("could not record API key use: %s", exc)
            self._pending.update(ids)

    async def run(self) -> None:
        """Flush every `flush_interval` until cancelled."""
        while True:
            await asyncio.sleep(self.flush_interval)
            await self.flush()
