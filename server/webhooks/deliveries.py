"""The `webhooks` consumer group: one delivery per (event, matching enabled endpoint).

It runs inside the transaction that moves the group's checkpoint (workers/runtime/consumer_groups.py),
so the deliveries of a batch and the progress past it commit together; a redelivered batch is
skipped by the checkpoint, and `UNIQUE (event_id, endpoint_id)` would refuse a second row anyway.
An endpoint gets the events recorded after it was created (by position: its own transaction's
`webhook.endpoint_created` is the first), of the types it subscribed to.

Most workspaces have no endpoint, and a batch for none of those that do needs no transaction: the
group knows which workspaces have one, enabled or not (loaded by `refresh`, and learned from the
`webhook.endpoint_created` events it reads: one comes before any event its endpoint is owed, as both
follow the position order) and passes over the rest in memory. Whether an endpoint is enabled is
still read in the transaction, as before. An endpoint inserted by hand, without its event, is seen
from the group's next refresh (after a restart, or once another replica applied some events).
"""

from __future__ import annotations

import asyncpg
import msgspec

from server.events.catalog import DomainEvent, event_type
from server.webhooks.event_types import DELIVERED_TYPES
from server.webhooks.store import parse_time

_CREATED = "webhook.endpoint_created"


class Body(msgspec.Struct):
    """The signed body: Standard Webhooks' {type, timestamp, data}."""

    type: str
    timestamp: str
    data: msgspec.Raw


_encode = msgspec.json.Encoder().encode

# The dispatchers LISTEN on this channel: the notification, sent when the transaction commits,
# wakes them at once instead of at their next poll.
CHANNEL = "webhook_deliveries"

_INSERT = f"""
WITH ins AS (
    INSERT INTO webhook_deliveries (app_id, endpoint_id, event_id, message_id, event_type, payload, event_at)
    SELECT ep.app_id, ep.id, x.seq, 'evt_' || x.seq, x.type, x.payload, x.at
    FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::timestamptz[], $6::text[])
        AS x(app_id, seq, type, payload, at, tx)
    JOIN webhook_endpoints ep ON ep.app_id = x.app_id AND ep.enabled AND ep.created_at <= x.at
         AND ep.created_tx <= x.tx::xid8 AND (ep.event_types IS NULL OR x.type = ANY(ep.event_types))
    ON CONFLICT (event_id, endpoint_id) DO NOTHING
    RETURNING 1
)
SELECT pg_notify('{CHANNEL}', '') FROM (SELECT 1 FROM ins LIMIT 1) AS any_inserted
"""


def body(event: DomainEvent) -> bytes:
    return _encode(Body(event.type, event.occurred_at, event.data))


class WebhookDeliveries:
    name = "webhooks"

    def __init__(self) -> None:
        # Workspaces that have (or had, since the last refresh) an endpoint; None: not loaded.
        self._hooked: set[str] | None = None

    async def refresh(self, conn: asyncpg.Connection) -> None:
        self._hooked = {r["app_id"] for r in await conn.fetch(
            "SELECT DISTINCT app_id::text AS app_id FROM webhook_endpoints")}

    def forget(self) -> None:
        self._hooked = None

    def relevant(self, events: list[DomainEvent]) -> bool:
        hooked = self._hooked
        if hooked is None:
            return True
        # Asked of every batch (every message): the types first, looped in C.
        types = set(map(event_type, events))
        if _CREATED in types:
            self._learn(events)
        if self._none_delivered(hooked, types):
            return False
        return any(e.type in DELIVERED_TYPES and e.app_id in hooked for e in events)

    def passes(self, types: frozenset[str]) -> bool:
        """Events of only these types certainly have nothing for this group, and none adds an
        endpoint to learn of."""
        hooked = self._hooked
        return hooked is not None and _CREATED not in types and self._none_delivered(hooked, types)

    @staticmethod
    def _none_delivered(hooked: set[str], types: set[str] | frozenset[str]) -> bool:
        # No workspace has an endpoint, or none of these types is delivered.
        return not hooked or DELIVERED_TYPES.isdisjoint(types)

    def _learn(self, events: list[DomainEvent]) -> None:
        if self._hooked is not None:
            self._hooked.update(e.app_id for e in events if e.type == _CREATED)

    async def apply(self, conn: asyncpg.Connection, events: list[DomainEvent]) -> None:
        self._learn(events)
        candidates = [e for e in events if e.type in DELIVERED_TYPES]
        if not candidates:
            return
        # Most workspaces have no endpoint: find the ones that do before building any body.
        hooked = {str(r["app_id"]) for r in await conn.fetch(
            "SELECT DISTINCT app_id FROM webhook_endpoints WHERE enabled AND app_id = ANY($1::uuid[])",
            list({e.app_id for e in candidates}))}
        todo = [e for e in candidates if e.app_id in hooked]
        if not todo:
            return
        await conn.execute(
            _INSERT, [e.app_id for e in todo], [int(e.id.removeprefix("evt_")) for e in todo], [e.type for e in todo],
            [body(e).decode() for e in todo], [parse_time(e.occurred_at) for e in todo],
            [e.position.partition(".")[0] for e in todo])
