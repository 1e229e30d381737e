"""What an SDK user sees of a broadcast: the `broadcast:message` payload, live or in GET /v1/sync.

A delivery is one recipient row; its id is "<run_id>.<ord>". The text is personalised for the
user, the button URL is the server's click redirect with a signed token (never the stored URL).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from server.broadcasts import click_tokens
from server.broadcasts.personalise import compile_template

MAX_PENDING = 50


class Sender(msgspec.Struct):
    id: str | None
    name: str


class Button(msgspec.Struct):
    label: str
    url: str


class BroadcastDelivery(msgspec.Struct, kw_only=True):
    delivery_id: str
    broadcast_id: str
    text: str
    sender: Sender
    button: Button | None
    sent_at: str


def delivery_id(run_id: UUID | str, ord: int) -> str:
    return f"{run_id}.{ord}"


def iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


class MessageTemplate:
    """A broadcast's message, ready to render for each recipient of a run."""

    def __init__(self, broadcast_id: str, message: Mapping[str, Any], sender_name: str | None,
                 base_url: str, signing_key: str) -> None:
        self.broadcast_id = broadcast_id
        self.text = compile_template(str(message.get("text") or ""))
        sender_id = message.get("sender_admin_id")
        self.sender = Sender(id=str(sender_id) if sender_id else None, name=sender_name or "")
        self.button_label = message.get("button_label") or None
        self.has_button = bool(message.get("button_url"))
        self.click_base = base_url.rstrip("/") + "/v1/r/"
        self.signing_key = signing_key

    def render(self, run_id: UUID | str, ord: int, user: Mapping[str, Any], sent_at: str) -> BroadcastDelivery:
        did = delivery_id(run_id, ord)
        button = None
        if self.has_button:
            button = Button(label=str(self.button_label or "Open"),
                            url=self.click_base + click_tokens.sign(self.signing_key, did))
        return BroadcastDelivery(delivery_id=did, broadcast_id=self.broadcast_id, text=self.text.render(user),
                                 sender=self.sender, button=button, sent_at=sent_at)


def _json(value: Any) -> Any:
    return msgspec.json.decode(value) if isinstance(value, (str, bytes)) else value


async def pending_for_user(conn: asyncpg.Connection | asyncpg.Pool, user_id: UUID, *, base_url: str,
                           signing_key: str, limit: int = MAX_PENDING) -> list[BroadcastDelivery]:
    """The user's deliveries sent and not yet delivered, newest first."""
    rows = await conn.fetch(
        """SELECT r.run_id, r.ord, r.sent_at, br.broadcast_id, b.message, a.name AS sender_name,
                  u.name, u.email, u.external_id, u.attributes
           FROM broadcast_recipients r
           JOIN broadcast_runs br ON br.id = r.run_id
           JOIN broadcasts b ON b.id = br.broadcast_id
           JOIN end_users u ON u.id = r.user_id
           LEFT JOIN admins a ON a.id::text = b.message ->> 'sender_admin_id'
           WHERE r.user_id = $1 AND r.state = 1
           ORDER BY r.sent_at DESC, r.ord DESC LIMIT $2""", user_id, limit)
    out = []
    for r in rows:
        template = MessageTemplate(str(r["broadcast_id"]), _json(r["message"]), r["sender_name"], base_url,
                                   signing_key)
        user = {"name": r["name"], "email": r["email"], "external_id": r["external_id"],
                "attributes": _json(r["attributes"])}
        out.append(template.render(r["run_id"], r["ord"], user, iso(r["sent_at"])))
    return out


class PendingDeliveries:
    """GET /v1/sync's `broadcasts` (server/conversations/ports.py PendingBroadcasts)."""

    def __init__(self, pool: asyncpg.Pool, *, base_url: str, signing_key: str) -> None:
        self.pool = pool
        self.base_url = base_url
        self.signing_key = signing_key

    async def for_user(self, user_id: UUID) -> list[BroadcastDelivery]:
        return await pending_for_user(self.pool, user_id, base_url=self.base_url, signing_key=self.signing_key)
