"""SQL of the dashboard statistics: counts over conversations and messages of one app."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TypeAlias
from uuid import UUID

import asyncpg

from server.conversations import rows
from server.conversations.admin_schemas import DailyCount, WaitingConversation

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool
FIRST_RESPONSE_WINDOW_DAYS = 30  # the median covers conversations started in this many days
DAILY_DAYS = 14


async def counts(conn: Conn, app_id: UUID) -> tuple[int, int]:
    """(open, unassigned): unassigned counts conversations still waiting for someone (not closed)."""
    row = await conn.fetchrow(
        """SELECT count(*) FILTER (WHERE status = 'open') AS open,
                  count(*) FILTER (WHERE status <> 'closed' AND assignee_id IS NULL) AS unassigned
           FROM conversations WHERE app_id = $1""", app_id)
    return int(row["open"]), int(row["unassigned"])


async def waiting_longest(conn: Conn, app_id: UUID) -> WaitingConversation | None:
    """The open conversation whose user has waited longest: the last word is the user's, and the
    wait started with the first user message after the team's last reply."""
    row = await conn.fetchrow(
        """SELECT c.id, c.user_id, u.name,
                  (SELECT min(m.created_at) FROM messages m
                   WHERE m.conversation_id = c.id AND m.sender_kind = 'user' AND NOT m.is_note
                     AND m.seq > COALESCE((SELECT max(r.seq) FROM messages r WHERE r.conversation_id = c.id
                                            AND r.sender_kind <> 'user' AND NOT r.is_note), 0)) AS since
           FROM conversations c JOIN end_users u ON u.id = c.user_id
           WHERE c.app_id = $1 AND c.status = 'open' AND c.last_message_sender = 'user'
           ORDER BY since ASC NULLS LAST LIMIT 1""", app_id)
    if row is None or row["since"] is None:
        return None
    age = int((datetime.now(UTC) - row["since"]).total_seconds())
    return WaitingConversation(conversation_id=str(row["id"]), user_id=str(row["user_id"]), user_name=row["name"],
                               waiting_since=rows.iso(row["since"]) or "", age_seconds=max(age, 0))


async def replies_today(conn: Conn, app_id: UUID) -> int:
    """Agent replies (not notes) since midnight UTC."""
    n = await conn.fetchval(
        """SELECT count(*) FROM messages WHERE app_id = $1 AND sender_kind = 'admin' AND NOT is_note
           AND created_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'""", app_id)
    return int(n)


async def median_first_response(conn: Conn, app_id: UUID) -> float | None:
    value = await conn.fetchval(
        f"""SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM first_admin_reply_at - created_at))
            FROM conversations WHERE app_id = $1 AND first_admin_reply_at IS NOT NULL
              AND created_at > now() - interval '{FIRST_RESPONSE_WINDOW_DAYS} days'""", app_id)
    return round(float(value), 1) if value is not None else None


async def daily(conn: Conn, app_id: UUID) -> list[DailyCount]:
    found = await conn.fetch(
        f"""WITH days AS (
                SELECT generate_series(date_trunc('day', now() AT TIME ZONE 'UTC') - interval '{DAILY_DAYS - 1} days',
                                       date_trunc('day', now() AT TIME ZONE 'UTC'), interval '1 day') AS day)
            SELECT d.day,
                   (SELECT count(*) FROM conversations c WHERE c.app_id = $1
                      AND c.created_at >= d.day AT TIME ZONE 'UTC'
                      AND c.created_at < (d.day + interval '1 day') AT TIME ZONE 'UTC') AS conversations,
                   (SELECT count(*) FROM messages m WHERE m.app_id = $1 AND m.sender_kind = 'admin' AND NOT m.is_note
                      AND m.created_at >= d.day AT TIME ZONE 'UTC'
                      AND m.created_at < (d.day + interval '1 day') AT TIME ZONE 'UTC') AS replies
            FROM days d ORDER BY d.day""", app_id)
    return [DailyCount(day=r["day"].date().isoformat(), conversations=int(r["conversations"]),
                       replies=int(r["replies"])) for r in found]
