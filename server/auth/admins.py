"""Admin rows as authentication sees them: the live (not disabled) admin behind a token or email."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg


@dataclass(frozen=True)
class AdminRow:
    id: UUID
    app_id: UUID
    email: str
    name: str
    role: str
    app_name: str
    password_hash: str | None
    created_at: datetime
    last_login_at: datetime | None
    session_live: bool = True  # active_by_id with a session: is that sign-in still live?


_COLUMNS = """a.id, a.app_id, a.email, a.name, a.role, p.name AS app_name, a.password_hash,
              a.created_at, a.last_login_at"""
_FROM = "FROM admins a JOIN apps p ON p.id = a.app_id"
_SELECT = f"SELECT {_COLUMNS} {_FROM}"
# A session (refresh-token family) is live while one of its tokens is unrevoked: rotation revokes the old
# token as it issues the new one; logout, refresh-token reuse and removing the admin revoke them all.
_SESSION_LIVE = """EXISTS (SELECT 1 FROM admin_refresh_tokens t
                           WHERE t.family_id = $3 AND t.admin_id = a.id AND t.revoked_at IS NULL)"""
_BY_ID = "WHERE a.id = $1 AND a.app_id = $2 AND a.disabled_at IS NULL"


async def active_by_id(conn: asyncpg.Pool | asyncpg.Connection, admin_id: UUID, app_id: UUID,
                       session_id: UUID | None = None) -> AdminRow | None:
    """Primary-key lookup made on every authenticated request: removed or disabled admins get None.
    With `session_id`, the row's session_live says whether that sign-in is still live (same query)."""
    if session_id is None:
        row = await conn.fetchrow(f"{_SELECT} {_BY_ID}", admin_id, app_id)
    else:
        row = await conn.fetchrow(f"SELECT {_COLUMNS}, {_SESSION_LIVE} AS session_live {_FROM} {_BY_ID}",
                                  admin_id, app_id, session_id)
    return AdminRow(**dict(row)) if row else None


async def active_by_email(conn: asyncpg.Pool | asyncpg.Connection, email: str) -> AdminRow | None:
    row = await conn.fetchrow(f"{_SELECT} WHERE lower(a.email) = lower($1) AND a.disabled_at IS NULL", email)
    return AdminRow(**dict(row)) if row else None


async def record_login(conn: asyncpg.Pool | asyncpg.Connection, admin_id: UUID) -> None:
    await conn.execute("UPDATE admins SET last_login_at = now() WHERE id = $1", admin_id)
