"""The conversation actor's writes: one transaction per batch of commands (group commit).

The actor owns `seq`: it numbers new messages from the conversation's last_seq, and the
conversation row's last_seq acts as a fence — if another writer moved it, the batch fails
with StaleSeq and the actor reloads instead of writing a gap or a duplicate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from server.conversations import rows
from server.conversations.models import Conversation, Message, Receipt, UpdateCommand
from server.conversations.store import record_user_changes
from server.events.record import record
from server.events.store import ROW_SPAN

_encode = msgspec.json.Encoder().encode


class StaleSeq(Exception):
    """The conversation's last_seq is not what the actor believed: someone else wrote."""


@dataclass(frozen=True)
class ConversationState:
    id: UUID
    app_id: UUID
    user_id: UUID
    last_seq: int


@dataclass
class NewMessage:
    id: UUID
    app_id: UUID
    conversation_id: UUID
    seq: int
    client_id: str
    sender_kind: str
    sender_id: UUID | None
    body: str
    attachments_json: str
    is_note: bool
    created_at: datetime


async def load_states(conn: asyncpg.Connection | asyncpg.Pool, ids: list[UUID]) -> dict[UUID, ConversationState]:
    found = await conn.fetch("SELECT id, app_id, user_id, last_seq FROM conversations WHERE id = ANY($1::uuid[])", ids)
    return {r["id"]: ConversationState(r["id"], r["app_id"], r["user_id"], r["last_seq"]) for r in found}


async def existing_messages(conn: asyncpg.Connection, keys: list[tuple[UUID, str]]) -> dict[tuple[UUID, str], Message]:
    """Messages already stored under (conversation_id, client_id): resends return these."""
    if not keys:
        return {}
    found = await conn.fetch(
        """SELECT m.* FROM messages m JOIN unnest($1::uuid[], $2::text[]) AS k(c, cid)
           ON m.conversation_id = k.c AND m.client_id = k.cid""",
        [k[0] for k in keys], [k[1] for k in keys])
    return {(r["conversation_id"], r["client_id"]): rows.message(r) for r in found}


class DuplicateClientIds(Exception):
    """Some client_ids of the batch are stored already: nothing was written."""

    def __init__(self, keys: set[tuple[UUID, str]]) -> None:
        super().__init__(f"{len(keys)} resent client id(s)")
        self.keys = keys


