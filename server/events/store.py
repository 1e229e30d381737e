"""Reading events back by position, and the relay's and consumers' checkpoints.

A position is (tx, n): the id of the transaction that wrote the event, then its number. Readers
see only events whose transaction is older than every transaction still running
(`pg_snapshot_xmin`): all of those have committed or rolled back, so no event can later appear
before a position already read. A plain serial number cannot promise that: a transaction that
took number 5 may commit after the one that took 6 was read.
"""

from __future__ import annotations

from typing import NamedTuple
from uuid import UUID

import asyncpg
import msgspec

from server.events.catalog import DomainEvent


class Position(NamedTuple):
    tx: int
    n: int

    def __str__(self) -> str:
        return f"{self.tx}.{self.n}"

    @classmethod
    def parse(cls, text: str | bytes) -> Position:
        tx, n = (text.decode() if isinstance(text, bytes) else text).split(".")
        return cls(int(tx), int(n))


START = Position(0, 0)

# `tx` comes back as text (asyncpg has no xid8 codec); ORDER BY names the table's columns, since
# an output column of the same name would sort as text ("1001" before "991").
# Postgres builds the envelope (server/events/catalog.py DomainEvent) as JSON text: the relay
# passes it on as it is, and a consumer decodes it in one call.
_COLUMNS = """tx::text AS tx, seq, json_build_object(
    'id', 'evt_' || seq, 'type', type, 'app_id', app_id,
    'occurred_at', to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    'conversation_id', conversation_id, 'user_id', user_id, 'admin_id', admin_id, 'version', version,
    'data', data, 'position', tx::text || '.' || seq)::text AS envelope"""

_AFTER_SQL = f"""
SELECT {_COLUMNS} FROM domain_events
WHERE (tx, seq) > ($1::text::xid8, $2::bigint) AND tx < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY domain_events.tx, domain_events.seq LIMIT $3
"""

# The same window, bounded above: what a consumer lacks between its checkpoint and a stream entry.
_BETWEEN_SQL = f"""
SELECT {_COLUMNS} FROM domain_events
WHERE (tx, seq) > ($1::text::xid8, $2::bigint) AND (tx, seq) < ($3::text::xid8, $4::bigint)
ORDER BY domain_events.tx, domain_events.seq LIMIT $5
"""


decode_event = msgspec.json.Decoder(DomainEvent).decode


def event_from_row(row: asyncpg.Record) -> DomainEvent:
    return decode_event(row["envelope"])


async def read_after(conn: asyncpg.Connection | asyncpg.Pool, after: Position, limit: int) -> list[DomainEvent]:
    """Committed events after `after`, in position order, that no later commit can precede."""
    rows = await conn.fetch(_AFTER_SQL, str(after.tx), after.n, limit)
    return [event_from_row(r) for r in rows]


async def read_envelopes_after(conn: asyncpg.Connection | asyncpg.Pool, after: Position,
                               limit: int) -> list[tuple[Position, str]]:
    """read_after for the relay: each event's position and its envelope, as JSON text."""
    rows = await conn.fetch(_AFTER_SQL, str(after.tx), after.n, limit)
    return [(Position(int(r["tx"]), r["seq"]), r["envelope"]) for r in rows]


async def read_between(conn: asyncpg.Connection | asyncpg.Pool, after: Position, before: Position,
                       limit: int) -> list[DomainEvent]:
    rows = await conn.fetch(_BETWEEN_SQL, str(after.tx), after.n, str(before.tx), before.n, limit)
    return [event_from_row(r) for r in rows]


async def relay_checkpoint(conn: asyncpg.Connection | asyncpg.Pool) -> Position:
    row = await conn.fetchrow("SELECT tx::text AS tx, seq FROM event_relay WHERE id = 1")
    return Position(int(row["tx"]), row["seq"]) if row else START


async def save_relay_checkpoint(conn: asyncpg.Connection | asyncpg.Pool, pos: Position) -> None:
    # Never backwards: a relay that lost its lease mid-batch must not undo its successor's progress.
    # Not waiting for the WAL flush: a checkpoint lost in a crash only makes the relay append some
    # events again, which the consumers' checkpoints skip.
    await conn.execute("""WITH off AS (SELECT set_config('synchronous_commit', 'off', true))
                          UPDATE event_relay SET tx = $1::text::xid8, seq = $2 FROM off
                          WHERE id = 1 AND (tx, seq) < ($1::text::xid8, $2)""", str(pos.tx), pos.n)


async def list_for_app(conn: asyncpg.Connection | asyncpg.Pool, app_id: UUID, *, types: list[str] | None,
                       before: int | None, limit: int) -> list[DomainEvent]:
    """A workspace's events, newest first (for support and debugging)."""
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM domain_events
            WHERE app_id = $1 AND ($2::text[] IS NULL OR type = ANY($2)) AND ($3::bigint IS NULL OR seq < $3)
            ORDER BY seq DESC LIMIT $4""", app_id, types, before, limit)
    return [event_from_row(r) for r in rows]


