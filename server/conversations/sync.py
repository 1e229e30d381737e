"""GET /v1/sync: everything that changed for a user after a cursor, paged."""

from __future__ import annotations

from uuid import UUID

import asyncpg
import msgspec

from server.broadcasts.deliveries import BroadcastDelivery
from server.conversations import rows
from server.conversations.models import Conversation, Message, Receipt


class SyncPage(msgspec.Struct, kw_only=True):
    conversations: list[Conversation]
    messages: list[Message]
    receipts: list[Receipt]
    cursor: str
    has_more: bool
    # Broadcast messages sent to the user and not yet delivered, newest first (at most 50), on every page.
    broadcasts: list[BroadcastDelivery] = msgspec.field(default_factory=list)


async def changes_since(conn: asyncpg.Connection | asyncpg.Pool, user_id: UUID, cursor: int,
                        limit: int = 200) -> SyncPage:
    """Cursor = the user's change number; the page holds the current state of what changed."""
    changes = await conn.fetch(
        """SELECT change_seq, kind, conversation_id, message_seq FROM user_changes
           WHERE user_id = $1 AND change_seq > $2 ORDER BY change_seq LIMIT $3""", user_id, cursor, limit + 1)
    has_more = len(changes) > limit
    changes = changes[:limit]
    if not changes:
        return SyncPage(conversations=[], messages=[], receipts=[], cursor=str(cursor), has_more=False)
    conv_ids = sorted({c["conversation_id"] for c in changes})
    msg_keys = [(c["conversation_id"], c["message_seq"]) for c in changes if c["kind"] == "message"]
    receipt_convs = sorted({c["conversation_id"] for c in changes if c["kind"] == "receipt"})
    convs = await conn.fetch("SELECT * FROM conversations WHERE id = ANY($1::uuid[]) ORDER BY updated_at", conv_ids)
    msgs = await conn.fetch(
        """SELECT m.* FROM messages m JOIN unnest($1::uuid[], $2::int[]) AS k(c, s)
           ON m.conversation_id = k.c AND m.seq = k.s ORDER BY m.conversation_id, m.seq""",
        [k[0] for k in msg_keys], [k[1] for k in msg_keys]) if msg_keys else []
    recs = await conn.fetch("SELECT * FROM receipts WHERE conversation_id = ANY($1::uuid[])",
                            receipt_convs) if receipt_convs else []
    return SyncPage(conversations=[rows.conversation(r) for r in convs],
                    messages=[rows.message(r) for r in msgs if not r["is_note"]],
                    receipts=[rows.receipt(r) for r in recs],
                    cursor=str(changes[-1]["change_seq"]), has_more=has_more)
