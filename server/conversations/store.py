"""SQL of conversations, messages and receipts: creation and reads (every write, creation included,
is the conversation actor's: see actors/conversation.py and server/conversations/commit.py)."""

from __future__ import annotations

from typing import TypeAlias
from uuid import UUID

import asyncpg

from server.conversations import rows
from server.conversations.models import Conversation, Message, Receipt
from server.events.record import record
from server.http.pagination import Cursor

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool


async def create(conn: asyncpg.Connection, conversation_id: UUID, app_id: UUID, user_id: UUID,
                 subject: str | None) -> tuple[Conversation, bool]:
    """The conversation `conversation_id`, made now unless it exists (a create processed again after
    its actor's replica died); and whether this call made it (only then is its creation recorded).
    The row is returned as it stands, whoever it belongs to: the caller compares app and user."""
    async with conn.transaction():
        row = await conn.fetchrow(
            """INSERT INTO conversations (id, app_id, user_id, subject) VALUES ($1, $2, $3, $4)
               ON CONFLICT (id) DO NOTHING RETURNING *""", conversation_id, app_id, user_id, subject)
        if row is None:
            row = await conn.fetchrow("SELECT * FROM conversations WHERE id = $1", conversation_id)
            assert row is not None  # conversations are only deleted with their app or user
            return rows.conversation(row), False
        await record_user_changes(conn, [(user_id, "conversation", row["id"], None)])
        conv = rows.conversation(row)
        await record(conn, "conversation.created", app_id, {"conversation": conv}, conversation_id=row["id"],
                     user_id=user_id)
    return conv, True


async def get(conn: Conn, app_id: UUID, conversation_id: UUID) -> Conversation | None:
    row = await conn.fetchrow("SELECT * FROM conversations WHERE id = $1 AND app_id = $2", conversation_id, app_id)
    return rows.conversation(row) if row else None


async def by_ids(conn: Conn, ids: list[UUID]) -> dict[UUID, Conversation]:
    found = await conn.fetch("SELECT * FROM conversations WHERE id = ANY($1::uuid[])", ids)
    return {r["id"]: rows.conversation(r) for r in found}


async def get_for_user(conn: Conn, app_id: UUID, user_id: UUID, conversation_id: UUID) -> Conversation | None:
    row = await conn.fetchrow("SELECT * FROM conversations WHERE id = $1 AND app_id = $2 AND user_id = $3",
                              conversation_id, app_id, user_id)
    return rows.conversation(row) if row else None


async def list_for_user(conn: Conn, user_id: UUID, limit: int = 50,
                        before: Cursor | None = None) -> tuple[list[Conversation], Cursor | None]:
    """The user's conversations, most recently active first, after `before`; and the cursor of
    the next page (None at the end)."""
    found = await conn.fetch(
        """SELECT * FROM conversations
           WHERE user_id = $1 AND ($2::timestamptz IS NULL OR (updated_at, id) < ($2, $3::uuid))
           ORDER BY updated_at DESC, id DESC LIMIT $4""",
        user_id, before.updated_at if before else None, before.id if before else None, limit + 1)
    page = found[:limit]
    more = Cursor(page[-1]["updated_at"], page[-1]["id"]) if len(found) > limit else None
    return [rows.conversation(r) for r in page], more


async def list_messages(conn: Conn, conversation_id: UUID, *, before: int | None = None, after: int | None = None,
                        limit: int = 50, include_notes: bool = False) -> list[Message]:
    """Messages in seq order; `before` pages back in history, `after` pages forward."""
    if before is not None:
        found = await conn.fetch(
            """SELECT * FROM (SELECT * FROM messages WHERE conversation_id = $1 AND seq < $2 AND (is_note = false OR $4)
                   ORDER BY seq DESC LIMIT $3) m ORDER BY seq""", conversation_id, before, limit, include_notes)
    else:
        found = await conn.fetch(
            """SELECT * FROM messages WHERE conversation_id = $1 AND seq > $2 AND (is_note = false OR $4)
               ORDER BY seq LIMIT $3""", conversation_id, after or 0, limit, include_notes)
    return [rows.message(r) for r in found]


async def receipts(conn: Conn, conversation_id: UUID) -> list[Receipt]:
    found = await conn.fetch("SELECT * FROM receipts WHERE conversation_id = $1", conversation_id)
    return [rows.receipt(r) for r in found]


async def record_user_changes(conn: asyncpg.Connection,
                              changes: list[tuple[UUID, str, UUID, int | None]]) -> None:
    """Append (user_id, kind, conversation_id, message_seq) to each user's change log.

    The end_users row lock (taken in id order, so concurrent commits never deadlock) numbers a
    user's changes gaplessly in commit order.
    """
    if not changes:
        return
    counts: dict[UUID, int] = {}
    for user_id, *_ in changes:
        counts[user_id] = counts.get(user_id, 0) + 1
    ids = sorted(counts)
    await conn.execute("SELECT 1 FROM end_users WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE", ids)
    tops = await conn.fetch(
        """UPDATE end_users u SET change_seq = u.change_seq + c.n
           FROM unnest($1::uuid[], $2::int[]) AS c(id, n) WHERE u.id = c.id
           RETURNING u.id, u.change_seq""", ids, [counts[i] for i in ids])
    next_seq = {r["id"]: r["change_seq"] - counts[r["id"]] for r in tops}
    user_ids, seqs, kinds, convs, mseqs = [], [], [], [], []
    for user_id, kind, conversation_id, message_seq in changes:
        next_seq[user_id] += 1
        user_ids.append(user_id)
        seqs.append(next_seq[user_id])
        kinds.append(kind)
        convs.append(conversation_id)
        mseqs.append(message_seq)
    await conn.execute(
        """INSERT INTO user_changes (user_id, change_seq, kind, conversation_id, message_seq)
           SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::uuid[], $5::int[])""",
        user_ids, seqs, kinds, convs, mseqs)
