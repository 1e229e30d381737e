"""The `usage` consumer group: daily usage counts and the month's active users from domain events.

Runs inside the transaction that moves the group's checkpoint (workers/runtime/consumer_groups.py):
a batch's counts and the progress past it commit together, so a redelivered batch adds nothing and
`usage_daily` always equals a recount of the rows the events describe.

  conversation.created                  conversations
  message.created                       messages.<user|admin|bot|system>, or messages.note for a
                                        private note; a user's message marks its sender active
  broadcast.messages_sent               broadcast_recipients: the batch's `count` (one event per batch)
  workflow.run_started                  workflow_runs

Workflows record no events yet: their series stays at zero until that type exists, and is counted
from the day it does with no change here.
"""

from __future__ import annotations

import asyncpg
import msgspec

from server.events import store
from server.events.catalog import DomainEvent

SENDER_KINDS = ("user", "admin", "note", "bot", "system")
# The metrics this group counts (webhook deliveries and API calls are counted elsewhere).
COUNTED = {"conversation.created": "conversations", "workflow.run_started": "workflow_runs"}


class _Message(msgspec.Struct):
    sender_kind: str = "user"
    sender_id: str | None = None
    is_note: bool = False


class _MessageData(msgspec.Struct):
    message: _Message | None  # None: the message was deleted (with its conversation) before this read


class _BatchData(msgspec.Struct):
    count: int = 0


_decode_message = msgspec.json.Decoder(_MessageData).decode
_decode_batch = msgspec.json.Decoder(_BatchData).decode

_ADD = """
INSERT INTO usage_daily (app_id, day, metric, count)
SELECT a, d::date, m, n FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[]) AS x(a, d, m, n)
ON CONFLICT (app_id, day, metric) DO UPDATE SET count = usage_daily.count + EXCLUDED.count
"""
_SEEN = """
INSERT INTO usage_active_users (app_id, month, user_id, first_day)
SELECT a, date_trunc('month', d::date)::date, u, d::date FROM unnest($1::uuid[], $2::text[], $3::uuid[]) AS x(a, d, u)
ORDER BY 1, 2, 3
ON CONFLICT DO NOTHING
"""


def message_metric(kind: str, is_note: bool) -> str:
    return "messages.note" if is_note else f"messages.{kind}"


# Active users this replica knows are stored (at most this many; forgotten all at once beyond).
KNOWN_ACTIVE_MAX = 200_000


class UsageCounts:
    name = "usage"
    # Daily counts may trail by a second: one transaction a second, not one per relay cycle.
    interval_s = 1.0
    by_reference = True

    def __init__(self) -> None:
        # (app, month, user) rows of usage_active_users certainly committed: a user's every message
        # would otherwise insert (and conflict on) the same row again.
        self._known: set[tuple[str, str, str]] = set()
        self._pending: list[tuple[str, str, str]] = []

    def forget(self) -> None:
        self._known.clear()
        self._pending = []

    def committed(self, events: list[DomainEvent]) -> None:
        if len(self._known) + len(self._pending) > KNOWN_ACTIVE_MAX:
            self._known.clear()
        self._known.update(self._pending)
        self._pending = []

    async def apply(self, conn: asyncpg.Connection, events: list[DomainEvent]) -> None:
        counts: dict[tuple[str, str, str], int] = {}
        seen: dict[tuple[str, str, str], str] = {}  # (app, month, user) -> its first day in this batch
        # Messages named by reference, tallied by workspace, day, user and sender first (a few
        # dozen keys a batch of thousands).
        tally: dict[tuple[str, str, str | None, tuple[str | None, bool]], int] = {}
        for e in events:
            n = 1
            if e.type == "message.created":
                sender = store.referenced_sender(e)
                if sender is not None:
                    sent_by = (e.app_id, e.occurred_at, e.user_id, sender)  # the day taken below, once a key
                    tally[sent_by] = tally.get(sent_by, 0) + 1
                    continue
                m = _decode_message(e.data).message  # recorded with its copy (before migration 042)
                if m is not None:  # else nothing left to count, as a recount from the stored messages agrees
                    self._message(counts, seen, e.app_id, e.occurred_at[:10], m.sender_kind, m.sender_id,
                                  m.is_note, 1)
                continue
            if e.type == "broadcast.messages_sent":
                metric, n = "broadcast_recipients", _decode_batch(e.data).count
            else:
                found = COUNTED.get(e.type)
                if found is None:
                    continue
                metric = found
            key = (e.app_id, e.occurred_at[:10], metric)
            counts[key] = counts.get(key, 0) + n
        for (app, at, user, (kind, is_note)), n in tally.items():
            day = at[:10]
            # The sender as the commit recorded it (or, for an event recorded before it did, as the
            # read found it): a user's message is its conversation's user's, the event's user_id.
            # No sender: the message was gone before an older event's read.
            if kind is not None:
                self._message(counts, seen, app, day, kind, user, is_note, n)
        if counts:
            # Sorted: two transactions adding to the same rows lock them in the same order.
            keys = sorted(counts)
            await conn.execute(_ADD, [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys],
                               [counts[k] for k in keys])
        self._pending = list(seen)
        if seen:
            users = sorted(seen)
            await conn.execute(_SEEN, [u[0] for u in users], [seen[u] for u in users], [u[2] for u in users])

    def _message(self, counts: dict[tuple[str, str, str], int], seen: dict[tuple[str, str, str], str], app: str,
                 day: str, kind: str, sender: str | None, is_note: bool, n: int) -> None:
        key = (app, day, message_metric(kind, is_note))
        counts[key] = counts.get(key, 0) + n
        if kind == "user" and sender:
            active = (app, day[:7], sender)
            if active not in self._known:
                seen[active] = min(seen.get(active, day), day)
