"""Plain SQL over broadcasts, broadcast_runs, broadcast_recipients and the stats tables, for the admin
routes. Every change records its domain event in its own transaction; the actor's writes (snapshot,
batches, statuses of a run) live with the actor."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, TypeAlias
from uuid import UUID

import asyncpg
import msgspec

from server.broadcasts.schemas import (
    RECIPIENT_STATES,
    Audience,
    Broadcast,
    BroadcastItem,
    Message,
    MinuteBucket,
    Recipient,
    Run,
    RunProgress,
    Schedule,
    Stats,
)
from server.errors import Conflict, NotFound
from server.events.record import record
from server.http.pagination import Cursor

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool
STAT_FIELDS = ("targeted", "sent", "delivered", "read", "replied", "clicked", "failed")
_SUMS = ", ".join(f"coalesce(sum(st.{f}), 0)::bigint AS total_{f}" for f in STAT_FIELDS)

# A broadcast with its totals over every run and its current (latest) run's progress.
_BROADCAST = f"""
SELECT b.id, b.app_id, b.name, b.status, b.message, b.audience, b.schedule, b.rate_per_s, b.next_run_at,
       b.created_by, b.created_at, b.updated_at, t.*,
       r.id AS run_id, r.status AS run_status, r.scheduled_for AS run_scheduled_for,
       r.snapshot_done AS run_snapshot_done, r.error AS run_error,
       coalesce(rs.targeted, 0) AS run_targeted, coalesce(rs.sent, 0) AS run_sent
FROM broadcasts b
LEFT JOIN LATERAL (SELECT {_SUMS} FROM broadcast_stats st WHERE st.broadcast_id = b.id) t ON true
LEFT JOIN LATERAL (SELECT * FROM broadcast_runs WHERE broadcast_id = b.id
                   ORDER BY scheduled_for DESC LIMIT 1) r ON true
