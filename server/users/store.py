"""SQL of end_users: identify (upsert), lookup, device metadata."""

from __future__ import annotations

from typing import Any, TypeAlias
from uuid import UUID

import asyncpg

from server.conversations import rows
from server.conversations.models import EndUser

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool

# The user as the REST API shows it (server/conversations/rows.py), built in SQL for its event.
_USER_JSON = """jsonb_build_object('id', up.id, 'app_id', up.app_id, 'user_id', up.external_id,
    'anonymous_id', up.anonymous_id, 'name', up.name, 'email', up.email, 'attributes', up.attributes,
    'metadata', up.metadata,
    'first_seen_at', to_char(up.first_seen_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    'last_seen_at', to_char(up.last_seen_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))"""

# Follows an upsert CTE `up` (with `inserted`) and the row before it, `old`: records user.created,
# or user.updated when a field the user or the app sees changed (a mere visit, last_seen_at, does
# not count), in the statement of the change itself.
_RECORD_USER_EVENT = """,
ch AS (
    SELECT up.*, array_remove(ARRAY[
        CASE WHEN old.name IS DISTINCT FROM up.name THEN 'name' END,
        CASE WHEN old.email IS DISTINCT FROM up.email THEN 'email' END,
        CASE WHEN old.attributes IS DISTINCT FROM up.attributes THEN 'attributes' END,
        CASE WHEN old.metadata IS DISTINCT FROM up.metadata THEN 'metadata' END], NULL) AS changes
    FROM up LEFT JOIN old ON true
),
ev AS (
    INSERT INTO event_rows (type, app_id, user_id, data)
    SELECT CASE WHEN up.inserted THEN 'user.created' ELSE 'user.updated' END, up.app_id, up.id,
           CASE WHEN up.inserted THEN jsonb_build_object('user', """ + _USER_JSON + """)
                ELSE jsonb_build_object('user', """ + _USER_JSON + """, 'changes', to_jsonb(up.changes)) END
    FROM ch AS up WHERE up.inserted OR cardinality(up.changes) > 0
    RETURNING 1
)
SELECT * FROM up"""


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
            """WITH old AS (SELECT * FROM end_users WHERE app_id = $1 AND external_id = $2),
               up AS (
               INSERT INTO end_users (app_id, external_id, anonymous_id, name, email, attributes, metadata)
               VALUES ($1, $2, $3, $4, $5, $6, $7)
               ON CONFLICT (app_id, external_id) WHERE external_id IS NOT NULL DO UPDATE SET
                   name = COALESCE(EXCLUDED.name, end_users.name),
                   email = COALESCE(EXCLUDED.email, end_users.email),
                   attributes = end_users.attributes || EXCLUDED.attributes,
                   metadata = end_users.metadata || EXCLUDED.metadata,
                   last_seen_at = now()
               RETURNING *, (xmax = 0) AS inserted)""" + _RECORD_USER_EVENT,
            app_id, external_id, anonymous_id, name, email, attributes or {}, patch_meta)
    elif anonymous_id is not None:
        row = await conn.fetchrow(
            """WITH old AS (SELECT * FROM end_users WHERE app_id = $1 AND anonymous_id = $2 AND external_id IS NULL),
               up AS (
               INSERT INTO end_users (app_id, anonymous_id, name, email, attributes, metadata)
               VALUES ($1, $2, $3, $4, $5, $6)
               ON CONFLICT (app_id, anonymous_id) WHERE anonymous_id IS NOT NULL AND external_id IS NULL
               DO UPDATE SET
                   name = COALESCE(EXCLUDED.name, end_users.name),
                   email = COALESCE(EXCLUDED.email, end_users.email),
                   attributes = end_users.attributes || EXCLUDED.attributes,
                   metadata = end_users.metadata || EXCLUDED.metadata,
                   last_seen_at = now()
               RETURNING *, (xmax = 0) AS inserted)""" + _RECORD_USER_EVENT,
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
            """WITH up AS (UPDATE end_users SET external_id = $2,
                   name = COALESCE($4, name), email = COALESCE($5, email),
                   attributes = attributes || $6, metadata = metadata || $7, last_seen_at = now()
               WHERE app_id = $1 AND anonymous_id = $3 AND external_id IS NULL
                 AND NOT EXISTS (SELECT 1 FROM end_users WHERE app_id = $1 AND external_id = $2)
               RETURNING *),
               ev AS (INSERT INTO event_rows (type, app_id, user_id, data)
                      SELECT 'user.identified', up.app_id, up.id,
                             jsonb_build_object('user', """ + _USER_JSON + """, 'anonymous_id', up.anonymous_id)
                      FROM up RETURNING 1)
               SELECT * FROM up""",
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