# One statement, so one round trip and atomic without an explicit transaction: write nothing
# if any client_id is already stored (the actor then answers those from the stored rows), and
# abort everything if any conversation's last_seq moved (the fence) via replyhq_stale().
# The messages and the per-conversation changes travel as two JSON texts: msgspec encodes each in
# one call, where 21 array parameters cost asyncpg a Python type check per element.
# The plan must not depend on table sizes: asyncpg prepares this once per connection and Postgres
# soon settles on a generic plan made while the tables were small. Joined plainly, that plan
# scanned all of `messages` (and `conversations`) on every commit, and commits slowed down as the
# tables grew (3 ms at 30,000 messages instead of 0.6 ms).
_COMMIT_SQL = """
WITH new AS (  -- $1: the NewMessage rows, keyed by their field names
    SELECT * FROM ROWS FROM (json_to_recordset($1::text::json) AS (
        id uuid, app_id uuid, conversation_id uuid, seq int, client_id text, sender_kind text, sender_id uuid,
        body text, attachments_json text, is_note bool, created_at timestamptz))
    WITH ORDINALITY AS x(i, a, c, s, cid, sk, sid, b, att, n, t, ord)
),
dup AS (  -- LATERAL ... LIMIT 1: one index probe per new message, never a hash join over messages
    SELECT d.conversation_id, d.client_id FROM new CROSS JOIN LATERAL (
        SELECT m.conversation_id, m.client_id FROM messages m
        WHERE m.conversation_id = new.c AND m.client_id = new.cid LIMIT 1) d
),
per_conv AS (
    SELECT * FROM json_to_recordset($2::text::json) AS u(id uuid, old int, top int, at timestamptz, preview text,
                                                           sender text, uu int, au int, admin_at timestamptz)
),
adv AS (
    UPDATE conversations c SET
        last_seq = u.top,
        last_message_at = COALESCE(u.at, c.last_message_at),
        last_message_preview = COALESCE(u.preview, c.last_message_preview),
        last_message_sender = COALESCE(u.sender, c.last_message_sender),
        user_unread = c.user_unread + u.uu,
        admin_unread = c.admin_unread + u.au,
        first_admin_reply_at = COALESCE(c.first_admin_reply_at, u.admin_at),
        status = CASE WHEN u.au > 0 AND c.status IN ('closed', 'snoozed') THEN 'open' ELSE c.status END,
        snoozed_until = CASE WHEN u.au > 0 AND c.status = 'snoozed' THEN NULL ELSE c.snoozed_until END,
        updated_at = now()
    FROM per_conv u
    -- $3, the same ids as an array, makes this an index lookup per conversation: joined on
    -- per_conv alone the planner guesses 100 rows and scans the whole table, dead rows included.
    WHERE c.id = ANY($3::uuid[]) AND c.id = u.id AND c.last_seq = u.old AND NOT EXISTS (SELECT 1 FROM dup)
    RETURNING c.id, c.user_id
),
ins AS (
    INSERT INTO messages (id, app_id, conversation_id, seq, client_id, sender_kind, sender_id, body,
                          attachments, is_note, created_at)
    SELECT i, a, c, s, cid, sk, sid, b, att::jsonb, n, t FROM new WHERE c IN (SELECT id FROM adv)
    RETURNING 1
),
chg AS (
    SELECT adv.user_id, new.c, new.s, row_number() OVER (PARTITION BY adv.user_id ORDER BY new.ord) AS k
    FROM new JOIN adv ON adv.id = new.c WHERE NOT new.n
),
cnt AS (SELECT user_id, count(*) AS n FROM chg GROUP BY user_id),
bump AS (
    UPDATE end_users u SET change_seq = u.change_seq + cnt.n FROM cnt WHERE u.id = cnt.user_id
    RETURNING u.id, u.change_seq - cnt.n AS base
),
logged AS (
    INSERT INTO user_changes (user_id, change_seq, kind, conversation_id, message_seq)
    SELECT chg.user_id, bump.base + chg.k, 'message', chg.c, chg.s FROM chg JOIN bump ON bump.id = chg.user_id
    RETURNING 1
),
ev AS (  -- message.created, in this same statement: the event commits with its message or not at all.
         -- It names its message rather than copying it: readers build the data from the row
         -- (server/events/store.py); the commit writes about 400 bytes less WAL an event. Its sender
         -- kind and note flag ride along (a few bytes): what the usage group counts by.
         -- One row for the workspace's messages of this commit, listed in order (migration 045): a
         -- row, its index entries and its WAL records once a commit, not once a message. At most
         -- 1024 messages a row (server/events/store.py ROW_SPAN).
    INSERT INTO event_rows (type, app_id, conversation_ids, user_ids, message_ids, sender_kinds, notes)
    SELECT 'message.created', new.a, array_agg(new.c ORDER BY new.ord), array_agg(adv.user_id ORDER BY new.ord),
           array_agg(new.i ORDER BY new.ord), array_agg(new.sk ORDER BY new.ord), array_agg(new.n ORDER BY new.ord)
    FROM new JOIN adv ON adv.id = new.c GROUP BY new.a, (new.ord - 1) / """ + str(ROW_SPAN) + """
    RETURNING cardinality(message_ids) AS n
)
SELECT (SELECT array_agg(conversation_id) FROM dup) AS dup_conversations,
       (SELECT array_agg(client_id) FROM dup) AS dup_client_ids,
       CASE WHEN NOT EXISTS (SELECT 1 FROM dup) AND (SELECT count(*) FROM adv) <> (SELECT count(*) FROM per_conv)
            THEN replyhq_stale('conversation moved under its actor') END AS fence,
       (SELECT count(*) FROM ins) AS inserted, (SELECT count(*) FROM logged) AS logged,
       (SELECT coalesce(sum(n), 0) FROM ev) AS events
"""


async def insert_messages(conn: asyncpg.Connection | asyncpg.Pool, new: list[NewMessage],
                          states: dict[UUID, ConversationState]) -> None:
    """Insert the batch, advance each conversation (fenced on last_seq), log user changes.

    Raises DuplicateClientIds (nothing written) or StaleSeq (nothing written).
    """
    if not new:
        return
    per_conv: dict[UUID, dict[str, Any]] = {}
    for m in new:
        agg = per_conv.get(m.conversation_id)
        if agg is None:
            agg = per_conv[m.conversation_id] = {
                "id": m.conversation_id, "old": states[m.conversation_id].last_seq, "top": 0, "at": None,
                "preview": None, "sender": None, "uu": 0, "au": 0, "admin_at": None}
        agg["top"] = max(agg["top"], m.seq)
        if not m.is_note:
            agg["at"], agg["preview"], agg["sender"] = m.created_at, m.body[:200], m.sender_kind
            if m.sender_kind == "user":
                agg["au"] += 1
            else:
                agg["uu"] += 1
                if m.sender_kind == "admin" and agg["admin_at"] is None:
                    agg["admin_at"] = m.created_at
    try:
        row = await conn.fetchrow(_COMMIT_SQL, _encode(new).decode(),
                                  _encode(list(per_conv.values())).decode(), list(per_conv))
    except asyncpg.RaiseError as exc:
        raise StaleSeq(str(exc)) from None
    assert row is not None
    if row["dup_conversations"]:
        raise DuplicateClientIds(set(zip(row["dup_conversations"], row["dup_client_ids"], strict=True)))


