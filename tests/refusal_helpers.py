"""Helpers for the refusal matrices (tests/test_admin_rbac.py, tests/test_admin_socket_rbac.py).

Everything a refused call could have stored: every Postgres table and every Redis stream.

`await stored_state(db, redis_url)` before and after a batch of refusals must compare equal: no row
of any table (conversations, messages, tags, notes, assignees, receipts, admins, keys, ...) changed,
and no command or domain event was appended to a Redis stream (so no actor was asked to do it).
"""

from __future__ import annotations

from typing import Any

import asyncpg
import redis.asyncio as aioredis

from server.auth.roles import ALL_PERMISSIONS
from server.events.catalog import PAYLOADS as EVENT_PAYLOADS
from server.events.catalog import STREAM as EVENT_STREAM


async def add_restricted_roles(db: asyncpg.Pool) -> None:
    """Roles `all-but:<permission>` (every permission except that one) and `nothing`: an admin moved to
    one of them (UPDATE admins SET role = ...) lacks exactly that permission on the next request or
    event. Insert them before the server starts: it reads the roles once."""
    await db.execute("INSERT INTO roles (name, rank, permissions) VALUES ('nothing', 5, '{}')")
    for permission in sorted(ALL_PERMISSIONS):
        await db.execute("INSERT INTO roles (name, rank, permissions) VALUES ($1, 5, $2)",
                         f"all-but:{permission}", sorted(ALL_PERMISSIONS - {permission}))


# Moved by background workers from what earlier calls recorded (domain_events, which is compared,
# is their source): a refused call cannot change them except through domain_events.
_DERIVED_TABLES = ("schema_migrations", "event_relay", "event_consumers", "event_counts", "event_retention",
                   "usage_daily", "usage_active_users", "usage_flushes")
_DERIVED_STREAMS = (EVENT_STREAM, EVENT_PAYLOADS)
# Columns written in the background (API keys' last use, admins' last activity: flushed every few
# seconds, at most once a minute each): the flush of earlier calls may land meanwhile, and a refused
# admin or key was still active.
_DERIVED_COLUMNS = {"api_keys": ("last_used_at", "last_used_ip"), "admins": ("last_active_at",)}


async def table_rows(db: asyncpg.Pool) -> dict[str, list[str]]:
    """Each public table's rows as sorted JSON text (new tables are covered without listing them)."""
    names = await db.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                           "AND tablename <> ALL($1::text[]) ORDER BY tablename", list(_DERIVED_TABLES))
    out: dict[str, list[str]] = {}
    for row in names:
        name = row["tablename"]
        drop = "".join(f" - '{c}'" for c in _DERIVED_COLUMNS.get(name, ()))
        rows = await db.fetch(f'SELECT (to_jsonb(t){drop})::text AS j FROM "{name}" t')
        out[name] = sorted(r["j"] for r in rows)
    return out


async def stream_heads(redis_url: str) -> dict[str, str]:
    """The last id ever added to each Redis stream (trimming does not move it; an XADD does)."""
    r = aioredis.from_url(redis_url, decode_responses=True)
    try:
        heads: dict[str, str] = {}
        async for key in r.scan_iter(_type="stream"):
            if key in _DERIVED_STREAMS:
                continue
            info = await r.xinfo_stream(key)
            heads[key] = str(info["last-generated-id"])
        return heads
    finally:
        await r.aclose()


async def stored_state(db: asyncpg.Pool, redis_url: str) -> dict[str, Any]:
    return {"tables": await table_rows(db), "streams": await stream_heads(redis_url)}


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What changed, for a readable assertion message."""
    changed: dict[str, Any] = {}
    for part in ("tables", "streams"):
        for key in sorted(set(before[part]) | set(after[part])):
            if before[part].get(key) != after[part].get(key):
                changed[f"{part}.{key}"] = {"before": before[part].get(key), "after": after[part].get(key)}
    return changed
