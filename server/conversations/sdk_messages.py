"""An SDK user sending a message: the one function REST and the /client socket share."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from server.conversations.models import Attachment, SendCommand, Sent
from server.conversations.requests import check_body_size
from server.conversations.service import MessagingService


async def send_as_user(service: MessagingService, app_id: UUID, user_id: str, conversation_id: str, *,
                       client_id: str, body: str, attachments: Sequence[Attachment], max_bytes: int) -> Sent:
    """Send through the conversation actor; the caller has checked the conversation is the user's.
    The actor answers a resend with the original (created=False), and refuses (409) a client_id
    another sender used: never hands the user an agent's message or note."""
    check_body_size(body, max_bytes)
    return await service.submit(SendCommand(
        conversation_id=conversation_id, app_id=str(app_id), sender_kind="user", sender_id=user_id,
        client_id=client_id, body=body, attachments=list(attachments)))
