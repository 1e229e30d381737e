"""SQL of end_users: identify (upsert), lookup, device metadata."""

from __future__ import annotations

from typing import Any, TypeAlias
from uuid import UUID

import asyncpg

from server.messaging import rows
from server.messaging.models import EndUser

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool


async def identify(conn: Conn, app_id: UUID, *, external_id: str | None, anonymous_id: str | None,
                   name: str | None = None, email: str | None = None,
                   attributes: dict[str, Any] | None = None, device: dict[str, Any] | None = None) -> EndUser:
    """Find or create the user; given fields overwrite, attributes and device merge.

    With both ids, a visitor known only by `anonymous_id` becomes the identified user (same
    user, conversations and history) unless that external id is someone already.
    """
    patch_meta = {"device": device} if device else {}
    if external_id is not None and anonymous_id is not None:
        promoted = await _promote(conn, app_id, external_id, anonymous_id, name, email, attributes, patch_meta)
        if promoted is not None:
            return promoted
    if external_id is not None:
        row = await conn.fetchrow(
            """INSERT INTO end_users (app_id, external_id, anonymous_id, name, email, attributes, metadata)
               VALUES ($1, $2, $3, $4, $5, $6, $7)
               ON CONFLICT (app_id, external_id) WHERE external_id IS NOT NULL DO UPDATE SET
                   name = COALESCE(EXCLUDED.name, end_users.name),
                   email = COALESCE(EXCLUDED.email, end_users.email),
                   attributes = end_users.attributes || EXCLUDED.attributes,
                   metadata = end_users.metadata || EXCLUDED.metadata,
                   last_seen_at = now()
               RETURNING *""",
            app_id, external_id, anonymous_id, name, email, attributes or {}, patch_meta)
    elif anonymous_id is not None:
        row = await conn.fetchrow(
            """INSERT INTO end_users (app_id, anonymous_id, name, email, attributes, metadata)
               VALUES ($1, $2, $3, $4, $5, $6)
               ON CONFLICT (app_id, anonymous_id) WHERE anonymous_id IS NOT NULL AND external_id IS NULL
               DO UPDATE SET
                   name = COALESCE(EXCLUDED.name, end_users.name),
                   email = COALESCE(EXCLUDED.email, end_users.email),
                   attributes = end_users.attributes || EXCLUDED.attributes,
                   metadata = end_users.metadata || EXCLUDED.metadata,
                   last_seen_at = now()
               RETURNING *""",
            app_id, anonymous_id, name, email, attributes or {}, patch_meta)
    else:
        raise ValueError("identify needs external_id or anonymous_id")
    return rows.end_user(row)


async def _promote(conn: Conn, app_id: UUID, external_id: str, anonymous_id: str, name: str | None,
                   email: str | None, attributes: dict[str, Any] | None,
                   patch_meta: dict[str, Any]) -> EndUser | None:
    """The anonymous visitor, now identified as `external_id`; None when there is no such visitor
    or the external id already names a user (the two are not merged)."""
    try:
        row = await conn.fetchrow(
            """UPDATE end_users SET external_id = $2,
                   name = COALESCE($4, name), email = COALESCE($5, email),
                   attributes = attributes || $6, metadata = metadata || $7, last_seen_at = now()
               WHERE app_id = $1 AND anonymous_id = $3 AND external_id IS NULL
                 AND NOT EXISTS (SELECT 1 FROM end_users WHERE app_id = $1 AND external_id = $2)
               RETURNING *""",
            app_id, external_id, anonymous_id, name, email, attributes or {}, patch_meta)
    except asyncpg.UniqueViolationError:  # the same external id was created meanwhile
        return None
    return rows.end_user(row) if row else None


async def find(conn: Conn, app_id: UUID, *, external_id: str | None, anonymous_id: str | None) -> EndUser | None:
    """The user an SDK caller names: by external id when given, else by anonymous id."""
    if external_id is not None:
        row = await conn.fetchrow("SELECT * FROM end_users WHERE app_id = $1 AND external_id = $2",
                                  app_id, external_id)
    elif anonymous_id is not None:
        row = await conn.fetchrow(
            "SELECT * FROM end_users WHERE app_id = $1 AND anonymous_id = $2 AND external_id IS NULL",
            app_id, anonymous_id)
    else:
        return None
    return rows.end_user(row) if row else None


async def get(conn: Conn, app_id: UUID, user_id: UUID) -> EndUser | None:
    row = await conn.fetchrow("SELECT * FROM end_users WHERE id = $1 AND app_id = $2", user_id, app_id)
    return rows.end_user(row) if row else None


async def touch_seen(conn: Conn, user_id: UUID) -> None:
    await conn.execute(
        "UPDATE end_users SET last_seen_at = now() WHERE id = $1 AND last_seen_at < now() - interval '30 seconds'",
        user_id)
