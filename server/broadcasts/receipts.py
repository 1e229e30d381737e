"""Receipts of one recipient's delivery from the SDK: its state moving forward (delivered, read), the
first click and the reply's conversation, each with its per-recipient event in the same transaction.

A delivery id is "<run_id>.<ord>". Only the user it was sent to sees it: another user's or another
app's delivery, one not sent yet (queued) or one that failed, and a malformed id are all 404.
State only moves forward (1 sent -> 2 delivered -> 3 read; read implies delivered); a repeat or a
step back is a successful no-op that records nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Final, Literal
from uuid import UUID

import asyncpg

from server.errors import NotFound
from server.events.record import record

SENT: Final = 1
DELIVERED: Final = 2
READ: Final = 3
StateName = Literal["sent", "delivered", "read"]
STATE_NAMES: dict[int, StateName] = {SENT: "sent", DELIVERED: "delivered", READ: "read"}
_EVENTS = {DELIVERED: "broadcast.message_delivered", READ: "broadcast.message_read"}
_ORD_MAX = 2**63 - 1
# The reply's conversation id is derived from the delivery: two replies racing (or a retry after a
# lost answer) ask the conversation actor to create the same conversation, which it makes once.
_REPLY_NAMESPACE = UUID("5f0c3a52-8d1e-4c61-9a57-2b6f1e0d4c3b")


@dataclass(frozen=True)
class DeliveryId:
    run_id: UUID
    ord: int

    def __str__(self) -> str:
        return f"{self.run_id}.{self.ord}"

    @property
    def reply_conversation_id(self) -> UUID:
        return uuid.uuid5(_REPLY_NAMESPACE, str(self))


@dataclass(frozen=True)
class Delivery:
    id: DeliveryId
    app_id: UUID
    broadcast_id: UUID
    user_id: UUID
    state: int
    conversation_id: UUID | None


def not_found() -> NotFound:
    return NotFound("delivery not found", code="delivery_not_found")


def parse(delivery_id: str) -> DeliveryId:
    """"<run_id>.<ord>", or 404 (a malformed id is no delivery at all)."""
    run, _, ord_text = delivery_id.partition(".")
    try:
        run_id = UUID(run)
    except ValueError:
        raise not_found() from None
    if not ord_text.isascii() or not ord_text.isdigit() or not 1 <= len(ord_text) <= 19 or \
            not 0 < int(ord_text) <= _ORD_MAX:
        raise not_found()
    return DeliveryId(run_id, int(ord_text))


_LOCK_SQL = """
SELECT r.state, r.user_id, r.conversation_id, br.app_id, br.broadcast_id
FROM broadcast_recipients r JOIN broadcast_runs br ON br.id = r.run_id
WHERE r.run_id = $1 AND r.ord = $2 AND r.user_id = $3 AND br.app_id = $4 AND r.state BETWEEN 1 AND 3
FOR UPDATE OF r
"""


async def _mine(conn: asyncpg.Connection, app_id: UUID, user_id: UUID, did: DeliveryId) -> Delivery:
    """The user's sent delivery, locked for the transaction, or 404."""
    row = await conn.fetchrow(_LOCK_SQL, did.run_id, did.ord, user_id, app_id)
    if row is None:
        raise not_found()
    return Delivery(did, row["app_id"], row["broadcast_id"], row["user_id"], row["state"], row["conversation_id"])


def _data(d: Delivery, **more: object) -> dict[str, object]:
    return {"broadcast_id": str(d.broadcast_id), "run_id": str(d.id.run_id), "delivery_id": str(d.id), **more}


async def advance(pool: asyncpg.Pool, app_id: UUID, user_id: UUID, delivery_id: str,
                  to: Literal[2, 3]) -> StateName:
    """Move the user's delivery forward to `to` (delivered or read); the state it is in afterwards.
    The event carries `from_state`, so the statistics know whether a read also counts as delivered."""
    did = parse(delivery_id)
    async with pool.acquire() as conn, conn.transaction():
        d = await _mine(conn, app_id, user_id, did)
        if d.state >= to:
            return STATE_NAMES[d.state]
        await conn.execute(
            """UPDATE broadcast_recipients SET state = $3::smallint, delivered_at = coalesce(delivered_at, now()),
                      read_at = CASE WHEN $3::smallint = 3 THEN coalesce(read_at, now()) ELSE read_at END
               WHERE run_id = $1 AND ord = $2 AND state < $3::smallint""", did.run_id, did.ord, to)
        await record(conn, _EVENTS[to], d.app_id, _data(d, from_state=d.state), user_id=d.user_id)
    return STATE_NAMES[to]


async def mine(pool: asyncpg.Pool, app_id: UUID, user_id: UUID, delivery_id: str) -> Delivery:
    """The user's delivery (not locked), or 404."""
    did = parse(delivery_id)
    async with pool.acquire() as conn, conn.transaction():
        return await _mine(conn, app_id, user_id, did)


async def link_reply(pool: asyncpg.Pool, d: Delivery, conversation_id: UUID) -> bool:
    """Record that the reply started `conversation_id`: once (True), never again (False)."""
    async with pool.acquire() as conn, conn.transaction():
        linked = await conn.fetchval(
            """UPDATE broadcast_recipients SET conversation_id = $3, replied_at = now()
               WHERE run_id = $1 AND ord = $2 AND replied_at IS NULL RETURNING true""",
            d.id.run_id, d.id.ord, conversation_id)
        if linked:
            await record(conn, "broadcast.message_replied", d.app_id,
                         _data(d, conversation_id=str(conversation_id)), user_id=d.user_id,
                         conversation_id=conversation_id)
    return bool(linked)


async def click(pool: asyncpg.Pool, delivery_id: str) -> str:
    """The broadcast's stored button URL for a signed delivery id, the first click recorded; 404
    when the delivery is gone or its message has no button."""
    did = parse(delivery_id)
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """SELECT r.user_id, r.clicked_at, br.app_id, br.broadcast_id, b.message->>'button_url' AS url
               FROM broadcast_recipients r JOIN broadcast_runs br ON br.id = r.run_id
                    JOIN broadcasts b ON b.id = br.broadcast_id
               WHERE r.run_id = $1 AND r.ord = $2""", did.run_id, did.ord)
        url = row["url"] if row is not None else None
        if not url or not url.startswith(("https://", "http://")):  # stored checked; never anything else
            raise not_found()
        if row["clicked_at"] is None:
            first = await conn.fetchval(
                """UPDATE broadcast_recipients SET clicked_at = now()
                   WHERE run_id = $1 AND ord = $2 AND clicked_at IS NULL RETURNING true""", did.run_id, did.ord)
            if first:
                d = Delivery(did, row["app_id"], row["broadcast_id"], row["user_id"], 0, None)
                await record(conn, "broadcast.message_clicked", d.app_id, _data(d), user_id=d.user_id)
        return str(url)