LEFT JOIN broadcast_stats rs ON rs.run_id = r.id
"""


def _totals(r: asyncpg.Record) -> Stats:
    return Stats(**{f: r[f"total_{f}"] or 0 for f in STAT_FIELDS})


def _progress(r: asyncpg.Record) -> RunProgress | None:
    if r["run_id"] is None:
        return None
    return RunProgress(id=str(r["run_id"]), status=r["run_status"], scheduled_for=r["run_scheduled_for"],
                       targeted=r["run_targeted"], sent=r["run_sent"], snapshot_done=r["run_snapshot_done"],
                       error=r["run_error"])


def schedule_of(stored: Any) -> Schedule:
    return msgspec.convert(stored, Schedule)  # type: ignore[arg-type]  # a union is a valid convert target


def broadcast_out(r: asyncpg.Record) -> Broadcast:
    return Broadcast(
        id=str(r["id"]), name=r["name"], status=r["status"], message=msgspec.convert(r["message"], Message),
        audience=msgspec.convert(r["audience"], Audience), schedule=schedule_of(r["schedule"]),
        rate_per_s=r["rate_per_s"], next_run_at=r["next_run_at"],
        created_by=str(r["created_by"]) if r["created_by"] else None, created_at=r["created_at"],
        updated_at=r["updated_at"], stats=_totals(r), current_run=_progress(r))


def item_out(r: asyncpg.Record) -> BroadcastItem:
    return BroadcastItem(id=str(r["id"]), name=r["name"], status=r["status"], schedule_kind=r["schedule"]["kind"],
                         next_run_at=r["next_run_at"], created_at=r["created_at"], updated_at=r["updated_at"],
                         stats=_totals(r), current_run=_progress(r))


def event_data(b: Broadcast) -> dict[str, Any]:
    return {"broadcast": msgspec.to_builtins(b)}


async def get(conn: Conn, app_id: UUID, broadcast_id: UUID) -> Broadcast | None:
    row = await conn.fetchrow(_BROADCAST + " WHERE b.app_id = $1 AND b.id = $2", app_id, broadcast_id)
    return broadcast_out(row) if row else None


async def must_get(conn: Conn, app_id: UUID, broadcast_id: UUID) -> Broadcast:
    found = await get(conn, app_id, broadcast_id)
    if found is None:
        raise NotFound("no such broadcast", code="broadcast_not_found")
    return found


async def list_page(conn: Conn, app_id: UUID, *, status: str | None, cursor: Cursor | None,
                    limit: int) -> tuple[list[BroadcastItem], Cursor | None]:
    rows = await conn.fetch(
        _BROADCAST + """ WHERE b.app_id = $1 AND ($2::text IS NULL OR b.status = $2)
                          AND ($3::timestamptz IS NULL OR (b.created_at, b.id) < ($3, $4::uuid))
                         ORDER BY b.created_at DESC, b.id DESC LIMIT $5""",
        app_id, status, cursor.updated_at if cursor else None, cursor.id if cursor else None, limit + 1)
    page = rows[:limit]
    more = len(rows) > limit and page
    return [item_out(r) for r in page], Cursor(page[-1]["created_at"], page[-1]["id"]) if more else None


# -- changes (each in one transaction with its event) -----------------------------------------------

async def create(pool: asyncpg.Pool, app_id: UUID, admin_id: UUID | None, *, name: str, message: Message,
                 audience: Audience, schedule: Schedule, rate_per_s: int) -> Broadcast:
    async with pool.acquire() as conn, conn.transaction():
        broadcast_id = await conn.fetchval(
            """INSERT INTO broadcasts (app_id, name, message, audience, schedule, rate_per_s, created_by)
               VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id""",
            app_id, name, msgspec.to_builtins(message), msgspec.to_builtins(audience),
            msgspec.to_builtins(schedule), rate_per_s, admin_id)
        created = await must_get(conn, app_id, broadcast_id)
        await record(conn, "broadcast.created", app_id, event_data(created), admin_id=admin_id)
    return created


async def locked(conn: asyncpg.Connection, app_id: UUID, broadcast_id: UUID) -> asyncpg.Record:
    """The broadcast's row, locked for the rest of the caller's transaction (404 if not in the workspace)."""
    row = await conn.fetchrow("SELECT * FROM broadcasts WHERE app_id = $1 AND id = $2 FOR UPDATE",
                              app_id, broadcast_id)
    if row is None:
        raise NotFound("no such broadcast", code="broadcast_not_found")
    return row


def _draft_only(row: asyncpg.Record, action: str) -> None:
    if row["status"] != "draft":
        raise Conflict(f"only a draft can be {action}; this broadcast is {row['status']}",
                       {"status": row["status"]}, code="broadcast_not_draft")


async def update(pool: asyncpg.Pool, app_id: UUID, admin_id: UUID | None, broadcast_id: UUID,
                 changes: dict[str, Any]) -> Broadcast:
    """changes: name, message, audience, schedule, rate_per_s (validated). A draft only (409)."""
    async with pool.acquire() as conn, conn.transaction():
        _draft_only(await locked(conn, app_id, broadcast_id), "edited")
        values = {k: msgspec.to_builtins(v) for k, v in changes.items()}
        await conn.execute(
            """UPDATE broadcasts SET name = CASE WHEN $3 THEN $4 ELSE name END,
                   message = CASE WHEN $5 THEN $6::jsonb ELSE message END,
                   audience = CASE WHEN $7 THEN $8::jsonb ELSE audience END,
                   schedule = CASE WHEN $9 THEN $10::jsonb ELSE schedule END,
                   rate_per_s = CASE WHEN $11 THEN $12 ELSE rate_per_s END, updated_at = now()
               WHERE app_id = $1 AND id = $2""",
            app_id, broadcast_id, "name" in values, values.get("name"), "message" in values, values.get("message"),
            "audience" in values, values.get("audience"), "schedule" in values, values.get("schedule"),
            "rate_per_s" in values, values.get("rate_per_s"))
        updated = await must_get(conn, app_id, broadcast_id)
        await record(conn, "broadcast.updated", app_id, {**event_data(updated), "changes": sorted(changes)},
                     admin_id=admin_id)
    return updated


async def delete(pool: asyncpg.Pool, app_id: UUID, admin_id: UUID | None, broadcast_id: UUID) -> None:
    async with pool.acquire() as conn, conn.transaction():
        _draft_only(await locked(conn, app_id, broadcast_id), "deleted")
        gone = await must_get(conn, app_id, broadcast_id)
        await conn.execute("DELETE FROM broadcasts WHERE app_id = $1 AND id = $2", app_id, broadcast_id)
        await record(conn, "broadcast.deleted", app_id, event_data(gone), admin_id=admin_id)


async def lock_draft(conn: asyncpg.Connection, app_id: UUID, broadcast_id: UUID, action: str) -> asyncpg.Record:
    row = await locked(conn, app_id, broadcast_id)
    _draft_only(row, action)
    return row


async def mark_scheduled(conn: asyncpg.Connection, app_id: UUID, admin_id: UUID | None, broadcast_id: UUID,
                         next_run_at: datetime) -> Broadcast:
    """draft -> scheduled (the caller holds the row's lock, from lock_draft)."""
    await conn.execute("""UPDATE broadcasts SET status = 'scheduled', next_run_at = $3, updated_at = now()
                          WHERE app_id = $1 AND id = $2""", app_id, broadcast_id, next_run_at)
    scheduled = await must_get(conn, app_id, broadcast_id)
    await record(conn, "broadcast.scheduled", app_id, event_data(scheduled), admin_id=admin_id)
    return scheduled


async def mark_sending_now(conn: asyncpg.Connection, app_id: UUID, admin_id: UUID | None, broadcast_id: UUID,
                           next_run_at: datetime | None) -> tuple[Broadcast, UUID]:
    """draft -> sending with a run for now (the caller holds the row's lock). A recurring broadcast
    keeps its next occurrence."""
    await conn.execute("""UPDATE broadcasts SET status = 'sending', next_run_at = $3, updated_at = now()
                          WHERE app_id = $1 AND id = $2""", app_id, broadcast_id, next_run_at)
    run_id = await insert_run(conn, app_id, broadcast_id, await conn.fetchval("SELECT now()"))
    assert run_id is not None  # a draft has no run yet
    sending = await must_get(conn, app_id, broadcast_id)
    await record(conn, "broadcast.status_changed", app_id, {**event_data(sending), "previous_status": "draft"},
                 admin_id=admin_id)
    return sending, run_id


async def insert_run(conn: asyncpg.Connection, app_id: UUID, broadcast_id: UUID,
                     scheduled_for: datetime) -> UUID | None:
    """The run of one occurrence; None when it already exists (another replica made it)."""
    run_id: UUID | None = await conn.fetchval(
        """INSERT INTO broadcast_runs (broadcast_id, app_id, scheduled_for) VALUES ($1, $2, $3)
           ON CONFLICT (broadcast_id, scheduled_for) DO NOTHING RETURNING id""",
        broadcast_id, app_id, scheduled_for)
    return run_id


async def duplicate(pool: asyncpg.Pool, app_id: UUID, admin_id: UUID | None, broadcast_id: UUID) -> Broadcast:
    async with pool.acquire() as conn, conn.transaction():
        source = await must_get(conn, app_id, broadcast_id)
        new_id = await conn.fetchval(
            """INSERT INTO broadcasts (app_id, name, message, audience, schedule, rate_per_s, created_by)
               SELECT app_id, left(name || ' (copy)', 200), message, audience, schedule, rate_per_s, $3
               FROM broadcasts WHERE app_id = $1 AND id = $2 RETURNING id""", app_id, broadcast_id, admin_id)
        copy = await must_get(conn, app_id, new_id)
        await record(conn, "broadcast.created", app_id, {**event_data(copy), "duplicated_from": source.id},
                     admin_id=admin_id)
    return copy


# -- runs, stats, recipients ------------------------------------------------------------------------

def _stats(r: asyncpg.Record) -> Stats:
    return Stats(**{f: r[f] or 0 for f in STAT_FIELDS})


async def list_runs(conn: Conn, broadcast_id: UUID, *, cursor: Cursor | None,
                    limit: int) -> tuple[list[Run], Cursor | None]:
    rows = await conn.fetch(
        """SELECT r.*, s.targeted, s.sent, s.delivered, s.read, s.replied, s.clicked, s.failed
           FROM broadcast_runs r LEFT JOIN broadcast_stats s ON s.run_id = r.id
           WHERE r.broadcast_id = $1 AND ($2::timestamptz IS NULL OR (r.scheduled_for, r.id) < ($2, $3::uuid))
           ORDER BY r.scheduled_for DESC, r.id DESC LIMIT $4""",
        broadcast_id, cursor.updated_at if cursor else None, cursor.id if cursor else None, limit + 1)
    page = rows[:limit]
    runs = [Run(id=str(r["id"]), scheduled_for=r["scheduled_for"], status=r["status"],
                snapshot_done=r["snapshot_done"], sent_through=r["sent_through"], error=r["error"],
                created_at=r["created_at"], started_at=r["started_at"], finished_at=r["finished_at"],
                stats=_stats(r)) for r in page]
    more = len(rows) > limit and page
    return runs, Cursor(page[-1]["scheduled_for"], page[-1]["id"]) if more else None


async def run_of(conn: Conn, broadcast_id: UUID, run_id: UUID | None) -> UUID | None:
    """The run named (404 when it is not this broadcast's), or the latest run (None before the first)."""
    if run_id is not None:
        if not await conn.fetchval("SELECT 1 FROM broadcast_runs WHERE broadcast_id = $1 AND id = $2",
                                   broadcast_id, run_id):
            raise NotFound("no such run of this broadcast", code="run_not_found")
        return run_id
    latest: UUID | None = await conn.fetchval(
        "SELECT id FROM broadcast_runs WHERE broadcast_id = $1 ORDER BY scheduled_for DESC LIMIT 1", broadcast_id)
    return latest


async def stats(conn: Conn, broadcast_id: UUID, run_id: UUID | None) -> tuple[Stats, list[MinuteBucket]]:
    totals = await conn.fetchrow(
        f"""SELECT {_SUMS} FROM broadcast_stats st
            WHERE st.broadcast_id = $1 AND ($2::uuid IS NULL OR st.run_id = $2)""", broadcast_id, run_id)
    minutes = await conn.fetch(
        """SELECT m.minute, sum(m.sent)::bigint AS sent, sum(m.delivered)::bigint AS delivered,
                  sum(m.read)::bigint AS read, sum(m.replied)::bigint AS replied,
                  sum(m.clicked)::bigint AS clicked, sum(m.failed)::bigint AS failed
           FROM broadcast_stats_minutes m JOIN broadcast_runs r ON r.id = m.run_id
           WHERE r.broadcast_id = $1 AND ($2::uuid IS NULL OR m.run_id = $2)
           GROUP BY m.minute ORDER BY m.minute DESC LIMIT 1440""", broadcast_id, run_id)
    buckets = [MinuteBucket(minute=m["minute"], sent=m["sent"], delivered=m["delivered"], read=m["read"],
                            replied=m["replied"], clicked=m["clicked"], failed=m["failed"]) for m in reversed(minutes)]
    return _totals(totals), buckets


_RECIPIENT = """SELECT r.run_id, r.ord, r.user_id, r.state, r.sent_at, r.delivered_at, r.read_at, r.clicked_at,
                       r.replied_at, r.conversation_id, r.failed_reason, u.external_id, u.name, u.email
                FROM broadcast_recipients r LEFT JOIN end_users u ON u.id = r.user_id"""


def recipient_out(r: asyncpg.Record) -> Recipient:
    state = r["state"]
    return Recipient(
        delivery_id=f"{r['run_id']}.{r['ord']}", run_id=str(r["run_id"]), ord=r["ord"], user_id=str(r["user_id"]),
        external_id=r["external_id"], name=r["name"], email=r["email"],
        state=RECIPIENT_STATES[state] if 0 <= state < len(RECIPIENT_STATES) else "failed",
        sent_at=r["sent_at"], delivered_at=r["delivered_at"], read_at=r["read_at"], clicked_at=r["clicked_at"],
        replied_at=r["replied_at"], conversation_id=str(r["conversation_id"]) if r["conversation_id"] else None,
        failed_reason=r["failed_reason"])


async def recipients_page(conn: Conn, run_id: UUID, *, state: int | None, after: int,
                          limit: int) -> tuple[list[Recipient], int | None]:
    rows = await conn.fetch(
        _RECIPIENT + """ WHERE r.run_id = $1 AND r.ord > $2 AND ($3::smallint IS NULL OR r.state = $3)
                         ORDER BY r.ord LIMIT $4""", run_id, after, state, limit + 1)
    page = rows[:limit]
    return [recipient_out(r) for r in page], (page[-1]["ord"] if len(rows) > limit and page else None)


async def all_recipients(pool: asyncpg.Pool, broadcast_id: UUID, run_id: UUID | None, state: int | None,
                         page_size: int = 2000) -> AsyncIterator[list[Recipient]]:
    """Every recipient of the broadcast's runs (oldest run first) or of one run, in keyset pages."""
    runs = [r["id"] for r in await pool.fetch(
        """SELECT id FROM broadcast_runs WHERE broadcast_id = $1 AND ($2::uuid IS NULL OR id = $2)
           ORDER BY scheduled_for, id""", broadcast_id, run_id)]
    for run in runs:
        after = 0
        while True:
            page, next_after = await recipients_page(pool, run, state=state, after=after, limit=page_size)
            if page:
                yield page
            if next_after is None:
                break
            after = next_after


async def segment_exists(conn: Conn, app_id: UUID, segment_id: UUID) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM segments WHERE app_id = $1 AND id = $2", app_id, segment_id))


async def teammate_exists(conn: Conn, app_id: UUID, admin_id: UUID) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM admins WHERE app_id = $1 AND id = $2 AND disabled_at IS NULL",
                                    app_id, admin_id))
