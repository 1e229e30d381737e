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

# message.created names its message (`message_id`) rather than storing a copy: the copy was most
# of what an event cost the group commit (migration 042). Its data is built here, when read, from
# the message row: messages are never updated, so every read builds the same document, the message
# as the REST API shows it (server/conversations/rows.py). A message gone with its conversation
# (deleted by hand: no route deletes one) reads as {"message":null}.
_MESSAGE_JSON = """'{"message":{"id":"' || m.id || '","conversation_id":"' || m.conversation_id
    || '","seq":' || m.seq || ',"client_id":' || to_json(m.client_id)::text
    || ',"sender_kind":"' || m.sender_kind || '","sender_id":' || coalesce('"' || m.sender_id || '"', 'null')
    || ',"body":' || to_json(m.body)::text || ',"attachments":' || m.attachments::text
    || ',"is_note":' || CASE WHEN m.is_note THEN 'true' ELSE 'false' END
    || ',"created_at":"' || to_char(m.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') || '"}}'"""
# A scalar subquery, so one primary-key probe for each such event and nothing for the others
# (coalesce stops at `data`).
_MESSAGE_DATA = f"(SELECT {_MESSAGE_JSON} FROM messages m WHERE m.id = domain_events.message_id)"
NO_MESSAGE = '{"message":null}'
_NO_MESSAGE = f"'{NO_MESSAGE}'"

# The by-reference form of that data: what the relay puts on the stream, and what consumers that
# ask for it (`by_reference`, workers/runtime/consumer_groups.py) read. Building the message's
# JSON was a third of the relay's Postgres time and half the bytes through Redis and the worker
# process, for consumers that mostly never look at it; `resolve` builds it for those that do.
# It carries the sender's kind and the note flag, which the commit records with the event
# (migration 044): `{"message_id":"…","sender_kind":"user","is_note":false}`. An event recorded
# before takes them from its message (COALESCE evaluates the probe only then); without the
# message either (deleted by hand), the reference is the id alone.
REFERENCE_PREFIX = b'{"message_id":"'
_SENDER = """',"sender_kind":"' || {0}sender_kind || '","is_note":' || {0}is_note::text"""


def _reference(table: str) -> str:
    """The reference of the event with a `message_id` in `table` (NULL without one)."""
    return f"""'{REFERENCE_PREFIX.decode()}' || message_id || '"' || coalesce({_SENDER.format("")},
    (SELECT {_SENDER.format("m.")} FROM messages m WHERE m.id = {table}.message_id), '') || '}}'"""


_REFERENCE = _reference("domain_events")


class MessageReference(msgspec.Struct, gc=False):
    """message.created's by-reference data."""

    message_id: str
    sender_kind: str | None = None  # None: the message was gone before the read (and not recorded)
    is_note: bool = False


_decode_reference = msgspec.json.Decoder(MessageReference).decode


def _envelope(data: str) -> str:
    # Postgres builds the envelope (server/events/catalog.py DomainEvent) as JSON text: the relay
    # passes it on as it is, and a consumer decodes it in one call.
    # Concatenated rather than json_build_object: the same document (no spaces) at half the cost,
    # about 2 µs an event instead of 4.5. Every piece is JSON already: the type through to_json,
    # the ids are uuids, the rest numbers and json (`data`, stored as the text it is: migration 035).
    return f"""('{{"id":"evt_' || seq || '","type":' || to_json(type)::text || ',"app_id":"' || app_id
    || '","occurred_at":"' || to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
    || '","conversation_id":' || coalesce('"' || conversation_id || '"', 'null')
    || ',"user_id":' || coalesce('"' || user_id || '"', 'null')
    || ',"admin_id":' || coalesce('"' || admin_id || '"', 'null')
    || ',"version":' || version || ',"data":' || coalesce(data::text, {data}, {_NO_MESSAGE})
    || ',"position":"' || tx::text || '.' || seq || '"}}')"""


_ENVELOPE = _envelope(_MESSAGE_DATA)
_BY_REFERENCE = _envelope(_REFERENCE)

# message.created events of one commit and workspace share a row of `event_rows`, numbered from its
# `seq` (migration 045); `domain_events` is the view with one row an event. A row's events span
# fewer than ROW_SPAN numbers, so the rows that hold events after (tx, n) are those after
# (tx, n - ROW_SPAN) in the primary key: the first condition is the index's, the second the events'.
ROW_SPAN = 1024
# How many events a row of `event_rows` holds (SQL, on the row): its listed messages, else one.
ROW_EVENTS = "coalesce(cardinality(message_ids), 1)"


