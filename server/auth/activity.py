"""Admins' "last active": every authenticated request or /admin socket event notes the admin in
memory; written to Postgres in the background at most once a minute per admin
(server/platform/last_seen.py)."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from server.platform.last_seen import FLUSH_INTERVAL_S, LastSeen


class AdminActivity(LastSeen[UUID]):
    def __init__(self, pool: asyncpg.Pool, flush_interval: float = FLUSH_INTERVAL_S) -> None:
        async def write(batch: dict[UUID, str | None]) -> None:
            await pool.execute(
                """UPDATE admins SET last_active_at = now() WHERE id = ANY($1::uuid[])
                   AND (last_active_at IS NULL OR last_active_at < now() - interval '1 minute')""", list(batch))

        super().__init__(write, flush_interval=flush_interval)
