"""SQL of the admin's reads over end users: searched, paged lists with device metadata."""

from __future__ import annotations

from typing import Any, TypeAlias
from uuid import UUID

import asyncpg

from server.conversations import rows
from server.conversations.admin_schemas import AdminUser
from server.conversations.inbox_queries import like_pattern

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool

_SELECT = """SELECT u.*, (SELECT count(*) FROM conversations c WHERE c.user_id = u.id) AS conversations_count
             FROM end_users u"""


def admin_user(row: Any, online: set[str]) -> AdminUser:
    user = rows.end_user(row)
    return AdminUser(**{f: getattr(user, f) for f in user.__struct_fields__}, online=user.id in online,
                     conversations_count=row["conversations_count"])


async def list_users(conn: Conn, app_id: UUID, *, q: str | None, limit: int, offset: int,
                     online: set[str]) -> tuple[list[AdminUser], int]:
    """The app's users, most recently seen first, and how many match in all."""
    args: list[Any] = [app_id]
    where = "u.app_id = $1"
    if q:
        args.append(like_pattern(q))
        where += """ AND (u.name ILIKE $2 OR u.email ILIKE $2 OR u.external_id ILIKE $2 OR u.anonymous_id ILIKE $2
                          OR u.metadata->'device'->>'model' ILIKE $2 OR u.metadata->'device'->>'platform' ILIKE $2)"""
    total = await conn.fetchval(f"SELECT count(*) FROM end_users u WHERE {where}", *args)
    found = await conn.fetch(
        f"{_SELECT} WHERE {where} ORDER BY u.last_seen_at DESC, u.id LIMIT ${len(args) + 1} OFFSET ${len(args) + 2}",
        *args, limit, offset)
    return [admin_user(r, online) for r in found], int(total)


async def get_user(conn: Conn, app_id: UUID, user_id: UUID, online: set[str]) -> AdminUser | None:
    row = await conn.fetchrow(f"{_SELECT} WHERE u.id = $1 AND u.app_id = $2", user_id, app_id)
    return admin_user(row, online) if row else None