def _after(tx: str, n: str) -> str:
    return f"(tx, row_seq) > ({tx}, {n} - {ROW_SPAN}) AND (tx, seq) > ({tx}, {n})"


# `tx` comes back as text (asyncpg has no xid8 codec); ORDER BY names the view's columns, since
# an output column of the same name would sort as text ("1001" before "991"). It orders by row and
# place in the row (the order the events' numbers have): the primary key's order, so a LIMIT stops
# the index scan early, where ordering by the event's number would sort everything after the cursor.
_VISIBLE_AFTER = f"""{_after("$1::text::xid8", "$2::bigint")} AND tx < pg_snapshot_xmin(pg_current_snapshot())"""
_IN_ORDER = "ORDER BY domain_events.tx, domain_events.row_seq, domain_events.row_index"


def _after_sql(envelope: str) -> str:
    return f"""
SELECT tx::text AS tx, seq, {envelope} AS envelope FROM domain_events WHERE {_VISIBLE_AFTER}
{_IN_ORDER} LIMIT $3
"""


# [by_reference] -> statement
_AFTER_SQL = {False: _after_sql(_ENVELOPE), True: _after_sql(_BY_REFERENCE)}

# The same window, bounded above, by reference: what a consumer lacks between its checkpoint and a
# stream entry (the runtime reads it as the stream carries it).
_BETWEEN_SQL = f"""
SELECT tx::text AS tx, seq, {_BY_REFERENCE} AS envelope FROM domain_events
WHERE {_after("$1::text::xid8", "$2::bigint")}
  AND (tx, row_seq) < ($3::text::xid8, $4::bigint) AND (tx, seq) < ($3::text::xid8, $4::bigint)
{_IN_ORDER} LIMIT $5
"""

# The rows of `event_rows` holding events after one position up to and including another, with the
# numbers of the first and last of their events in that window (`first`, `last`): the one window
# the relay reads (open to the horizon), the lag gauge counts, and a group that applies ranges in SQL
# (workers/runtime/consumer_groups.py `apply_range`) applies. A row is found by the primary key:
# its events span fewer than ROW_SPAN numbers. Every event at or before a relayed position is
# committed and visible; the horizon condition keeps an upper bound taken from Postgres (the
# relay's, a catch-up's) to such events too.
def _rows_between(after_tx: str, after_n: str, upto_tx: str, upto_n: str) -> str:
    """FROM-clause SQL: event_rows `r` overlapping (after, upto], with `first` and `last`."""
    return f"""(SELECT r.*,
       CASE WHEN r.tx = {after_tx} AND r.seq <= {after_n} THEN {after_n} + 1 ELSE r.seq END AS first,
       CASE WHEN r.tx = {upto_tx} AND r.seq + {ROW_EVENTS} - 1 > {upto_n} THEN {upto_n}
            ELSE r.seq + {ROW_EVENTS} - 1 END AS last
FROM event_rows r
WHERE (r.tx, r.seq) > ({after_tx}, {after_n} - {ROW_SPAN})
  AND (r.tx, r.seq + {ROW_EVENTS} - 1) > ({after_tx}, {after_n})
  AND (r.tx, r.seq) <= ({upto_tx}, {upto_n}) AND r.tx < pg_snapshot_xmin(pg_current_snapshot()))"""


RANGE_ROWS = _rows_between("$1::text::xid8", "$2::bigint", "$3::text::xid8", "$4::bigint")

# Beyond every position: the upper bound of a window open to the horizon.
_END = Position(2**64 - 1, 2**63 - 1)
_LAST_TX, _LAST_N = f"'{_END.tx}'::xid8", str(_END.n)

# The relay's read: the rows of `event_rows` as they are, each a JSON array (RowForm below), grouped
# into stream entries of about $5 events (a row is never split). A row of messages reaches the stream
# as its arrays, not as an envelope an event: building those was most of the relay's Postgres time,
# and three times the bytes through Redis; the groups expand a row into its events (`decode_rows`).
# Up to $3 rows, and past $4 events no further row. The first row may hold events at or before the
# position read after (a relay before this one stopped inside it): it is sent whole, and its entry's
# `prev` tells the groups which of its events are new. `n` counts only those.
_ROW_JSON = f"""'[' || tx::text || ',' || seq || ',' || to_json(type)::text || ',"' || app_id || '","'
    || to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') || '",' || version
    || ',' || coalesce('"' || admin_id || '"', 'null') || ',' || coalesce('"' || conversation_id || '"', 'null')
    || ',' || coalesce('"' || user_id || '"', 'null')
    || ',' || CASE WHEN message_ids IS NULL THEN coalesce(data::text, {_reference("w")}, {_NO_MESSAGE}) ELSE 'null' END
    || ',' || coalesce(to_json(conversation_ids)::text, 'null') || ',' || coalesce(to_json(user_ids)::text, 'null')
    || ',' || coalesce(to_json(message_ids)::text, 'null') || ',' || coalesce(to_json(sender_kinds)::text, 'null')
    || ',' || coalesce(to_json(notes)::text, 'null') || ']'"""
