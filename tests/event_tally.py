"""An event-at-a-time consumer for the runtime's tests: counts events by workspace, day and type
into `event_counts`, as the event-counts group does (that one in SQL, by range), so a recount
checks it the same way."""

from __future__ import annotations

import asyncpg

from server.events.catalog import DomainEvent


class EventTally:
    name = "event-counts"
    interval_s = 1.0
    by_reference = True

    async def apply(self, conn: asyncpg.Connection, events: list[DomainEvent]) -> None:
        counts: dict[tuple[str, str, str], int] = {}
        for e in events:
            key = (e.app_id, e.occurred_at[:10], e.type)
            counts[key] = counts.get(key, 0) + 1
        await conn.execute(
            """INSERT INTO event_counts (app_id, day, type, count)
               SELECT a, d::date, t, n FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[]) AS x(a, d, t, n)
               ON CONFLICT (app_id, day, type) DO UPDATE SET count = event_counts.count + EXCLUDED.count""",
            [k[0] for k in counts], [k[1] for k in counts], [k[2] for k in counts], list(counts.values()))
