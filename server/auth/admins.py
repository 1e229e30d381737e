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


_SELECT = """SELECT a.id, a.app_id, a.email, a.name, a.role, p.name AS app_name, a.password_hash,
                    a.created_at, a.last_login_at
             FROM admins a JOIN apps p ON p.id = a.app_id"""


async def active_by_id(conn: asyncpg.Pool | asyncpg.Connection, admin_id: UUID, app_id: UUID) -> AdminRow | None:
    """Primary-key lookup made on every authenticated request: removed or disabled admins get None."""
    row = await conn.fetchrow(f"{_SELECT} WHERE a.id = $1 AND a.app_id = $2 AND a.disabled_at IS NULL",
                              admin_id, app_id)
    return AdminRow(**dict(row)) if row else None


async def active_by_email(conn: asyncpg.Pool | asyncpg.Connection, email: str) -> AdminRow | None:
    row = await conn.fetchrow(f"{_SELECT} WHERE lower(a.email) = lower($1) AND a.disabled_at IS NULL", email)
    return AdminRow(**dict(row)) if row else None


async def record_login(conn: asyncpg.Pool | asyncpg.Connection, admin_id: UUID) -> None:
    await conn.execute("UPDATE admins SET last_login_at = now() WHERE id = $1", admin_id)