_ENTRIES = f"""
r AS (
    SELECT x.*, {ROW_EVENTS} AS size, x.last - x.first + 1 AS fresh
    FROM {_rows_between("$1::text::xid8", "$2::bigint", _LAST_TX, _LAST_N)} x ORDER BY tx, seq LIMIT $3),
w AS (SELECT r.*, (sum(fresh) OVER (ORDER BY tx, seq))::bigint - fresh AS before FROM r)
SELECT count(*)::int AS rows, sum(fresh)::int AS n,
       '[' || string_agg({_ROW_JSON}, ',' ORDER BY tx, seq) || ']' AS events,
       (array_agg(tx::text || '.' || (seq + size - 1) ORDER BY tx DESC, seq DESC))[1] AS last,
       extract(epoch FROM min(occurred_at))::float8 AS oldest, string_agg(DISTINCT type, ',') AS types
FROM w WHERE before < $4 GROUP BY before / $5 ORDER BY before / $5
"""
_ENTRIES_SQL = f"WITH {_ENTRIES}"

# The relay's read, saving its checkpoint at the position read after (everything up to it is
# on the stream) in the same statement: no round trip of its own. Not waiting for the WAL flush: a
# checkpoint lost in a crash only makes the relay append some events again, which the consumers'
# checkpoints skip. Never backwards: a relay that lost its lease must not undo its successor's progress.
_SAVE_AND_ENTRIES_SQL = f"""
WITH off AS (SELECT set_config('synchronous_commit', 'off', true)),
saved AS (UPDATE event_relay SET tx = $1::text::xid8, seq = $2 FROM off
          WHERE id = 1 AND (tx, seq) < ($1::text::xid8, $2::bigint) RETURNING 1),
{_ENTRIES}"""

# For `resolve`. LATERAL ... LIMIT 1: a primary-key probe per message whatever generic plan Postgres
# settles on for this prepared statement (one made while `messages` was small could scan it all).
_MESSAGES_SQL = f"""SELECT x.id::text AS id, j.data FROM unnest($1::uuid[]) AS x(id)
CROSS JOIN LATERAL (SELECT {_MESSAGE_JSON} AS data FROM messages m WHERE m.id = x.id LIMIT 1) j"""


decode_event = msgspec.json.Decoder(DomainEvent).decode
decode_events = msgspec.json.Decoder(list[DomainEvent]).decode


class RowForm(msgspec.Struct, array_like=True, gc=False):
    """A row of `event_rows` as the relay puts it on the stream (`_ROW_JSON`): one event with its
    `data` (message.created by reference), or a row of messages, its arrays."""

    tx: int
    seq: int
    type: str
    app_id: str
    occurred_at: str
    version: int
    admin_id: str | None
    conversation_id: str | None
    user_id: str | None
    data: msgspec.Raw  # null for a row of messages
    conversation_ids: list[str | None] | None
    user_ids: list[str | None] | None
    message_ids: list[str] | None
    sender_kinds: list[str | None] | None
    notes: list[bool | None] | None


_decode_rows = msgspec.json.Decoder(list[RowForm]).decode


def decode_rows(rows: str | bytes, after: Position) -> list[DomainEvent]:
    """The events of `rows` (a JSON array of RowForm) after `after`, message.created by reference,
    exactly as the view's by-reference read gives them."""
    out: list[DomainEvent] = []
    append = out.append
    for r in _decode_rows(rows):
        tx = r.tx
        if r.message_ids is None:
            if (tx, r.seq) > after:
                append(DomainEvent(id=f"evt_{r.seq}", type=r.type, app_id=r.app_id, occurred_at=r.occurred_at,
                                   conversation_id=r.conversation_id, user_id=r.user_id, admin_id=r.admin_id,
                                   version=r.version, data=r.data, position=f"{tx}.{r.seq}"))
            continue
        first = 0 if tx != after.tx or r.seq > after.n else after.n - r.seq + 1
        kind, app, at, version, admin, seq = r.type, r.app_id, r.occurred_at, r.version, r.admin_id, r.seq
        ids, conversations, users, kinds, notes = r.message_ids, r.conversation_ids, r.user_ids, r.sender_kinds, r.notes
        assert conversations is not None and users is not None and kinds is not None and notes is not None
        # The hottest loop of the worker process (every message, once a replica): inlined.
        for i in range(first, len(ids)):
            tail = _TAILS.get((kinds[i], notes[i])) or _tail(kinds[i], notes[i])
            n = seq + i
            append(DomainEvent(id=f"evt_{n}", type=kind, app_id=app, occurred_at=at,
                               conversation_id=conversations[i], user_id=users[i], admin_id=admin, version=version,
                               data=msgspec.Raw(REFERENCE_PREFIX + ids[i].encode() + tail),
                               position=f"{tx}.{n}"))
    return out


