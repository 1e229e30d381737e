"""The settings of an app (workspace): name, timezone, identity verification and its secret.

Every change records its domain event in the same transaction: `workspace.updated` (with the fields
that changed) and `workspace.identity_secret_rotated` (never carrying the secret).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from uuid import UUID

import asyncpg

from server.errors import NotFound
from server.events.record import record

IdentityVerification = Literal["off", "log_only", "enforce"]
IDENTITY_MODES: tuple[str, ...] = ("off", "log_only", "enforce")


@dataclass(frozen=True)
class Workspace:
    id: UUID
    name: str
    timezone: str
    identity_verification: IdentityVerification
    identity_secret: str
    identity_secret_rotated_at: datetime | None
    previous_identity_secret_expires_at: datetime | None
    created_at: datetime


_COLUMNS = """id, name, timezone, identity_verification, identity_secret, identity_secret_rotated_at,
              previous_identity_secret_expires_at, created_at"""


def event_data(ws: Workspace) -> dict[str, object]:
    """The workspace as events carry it (the secret never)."""
    return {"id": str(ws.id), "name": ws.name, "timezone": ws.timezone,
            "identity_verification": ws.identity_verification}


async def get(conn: asyncpg.Pool | asyncpg.Connection, app_id: UUID) -> Workspace:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM apps WHERE id = $1", app_id)
    if row is None:
        raise NotFound("no such app")
    return Workspace(**dict(row))


async def update(pool: asyncpg.Pool, app_id: UUID, admin_id: UUID | None, *, name: str | None = None,
                 timezone: str | None = None, identity_verification: str | None = None) -> Workspace:
    """Change only the fields given (None keeps the stored value); one event when something changed."""
    async with pool.acquire() as conn, conn.transaction():
        old = await conn.fetchrow(f"SELECT {_COLUMNS} FROM apps WHERE id = $1 FOR UPDATE", app_id)
        if old is None:
            raise NotFound("no such app")
        row = await conn.fetchrow(
            f"""UPDATE apps SET name = coalesce($2, name), timezone = coalesce($3, timezone),
                       identity_verification = coalesce($4, identity_verification)
                WHERE id = $1 RETURNING {_COLUMNS}""", app_id, name, timezone, identity_verification)
        ws = Workspace(**dict(row))
        changes = [f for f in ("name", "timezone", "identity_verification") if old[f] != row[f]]
        if changes:
            await record(conn, "workspace.updated", app_id, {"workspace": event_data(ws), "changes": changes},
                         admin_id=admin_id)
    return ws


async def rotate_identity_secret(pool: asyncpg.Pool, app_id: UUID, admin_id: UUID | None,
                                 previous_valid_hours: int) -> tuple[Workspace, str]:
    """A new identity secret (returned once); the old one keeps verifying for `previous_valid_hours`."""
    secret = secrets.token_urlsafe(32)
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            f"""UPDATE apps SET previous_identity_secret = CASE WHEN $3 > 0 THEN identity_secret END,
                       previous_identity_secret_expires_at =
                           CASE WHEN $3 > 0 THEN now() + make_interval(hours => $3) END,
                       identity_secret = $2, identity_secret_rotated_at = now()
                WHERE id = $1 RETURNING {_COLUMNS}""", app_id, secret, previous_valid_hours)
        if row is None:
            raise NotFound("no such app")
        ws = Workspace(**dict(row))
        await record(conn, "workspace.identity_secret_rotated", app_id,
                     {"workspace": event_data(ws), "previous_valid_until":
                      ws.previous_identity_secret_expires_at.isoformat()
                      if ws.previous_identity_secret_expires_at else None}, admin_id=admin_id)
    return ws, secret
