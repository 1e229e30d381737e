"""An SDK user sending a message: the one function REST and the /client socket share."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from server.conversations.models import Attachment, Message, SendCommand
from server.conversations.requests import check_body_size
from server.conversations.service import MessagingService
from server.errors import Conflict


async def send_as_user(service: MessagingService, app_id: UUID, user_id: str, conversation_id: str, *,
                       client_id: str, body: str, attachments: Sequence[Attachment], max_bytes: int) -> Message:
    """Send through the conversation actor; the caller has checked the conversation is the user's."""
    check_body_size(body, max_bytes)
    message = await service.send(SendCommand(
        conversation_id=conversation_id, app_id=str(app_id), sender_kind="user", sender_id=user_id,
        client_id=client_id, body=body, attachments=list(attachments)))
    return own_message(message, user_id)


def own_message(message: Message, user_id: str) -> Message:
    """client_id is unique per conversation, not per sender: never hand the user an agent's
    message (or note) that happens to carry the same client id."""
    if message.sender_kind != "user" or message.sender_id != user_id:
        raise Conflict("client_id is already used in this conversation", {"path": "$.client_id"},
                       code="client_id_taken")
    return message
