"""Plain SQL over segments; every change records its domain event in the same transaction."""

from __future__ import annotations

from typing import Any, TypeAlias
from uuid import UUID

import asyncpg
import msgspec

from server.events.record import record
from server.segments.filters import Filter, filter_to_json, parse_filter
from server.segments.schemas import Segment

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool

_COLUMNS = "id, name, filter, created_by, created_at, updated_at"


def segment_out(r: asyncpg.Record) -> Segment:
    return Segment(id=str(r["id"]), name=r["name"], filter=r["filter"],
                   created_by=str(r["created_by"]) if r["created_by"] else None,
                   created_at=r["created_at"], updated_at=r["updated_at"])


def _event_data(segment: Segment, **extra: Any) -> dict[str, Any]:
    return {"segment": msgspec.to_builtins(segment), **extra}


async def list_segments(conn: Conn, app_id: UUID) -> list[Segment]:
    rows = await conn.fetch(f"SELECT {_COLUMNS} FROM segments WHERE app_id = $1 ORDER BY created_at DESC, id",
                            app_id)
    return [segment_out(r) for r in rows]


async def get_segment(conn: Conn, app_id: UUID, segment_id: UUID) -> Segment | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM segments WHERE app_id = $1 AND id = $2", app_id, segment_id)
    return segment_out(row) if row else None


async def segment_filter(conn: Conn, app_id: UUID, segment_id: UUID) -> Filter | None:
    """The saved filter of the app's segment (None: no such segment in this app)."""
    stored = await conn.fetchval("SELECT filter FROM segments WHERE app_id = $1 AND id = $2", app_id, segment_id)
    return parse_filter(stored) if stored is not None else None


async def create_segment(pool: asyncpg.Pool, app_id: UUID, admin_id: UUID | None, *, name: str,
                         f: Filter) -> Segment:
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            f"""INSERT INTO segments (app_id, name, filter, created_by) VALUES ($1, $2, $3::text::jsonb, $4)
                RETURNING {_COLUMNS}""",
            app_id, name, msgspec.json.encode(filter_to_json(f)).decode(), admin_id)
        segment = segment_out(row)
        await record(conn, "segment.created", app_id, _event_data(segment), admin_id=admin_id)
    return segment


async def update_segment(pool: asyncpg.Pool, app_id: UUID, admin_id: UUID | None, segment_id: UUID, *,
                         name: str | None = None, f: Filter | None = None) -> Segment | None:
    """Change the name and/or the filter (those given); None when the app has no such segment."""
    changes = sorted(k for k, v in (("name", name), ("filter", f)) if v is not None)
    if not changes:  # an empty PATCH changes nothing, so it records nothing
        return await get_segment(pool, app_id, segment_id)
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            f"""UPDATE segments SET name = COALESCE($3, name), filter = COALESCE($4::text::jsonb, filter),
                                    updated_at = now()
                WHERE app_id = $1 AND id = $2 RETURNING {_COLUMNS}""",
            app_id, segment_id, name, msgspec.json.encode(filter_to_json(f)).decode() if f is not None else None)
        if row is None:
            return None
        segment = segment_out(row)
        await record(conn, "segment.updated", app_id, _event_data(segment, changes=changes), admin_id=admin_id)
    return segment


async def delete_segment(pool: asyncpg.Pool, app_id: UUID, admin_id: UUID | None, segment_id: UUID) -> bool:
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(f"DELETE FROM segments WHERE app_id = $1 AND id = $2 RETURNING {_COLUMNS}",
                                  app_id, segment_id)
        if row is None:
            return False
        await record(conn, "segment.deleted", app_id, _event_data(segment_out(row)), admin_id=admin_id)
    return True
