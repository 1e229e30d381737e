"""API keys' "last used" (time and address): noted in memory on every use, written to Postgres in
the background at most once a minute per key (server/platform/last_seen.py), never on the
request's path."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from server.platform.last_seen import FLUSH_INTERVAL_S, RECORD_EVERY_S, LastSeen
from server.tenancy import api_keys

__all__ = ["FLUSH_INTERVAL_S", "RECORD_EVERY_S", "KeyUsage"]


class KeyUsage(LastSeen[UUID]):
    def __init__(self, pool: asyncpg.Pool, flush_interval: float = FLUSH_INTERVAL_S) -> None:
        async def write(batch: dict[UUID, str | None]) -> None:
            await api_keys.touch(pool, batch)

        super().__init__(write, flush_interval=flush_interval)
        self.pool = pool