# (sender_kind, is_note) -> what follows the message id in a reference, as _REFERENCE writes it.
_TAILS: dict[tuple[str | None, bool | None], bytes] = {}


def _tail(sender_kind: str | None, is_note: bool | None) -> bytes:
    # The commit records the sender of every message of a row; without one, the id alone.
    tail = b'"}' if sender_kind is None or is_note is None else (
        b'","sender_kind":"%s","is_note":%s}' % (sender_kind.encode(), b"true" if is_note else b"false"))
    if len(_TAILS) < 64:  # bounded whatever the data
        _TAILS[(sender_kind, is_note)] = tail
    return tail


def event_from_row(row: asyncpg.Record) -> DomainEvent:
    return decode_event(row["envelope"])


async def read_after(conn: asyncpg.Connection | asyncpg.Pool, after: Position, limit: int, *,
                     by_reference: bool = False) -> list[DomainEvent]:
    """Committed events after `after`, in position order, that no later commit can precede. With
    `by_reference`, message.created's data is the reference (`referenced_message`), not the message."""
    rows = await conn.fetch(_AFTER_SQL[by_reference], str(after.tx), after.n, limit)
    return [event_from_row(r) for r in rows]


def _split_reference(event: DomainEvent) -> tuple[bytes, bytes] | None:
    """(message id, what follows it) of a by-reference `event`; None: it carries its data."""
    if event.type != "message.created":
        return None
    data = bytes(event.data)
    if not data.startswith(REFERENCE_PREFIX):
        return None
    end = data.index(b'"', len(REFERENCE_PREFIX))
    return data[len(REFERENCE_PREFIX):end], data[end:]


def referenced_message(event: DomainEvent) -> str | None:
    """The id of the message whose data `event` carries by reference (None: it carries its data)."""
    split = _split_reference(event)
    return None if split is None else split[0].decode()


# What follows the message id in a reference -> (sender_kind, is_note): a handful of distinct
# values (sender kinds by note flag), so each is decoded once rather than every event's.
_SENDERS: dict[bytes, tuple[str | None, bool]] = {}
_TAIL_AT = len(REFERENCE_PREFIX) + 36


def referenced_sender(event: DomainEvent) -> tuple[str | None, bool] | None:
    """(sender_kind, is_note) of the message `event` names by reference (sender_kind None: the
    message was gone when an event recorded before migration 044 was read); None: not a
    message.created, or it carries the message itself (recorded before migration 042, or read
    without `by_reference`)."""
    if event.type != "message.created":
        return None
    # The usual case, once for every message: a known tail after a 36-character id (a uuid).
    data = bytes(event.data)
    found = _SENDERS.get(data[_TAIL_AT:])
    if found is not None and data.startswith(REFERENCE_PREFIX):
        return found
    split = _split_reference(event)
    if split is None:
        return None
    rest = split[1]
    found = _SENDERS.get(rest)
    if found is None:
        ref = _decode_reference(REFERENCE_PREFIX + rest)
        found = (ref.sender_kind, ref.is_note)
        if len(_SENDERS) < 64:  # bounded whatever the data
            _SENDERS[rest] = found
    return found


async def resolve(conn: asyncpg.Connection | asyncpg.Pool, events: list[DomainEvent]) -> list[DomainEvent]:
    """`events` with every by-reference data replaced by the message it names, as every other read
    builds it (one statement for all); the events themselves are left as they are (groups share them)."""
    refs = [referenced_message(e) for e in events]
    wanted = {ref for ref in refs if ref is not None}
    if not wanted:
        return events
    found = {r["id"]: r["data"] for r in await conn.fetch(_MESSAGES_SQL, list(wanted))}
    return [e if ref is None else msgspec.structs.replace(e, data=msgspec.Raw(found.get(ref, NO_MESSAGE).encode()))
            for e, ref in zip(events, refs, strict=True)]


