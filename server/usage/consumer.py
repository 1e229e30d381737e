"""The `usage` consumer group: daily usage counts and the month's active users from domain events.

Runs inside the transaction that moves the group's checkpoint (workers/runtime/consumer_groups.py):
a batch's counts and the progress past it commit together, so a redelivered batch adds nothing and
`usage_daily` always equals a recount of the rows the events describe.

  conversation.created                  conversations
  message.created                       messages.<user|admin|bot|system>, or messages.note for a
                                        private note; a user's message marks its sender active
  broadcast.messages_sent               broadcast_recipients: the batch's `count` (one event per batch)
  workflow.run_started                  workflow_runs

A range consumer: one statement reads a batch's events where they lie and adds them up, so the
worker process handles no event of it (a message was about 1.3 µs of Python there, decoding and
counting). A message's sender is what the commit recorded with its event (migration 044); for an
event recorded before that, its message's (or nothing, the message gone with its conversation);
for one recorded with a copy of its message (before migration 042), the copy's.

Workflows record no events yet: their series stays at zero until that type exists, and is counted
from the day it does with no change here.
"""

from __future__ import annotations

import asyncpg

from server.events.store import RANGE_ROWS, Position

SENDER_KINDS = ("user", "admin", "note", "bot", "system")
# The metrics this group counts (webhook deliveries and API calls are counted elsewhere).
COUNTED = {"conversation.created": "conversations", "workflow.run_started": "workflow_runs"}
TYPES = ("message.created", "broadcast.messages_sent", *COUNTED)

# A batch's messages are first tallied by workspace, day, sender kind, note flag and sender (a
# hash table of a few hundred keys for thousands of messages; the day is a row's, computed once a
# row): every expression after that (the metric's name, the month) is computed once a key, not once
# a message. A row of messages (migration
# 045) is read as its arrays; a message a row (recorded before, or by a replica still running the
# code before it) as the view reads it. As the worker process counted them: in a row of messages, a
# message whose sender or note flag the commit did not record (it always does) counts for nothing.
_IN = "[w.first - w.seq + 1 : w.last - w.seq + 1]"  # a row's events in the window
_APPLY = f"""
WITH w AS (
    SELECT w.*, (w.occurred_at AT TIME ZONE 'UTC')::date AS day FROM {RANGE_ROWS} w WHERE w.type = ANY($5::text[])
),
msg AS (  -- (kind, note, the user it makes active if kind is 'user') a message
    SELECT w.app_id, w.day, x.kind, x.note, x.usr AS sender
    FROM w CROSS JOIN LATERAL unnest(w.sender_kinds{_IN}, w.notes{_IN}, w.user_ids{_IN}) AS x(kind, note, usr)
    WHERE w.message_ids IS NOT NULL AND x.kind IS NOT NULL AND x.note IS NOT NULL
    UNION ALL
    SELECT w.app_id, w.day, s.kind, s.note, s.sender
    FROM w CROSS JOIN LATERAL (
        SELECT w.sender_kind AS kind, w.is_note AS note, w.user_id AS sender
        WHERE w.message_id IS NOT NULL AND w.sender_kind IS NOT NULL AND w.is_note IS NOT NULL
        UNION ALL
        SELECT m.sender_kind, m.is_note, w.user_id FROM messages m
        WHERE w.message_id IS NOT NULL AND (w.sender_kind IS NULL OR w.is_note IS NULL) AND m.id = w.message_id
        UNION ALL
        SELECT coalesce(w.data->'message'->>'sender_kind', 'user'),
               coalesce((w.data->'message'->>'is_note')::boolean, false),
               (w.data->'message'->>'sender_id')::uuid
        WHERE w.message_id IS NULL AND json_typeof(w.data->'message') = 'object'
    ) s
    WHERE w.type = 'message.created' AND w.message_ids IS NULL
),
tally AS (SELECT app_id, day, kind, note, sender, count(*) AS n FROM msg GROUP BY 1, 2, 3, 4, 5),
counts AS (
    SELECT app_id, day, metric, sum(n)::bigint AS n FROM (
        SELECT app_id, day, CASE WHEN note THEN 'messages.note' ELSE 'messages.' || kind END AS metric, n FROM tally
        UNION ALL
        SELECT app_id, day, CASE type WHEN 'conversation.created' THEN 'conversations' ELSE 'workflow_runs' END, 1
        FROM w WHERE type IN ('conversation.created', 'workflow.run_started')
        UNION ALL
        SELECT app_id, day, 'broadcast_recipients', coalesce((data->>'count')::bigint, 0)
        FROM w WHERE type = 'broadcast.messages_sent'
    ) x GROUP BY 1, 2, 3
),
added AS (
    INSERT INTO usage_daily (app_id, day, metric, count)
    SELECT app_id, day, metric, n FROM counts
    ORDER BY 1, 2, 3  -- two transactions adding to the same rows lock them in the same order
    ON CONFLICT (app_id, day, metric) DO UPDATE SET count = usage_daily.count + EXCLUDED.count
    RETURNING 1
),
active AS (
    SELECT app_id, date_trunc('month', day)::date AS month, sender, min(day) AS first_day
    FROM tally WHERE kind = 'user' AND sender IS NOT NULL GROUP BY 1, 2, 3
),
seen AS (  -- most senders are stored already: a probe each, not an insert that conflicts
    INSERT INTO usage_active_users (app_id, month, user_id, first_day)
    SELECT a.app_id, a.month, a.sender, a.first_day FROM active a
    WHERE NOT EXISTS (SELECT 1 FROM usage_active_users u
                      WHERE u.app_id = a.app_id AND u.month = a.month AND u.user_id = a.sender)
    ORDER BY 1, 2, 3
    ON CONFLICT DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM added) AS added, (SELECT count(*) FROM seen) AS seen
"""


class UsageCounts:
    name = "usage"
    # Daily counts may trail by a second: one transaction a second, not one per relay cycle.
    interval_s = 1.0

    async def apply_range(self, conn: asyncpg.Connection, after: Position, upto: Position) -> None:
        await conn.execute(_APPLY, str(after.tx), after.n, str(upto.tx), upto.n, list(TYPES))
