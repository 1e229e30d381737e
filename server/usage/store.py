"""SQL of usage: a workspace's month from usage_daily, usage_active_users and the admins."""

from __future__ import annotations

import calendar
from datetime import date, timedelta
from uuid import UUID

import asyncpg

from server.usage.consumer import SENDER_KINDS
from server.usage.schemas import Messages, Seats, Series, Usage

# Members at the end of each UTC day: joined (accepted their invitation, or created with a
# password) by then and not removed by then. Computed from the rows themselves: teams are small.
_SEATS = """
WITH m AS (
    SELECT coalesce((SELECT max(i.accepted_at) FROM admin_invitations i WHERE i.admin_id = a.id), a.created_at)
               AS joined, a.disabled_at
    FROM admins a WHERE a.app_id = $1 AND a.password_hash IS NOT NULL
), d AS (
    SELECT day::date AS day, ((day::date + 1)::timestamp AT TIME ZONE 'UTC') AS day_end
    FROM generate_series($2::date, $3::date, interval '1 day') AS day
)
SELECT d.day, (SELECT count(*) FROM m WHERE m.joined < d.day_end
                 AND (m.disabled_at IS NULL OR m.disabled_at >= d.day_end)) AS n
FROM d ORDER BY d.day
"""
_PENDING = """
SELECT count(*) FROM admins a WHERE a.app_id = $1 AND a.password_hash IS NULL AND a.disabled_at IS NULL
"""


def month_days(month: date) -> list[date]:
    n = calendar.monthrange(month.year, month.month)[1]
    return [month + timedelta(days=i) for i in range(n)]


def _series(days: list[date], counts: dict[date, int]) -> Series:
    daily = [counts.get(d, 0) for d in days]
    return Series(total=sum(daily), daily=daily)


async def month_usage(conn: asyncpg.Pool | asyncpg.Connection, app_id: UUID, month: date, today: date) -> Usage:
    days = month_days(month)
    by_metric: dict[str, dict[date, int]] = {}
    for r in await conn.fetch("SELECT day, metric, count FROM usage_daily WHERE app_id = $1 AND day BETWEEN $2 AND $3",
                              app_id, days[0], days[-1]):
        by_metric.setdefault(r["metric"], {})[r["day"]] = r["count"]
    active = {r["first_day"]: r["n"] for r in await conn.fetch(
        "SELECT first_day, count(*) AS n FROM usage_active_users WHERE app_id = $1 AND month = $2 GROUP BY 1",
        app_id, month)}
    seats: list[int | None] = [None] * len(days)
    if days[0] <= today:
        for r in await conn.fetch(_SEATS, app_id, days[0], min(days[-1], today)):
            seats[(r["day"] - days[0]).days] = r["n"]
    known = [n for n in seats if n is not None]
    by_sender = {kind: _series(days, by_metric.get(f"messages.{kind}", {})) for kind in SENDER_KINDS}
    all_daily = [sum(s.daily[i] for s in by_sender.values()) for i in range(len(days))]
    return Usage(
        month=month.strftime("%Y-%m"), timezone="UTC", days=[d.isoformat() for d in days],
        seats=Seats(total=known[-1] if known else 0, pending_invites=await conn.fetchval(_PENDING, app_id),
                    daily=seats),
        active_users=_series(days, active),
        conversations=_series(days, by_metric.get("conversations", {})),
        messages=Messages(total=sum(all_daily), daily=all_daily, by_sender=by_sender),
        broadcast_recipients=_series(days, by_metric.get("broadcast_recipients", {})),
        workflow_runs=_series(days, by_metric.get("workflow_runs", {})),
        webhook_deliveries=_series(days, by_metric.get("webhook_deliveries", {})),
        api_calls=_series(days, by_metric.get("api_calls.secret", {})))
