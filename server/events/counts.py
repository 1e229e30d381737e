"""The first consumer of domain events: how many of each type a workspace had each day (UTC).

Kept incrementally: each batch adds its counts in the transaction that moves the group's
checkpoint, so the table always equals a recount of the events the group has applied. A range
consumer (workers/runtime/consumer_groups.py): one statement counts a batch's rows of
`event_rows` where they lie, a row of messages by its length, never an event at a time.
"""

from __future__ import annotations

import asyncpg

from server.events.store import RANGE_ROWS, Position

_ADD = f"""
INSERT INTO event_counts (app_id, day, type, count)
SELECT app_id, (occurred_at AT TIME ZONE 'UTC')::date, type, sum(last - first + 1)
FROM {RANGE_ROWS} w
GROUP BY 1, 2, 3
ORDER BY 1, 2, 3  -- two transactions adding to the same rows lock them in the same order
ON CONFLICT (app_id, day, type) DO UPDATE SET count = event_counts.count + EXCLUDED.count
"""


class EventCounts:
    name = "event-counts"
    # Counts may trail by a second: one transaction a second rather than one per relay cycle.
    interval_s = 1.0

    async def apply_range(self, conn: asyncpg.Connection, after: Position, upto: Position) -> None:
        await conn.execute(_ADD, str(after.tx), after.n, str(upto.tx), upto.n)