async def apply_receipt(conn: asyncpg.Connection, state: ConversationState, participant_kind: str,
                        participant_id: UUID, delivered: int | None, read: int | None) -> Receipt:
    """Raise the participant's high-water marks (never lower them); read implies delivered."""
    top = state.last_seq
    read_seq = min(read, top) if read is not None else 0
    delivered_seq = max(min(delivered, top) if delivered is not None else 0, read_seq)
    row = await conn.fetchrow(
        """INSERT INTO receipts (conversation_id, participant_kind, participant_id, delivered_seq, read_seq)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (conversation_id, participant_kind, participant_id) DO UPDATE SET
               delivered_seq = GREATEST(receipts.delivered_seq, EXCLUDED.delivered_seq),
               read_seq = GREATEST(receipts.read_seq, EXCLUDED.read_seq),
               updated_at = now()
           WHERE receipts.delivered_seq < EXCLUDED.delivered_seq OR receipts.read_seq < EXCLUDED.read_seq
           RETURNING *""", state.id, participant_kind, participant_id, delivered_seq, read_seq)
    raised = row is not None
    if row is None:  # nothing rose: the marks stand as they were, and no event is recorded
        row = await conn.fetchrow(
            "SELECT * FROM receipts WHERE conversation_id = $1 AND participant_kind = $2 AND participant_id = $3",
            state.id, participant_kind, participant_id)
    if read is not None:
        mine = "user" if participant_kind == "user" else "admin"
        column = "user_unread" if mine == "user" else "admin_unread"
        other = "sender_kind <> 'user'" if mine == "user" else "sender_kind = 'user'"
        await conn.execute(
            f"""UPDATE conversations SET {column} = (SELECT count(*) FROM messages
                    WHERE conversation_id = $1 AND seq > $2 AND {other} AND NOT is_note)
                WHERE id = $1""", state.id, row["read_seq"])
    await record_user_changes(conn, [(state.user_id, "receipt", state.id, None)])
    receipt = rows.receipt(row)
    if raised:
        await record(conn, "receipt.updated", state.app_id, {"receipt": receipt}, conversation_id=state.id,
                     user_id=state.user_id,
                     admin_id=participant_id if participant_kind == "admin" else None)
    return receipt


async def apply_update(conn: asyncpg.Connection, state: ConversationState, cmd: UpdateCommand) -> Conversation:
    before = await conn.fetchrow(
        "SELECT status, assignee_id, tags, snoozed_until FROM conversations WHERE id = $1 FOR UPDATE", state.id)
    row = await conn.fetchrow(
        """UPDATE conversations SET
               status = COALESCE($2, status),
               snoozed_until = CASE WHEN $2 = 'snoozed' THEN $3::timestamptz
                                    WHEN $2 IS NOT NULL THEN NULL ELSE snoozed_until END,
               assignee_id = CASE WHEN $5 THEN NULL ELSE COALESCE($4::uuid, assignee_id) END,
               tags = ARRAY(SELECT DISTINCT t FROM unnest(tags || $6::text[]) t WHERE t <> ALL($7::text[]) ORDER BY t),
               updated_at = now()
           WHERE id = $1 RETURNING *""",
        state.id, cmd.status, _ts(cmd.snoozed_until), _uuid(cmd.assignee_id), cmd.unassign,
        cmd.add_tags, cmd.remove_tags)
    await record_user_changes(conn, [(state.user_id, "conversation", state.id, None)])
    conv = rows.conversation(row)
    changes = [k for k in ("status", "assignee_id", "tags", "snoozed_until") if before and before[k] != row[k]]
    if changes:
        # One event per change, named by what matters most in it; `changes` lists every field.
        data: dict[str, Any] = {"conversation": conv, "changes": changes}
        if "status" in changes:
            kind = "conversation.status_changed"
            data["previous_status"] = before["status"]
        elif "assignee_id" in changes:
            kind = "conversation.assigned"
            data["previous_assignee_id"] = str(before["assignee_id"]) if before["assignee_id"] else None
        else:
            kind = "conversation.updated"
        await record(conn, kind, state.app_id, data, conversation_id=state.id, user_id=state.user_id,
                     admin_id=cmd.actor_id)
    return conv


def _uuid(v: str | None) -> UUID | None:
    return UUID(v) if v else None


def _ts(v: str | None) -> datetime | None:
    return datetime.fromisoformat(v.replace("Z", "+00:00")) if v else None
