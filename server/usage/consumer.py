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

from server.events.store import RANGE_EVENTS, Position

SENDER_KINDS = ("user", "admin", "note", "bot", "system")
# The metrics this group counts (webhook deliveries and API calls are counted elsewhere).
COUNTED = {"conversation.created": "conversations", "workflow.run_started": "workflow_runs"}
TYPES = ("message.created", "broadcast.messages_sent", *COUNTED)

_APPLY = f"""
WITH ev AS (
    SELECT app_id, (occurred_at AT TIME ZONE 'UTC')::date AS day, type, user_id, data, message_id,
           sender_kind, is_note
    FROM domain_events WHERE {RANGE_EVENTS} AND type = ANY($5::text[])
),
msg AS (  -- each message's sender: (kind, note, the user it makes active if kind is 'user')
    SELECT ev.app_id, ev.day, s.kind, s.note, s.sender
    FROM ev CROSS JOIN LATERAL (
        SELECT ev.sender_kind AS kind, ev.is_note AS note, ev.user_id AS sender
        WHERE ev.message_id IS NOT NULL AND ev.sender_kind IS NOT NULL AND ev.is_note IS NOT NULL
        UNION ALL
        SELECT m.sender_kind, m.is_note, ev.user_id FROM messages m
        WHERE ev.message_id IS NOT NULL AND (ev.sender_kind IS NULL OR ev.is_note IS NULL) AND m.id = ev.message_id
        UNION ALL
        SELECT coalesce(ev.data->'message'->>'sender_kind', 'user'),
               coalesce((ev.data->'message'->>'is_note')::boolean, false),
               (ev.data->'message'->>'sender_id')::uuid
        WHERE ev.message_id IS NULL AND json_typeof(ev.data->'message') = 'object'
    ) s
    WHERE ev.type = 'message.created'
),
counts AS (
    SELECT app_id, day, metric, sum(n)::bigint AS n FROM (
        SELECT app_id, day, CASE WHEN note THEN 'messages.note' ELSE 'messages.' || kind END AS metric, 1 AS n
        FROM msg
        UNION ALL
        SELECT app_id, day, CASE type WHEN 'conversation.created' THEN 'conversations' ELSE 'workflow_runs' END, 1
        FROM ev WHERE type IN ('conversation.created', 'workflow.run_started')
        UNION ALL
        SELECT app_id, day, 'broadcast_recipients', coalesce((data->>'count')::bigint, 0)
        FROM ev WHERE type = 'broadcast.messages_sent'
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
    FROM msg WHERE kind = 'user' AND sender IS NOT NULL GROUP BY 1, 2, 3
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
