"""The account settings of an app (workspace): name and identity verification."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from server.errors import NotFound


@dataclass(frozen=True)
class AppAccount:
    id: UUID
    name: str
    identity_verification_required: bool
    identity_secret: str
    created_at: datetime


_COLUMNS = "id, name, identity_verification_required, identity_secret, created_at"


async def get(conn: asyncpg.Pool | asyncpg.Connection, app_id: UUID) -> AppAccount:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM apps WHERE id = $1", app_id)
    if row is None:
        raise NotFound("no such app")
    return AppAccount(**dict(row))


async def update(conn: asyncpg.Pool | asyncpg.Connection, app_id: UUID, *, name: str | None = None,
                 identity_verification_required: bool | None = None) -> AppAccount:
    """Change only the fields given (None keeps the stored value)."""
    row = await conn.fetchrow(
        f"""WITH old AS (SELECT name, identity_verification_required AS ivr FROM apps WHERE id = $1),
                 a AS (UPDATE apps SET name = coalesce($2, name),
                           identity_verification_required = coalesce($3, identity_verification_required)
                       WHERE id = $1 RETURNING {_COLUMNS}),
                 ch AS (SELECT a.*, array_remove(ARRAY[
                            CASE WHEN old.name IS DISTINCT FROM a.name THEN 'name' END,
                            CASE WHEN old.ivr IS DISTINCT FROM a.identity_verification_required
                                 THEN 'identity_verification_required' END], NULL) AS changes
                        FROM a, old),
                 ev AS (INSERT INTO domain_events (type, app_id, data)
                        SELECT 'workspace.updated', ch.id, jsonb_build_object('workspace', jsonb_build_object(
                            'id', ch.id, 'name', ch.name,
                            'identity_verification_required', ch.identity_verification_required),
                            'changes', to_jsonb(ch.changes))
                        FROM ch WHERE cardinality(ch.changes) > 0 RETURNING 1)
            SELECT * FROM a""", app_id, name, identity_verification_required)
    if row is None:
        raise NotFound("no such app")
    return AppAccount(**dict(row))
