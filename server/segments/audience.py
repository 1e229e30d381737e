"""Who a filter selects now: the count and a sample (the preview; broadcasts call it too)."""

from __future__ import annotations

from typing import TypeAlias
from uuid import UUID

import asyncpg

from server.segments.compile import compile_filter
from server.segments.filters import Filter
from server.segments.schemas import Preview
from server.users.listing import admin_user

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool
SAMPLE = 20


async def count(conn: Conn, app_id: UUID, f: Filter) -> int:
    params: list[object] = [app_id]
    where = compile_filter(f, params)
    return int(await conn.fetchval(f"SELECT count(*) FROM end_users u WHERE u.app_id = $1 AND {where}", *params))


async def preview(conn: Conn, app_id: UUID, f: Filter, *, online: set[str] | None = None,
                  limit: int = SAMPLE) -> Preview:
    """How many of the app's users the filter selects, and the most recently seen `limit` of them.
    `online`: ids of users connected now (their `online` flag); none by default."""
    params: list[object] = [app_id]
    where = compile_filter(f, params)
    rows = await conn.fetch(
        f"""SELECT u.*, (SELECT count(*) FROM conversations c WHERE c.user_id = u.id) AS conversations_count
            FROM end_users u WHERE u.app_id = $1 AND {where}
            ORDER BY u.last_seen_at DESC, u.id LIMIT {int(limit)}""", *params)
    total = len(rows) if len(rows) < limit else await count(conn, app_id, f)
    return Preview(count=total, users=[admin_user(r, online or set()) for r in rows])