class Entry(NamedTuple):
    """Consecutive rows of events as the relay appends them to the stream: one entry."""

    last: str  # the position of the last event, as text
    size: int  # how many events after the position read after
    rows: str  # the rows, a JSON array of RowForm (decode_rows)
    row_count: int  # how many rows
    oldest: float  # the oldest commit time among them (Unix seconds)
    types: str  # the rows' event types, comma-separated


async def read_entries_after(conn: asyncpg.Connection | asyncpg.Pool, after: Position, rows: int, limit: int,
                             per_entry: int, *, save_checkpoint: bool = False) -> list[Entry]:
    """The relay's read: the rows of events after `after`, up to `rows` rows and no row past `limit`
    events, as entries of about `per_entry` events (a row is never split), in position order. With
    `save_checkpoint`, the same statement saves the relay's checkpoint at `after`."""
    found = await conn.fetch(_SAVE_AND_ENTRIES_SQL if save_checkpoint else _ENTRIES_SQL, str(after.tx), after.n,
                             rows, limit, per_entry)
    return [Entry(r["last"], r["n"], r["events"], r["rows"], r["oldest"], r["types"]) for r in found]


async def read_between(conn: asyncpg.Connection | asyncpg.Pool, after: Position, before: Position,
                       limit: int) -> list[DomainEvent]:
    """Committed events strictly between `after` and `before`, message.created by reference."""
    rows = await conn.fetch(_BETWEEN_SQL, str(after.tx), after.n, str(before.tx), before.n, limit)
    return [event_from_row(r) for r in rows]


# Counted by rows, not events: a row of messages counts its events in the window without being
# unnested (the gauge of a group that batches once a second counts a second of traffic each time).
_COUNT_SQL = f"""
SELECT coalesce(sum(last - first + 1), 0)::bigint FROM (SELECT first, last FROM {RANGE_ROWS} w LIMIT $5) r
"""


async def count_between(conn: asyncpg.Connection | asyncpg.Pool, after: Position, upto: Position, limit: int) -> int:
    """How many events lie after `after` and at or before `upto`, counting up to `limit` (or a
    little past it: rows are counted whole up to `limit` rows). Event numbers cannot tell: a row of
    messages takes 1,024 numbers however many it lists."""
    return min(limit, int(await conn.fetchval(_COUNT_SQL, str(after.tx), after.n, str(upto.tx), upto.n, limit)))


# A range group's batch: the next rows after its checkpoint, up to a position (or the horizon), in
# order: how many events each holds in the window, and when it was committed.
_SPANS_SQL = f"""
SELECT tx::text AS tx, first, last, extract(epoch FROM occurred_at)::float8 AS at
FROM {RANGE_ROWS} w ORDER BY tx, seq LIMIT $5
"""


class Span(NamedTuple):
    """The events of one row of `event_rows` in a window: numbers `first` to `last` of transaction `tx`."""

    tx: int
    first: int
    last: int
    at: float  # when it was committed (Unix seconds)


async def spans_after(conn: asyncpg.Connection, after: Position, upto: Position | None, rows: int) -> list[Span]:
    """The next `rows` rows' events after `after` and at or before `upto` (None: as far as is visible)."""
    end = upto or _END
    found = await conn.fetch(_SPANS_SQL, str(after.tx), after.n, str(end.tx), end.n, rows)
    return [Span(int(r["tx"]), r["first"], r["last"], r["at"]) for r in found]


async def relay_checkpoint(conn: asyncpg.Connection | asyncpg.Pool) -> Position:
    row = await conn.fetchrow("SELECT tx::text AS tx, seq FROM event_relay WHERE id = 1")
    return Position(int(row["tx"]), row["seq"]) if row else START


async def list_for_app(conn: asyncpg.Connection | asyncpg.Pool, app_id: UUID, *, types: list[str] | None,
                       before: int | None, limit: int) -> list[DomainEvent]:
    """A workspace's events, newest first (for support and debugging)."""
    rows = await conn.fetch(
        f"""SELECT tx::text AS tx, seq, {_ENVELOPE} AS envelope FROM domain_events
            WHERE app_id = $1 AND ($2::text[] IS NULL OR type = ANY($2))
              AND ($3::bigint IS NULL OR (row_seq < $3 AND seq < $3))
            ORDER BY row_seq DESC, row_index DESC LIMIT $4""", app_id, types, before, limit)
    return [event_from_row(r) for r in rows]


