"""What the edges (REST /v1, /client and /admin sockets) and workers call. Every write of a
message, receipt or conversation change, and every creation of a conversation, goes through the
conversation actor (actors/conversation.py): one path, no second way."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Literal
from uuid import UUID

import asyncpg

from server.conversations import store as conversations
from server.conversations.models import (
    Attachment,
    Conversation,
    CreateCommand,
    Created,
    EndUser,
    Message,
    Receipt,
    ReceiptCommand,
    ReceiptKind,
    SendCommand,
    Sent,
    UpdateCommand,
)
from server.conversations.ports import CommandRouter, PendingBroadcasts
from server.conversations.sync import SyncPage, changes_since
from server.errors import NotFound
from server.users import store as users


class MessagingService:
    def __init__(self, pool: asyncpg.Pool, router: CommandRouter, broadcasts: PendingBroadcasts | None = None) -> None:
        self.pool = pool
        self.router = router
        self.broadcasts = broadcasts

    # ---- users -------------------------------------------------------------------
    async def identify(self, app_id: UUID, *, external_id: str | None, anonymous_id: str | None,
                       name: str | None = None, email: str | None = None,
                       attributes: dict[str, Any] | None = None, device: dict[str, Any] | None = None) -> EndUser:
        user = await users.identify(self.pool, app_id, external_id=external_id, anonymous_id=anonymous_id,
                                    name=name, email=email, attributes=attributes, device=device)
        return user

    # ---- conversations -------------------------------------------------------------
    async def create_conversation(self, app_id: UUID, user_id: UUID, *, subject: str | None = None,
                                  first_message: tuple[str, str, Sequence[Attachment]] | None = None
                                  ) -> tuple[Conversation, Message | None]:
        """A new conversation of the user, with (optionally) its first message (client_id, body,
        attachments) from the user: one actor command, on the partition that will own it."""
        conversation_id = str(uuid.uuid4())
        first = None
        if first_message is not None:
            client_id, body, attachments = first_message
            first = SendCommand(conversation_id=conversation_id, app_id=str(app_id), sender_kind="user",
                                sender_id=str(user_id), client_id=client_id, body=body,
                                attachments=list(attachments))
        created: Created = await self.router.call(CreateCommand(
            conversation_id=conversation_id, app_id=str(app_id), user_id=str(user_id), subject=subject, first=first))
        return created.conversation, created.message

    async def conversation_for_user(self, app_id: UUID, user_id: UUID, conversation_id: str) -> Conversation:
        """The user's own conversation, or 404 (another user's or app's id looks like no id at all)."""
        conv = await conversations.get_for_user(self.pool, app_id, user_id, _uuid(conversation_id))
        if conv is None:
            raise NotFound("conversation not found", code="conversation_not_found")
        return conv

    async def conversation_for_app(self, app_id: UUID, conversation_id: str) -> Conversation:
        conv = await conversations.get(self.pool, app_id, _uuid(conversation_id))
        if conv is None:
            raise NotFound("conversation not found", code="conversation_not_found")
        return conv

    # ---- commands through the actor -------------------------------------------------
    async def submit(self, command: SendCommand) -> Sent:
        """Send a message. A resend (a client_id the conversation already holds, from the same
        sender) answers the original with created=False; another sender's client_id is a 409."""
        result: Sent = await self.router.call(command)
        return result

    async def send(self, command: SendCommand) -> Message:
        """submit(), when whether it was a resend does not matter."""
        return (await self.submit(command)).message

    async def mark(self, app_id: UUID, conversation_id: str, participant_kind: Literal["user", "admin"],
                   participant_id: str, kind: ReceiptKind, seq: int) -> Receipt:
        """Raise a participant's delivered or read high-water mark to `seq` (read implies delivered)."""
        return await self.receipt(ReceiptCommand(
            conversation_id=conversation_id, app_id=str(app_id), participant_kind=participant_kind,
            participant_id=participant_id, delivered_seq=seq if kind == "delivered" else None,
            read_seq=seq if kind == "read" else None))

    async def receipt(self, command: ReceiptCommand) -> Receipt:
        result: Receipt = await self.router.call(command)
        return result

    async def update(self, command: UpdateCommand) -> Conversation:
        result: Conversation = await self.router.call(command)
        return result

    # ---- reads ---------------------------------------------------------------------
    async def list_messages(self, conversation_id: str, *, before: int | None, after: int | None, limit: int,
                            include_notes: bool = False) -> list[Message]:
        return await conversations.list_messages(self.pool, _uuid(conversation_id), before=before, after=after,
                                                 limit=limit, include_notes=include_notes)

    async def sync(self, user_id: UUID, cursor: int, limit: int) -> SyncPage:
        page = await changes_since(self.pool, user_id, cursor, limit)
        if self.broadcasts is not None:
            page.broadcasts = list(await self.broadcasts.for_user(user_id))
        return page


def _uuid(value: str) -> UUID:
    try:
        return UUID(value)
    except (ValueError, TypeError, AttributeError):
        raise NotFound("conversation not found", code="conversation_not_found") from None
