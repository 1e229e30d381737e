"""What the edges (REST /v1, /client and /admin sockets) call. Every write of a message,
receipt or conversation change goes through the conversation actor: one path, no second way."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol
from uuid import UUID

import asyncpg

from server.conversations import store as conversations
from server.conversations.models import (
    Attachment,
    Conversation,
    EndUser,
    Message,
    Receipt,
    ReceiptCommand,
    SendCommand,
    UpdateCommand,
)
from server.conversations.sync import SyncPage, changes_since
from server.errors import NotFound
from server.realtime.fanout import Fanout
from server.users import store as users


class CommandRouter(Protocol):
    """The actor host: runs a command on the conversation's owner, returns its result."""

    async def call(self, command: SendCommand | ReceiptCommand | UpdateCommand) -> Any: ...


class MessagingService:
    def __init__(self, pool: asyncpg.Pool, router: CommandRouter, fanout: Fanout) -> None:
        self.pool = pool
        self.router = router
        self.fanout = fanout

    # ---- users -------------------------------------------------------------------
    async def identify(self, app_id: UUID, *, external_id: str | None, anonymous_id: str | None,
                       name: str | None = None, email: str | None = None,
                       attributes: dict[str, Any] | None = None, device: dict[str, Any] | None = None) -> EndUser:
        user = await users.identify(self.pool, app_id, external_id=external_id, anonymous_id=anonymous_id,
                                    name=name, email=email, attributes=attributes, device=device)
        return user

    # ---- conversations -------------------------------------------------------------
    async def create_conversation(self, app_id: UUID, user_id: UUID, *, subject: str | None = None,
                                  first_message: tuple[str, str, Sequence[Attachment]] | None = None,
                                  sender_kind: str = "user", sender_id: str | None = None
                                  ) -> tuple[Conversation, Message | None]:
        """Create a conversation, then (optionally) send its first message through the actor."""
        async with self.pool.acquire() as conn:
            conv = await conversations.create(conn, app_id, user_id, subject)
        await self.fanout.conversation("conversation:created", conv)
        await self.fanout.flush()
        message = None
        if first_message is not None:
            client_id, body, attachments = first_message
            message = await self.send(SendCommand(
                conversation_id=conv.id, app_id=str(app_id), sender_kind=sender_kind,  # type: ignore[arg-type]
                sender_id=sender_id if sender_kind != "user" else str(user_id),
                client_id=client_id, body=body, attachments=list(attachments)))
            conv = await conversations.get(self.pool, app_id, UUID(conv.id)) or conv
        return conv, message

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
    async def send(self, command: SendCommand) -> Message:
        result: Message = await self.router.call(command)
        return result

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
        return await changes_since(self.pool, user_id, cursor, limit)


def _uuid(value: str) -> UUID:
    try:
        return UUID(value)
    except (ValueError, TypeError, AttributeError):
        raise NotFound("conversation not found", code="conversation_not_found") from None
