"""What SDK clients send (REST bodies and /client socket payloads), decoded at the edge.

Message bodies are limited here only loosely; the exact byte limit is the setting
`max_message_bytes` (413), checked by `check_body_size`.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta

from server.conversations.models import NO_NUL, ClientId, Device, Id, NewAttachment
from server.errors import PayloadTooLarge

ExternalId = Annotated[str, Meta(min_length=1, max_length=255, pattern=NO_NUL)]
Name = Annotated[str, Meta(max_length=255, pattern=NO_NUL)]
Email = Annotated[str, Meta(max_length=320, pattern=NO_NUL)]
Subject = Annotated[str, Meta(max_length=255, pattern=NO_NUL)]
# Loose type bound: the real limit (bytes, configurable) is check_body_size's 413.
MessageText = Annotated[str, Meta(min_length=1, max_length=1_000_000, pattern=NO_NUL)]
Attachments = Annotated[list[NewAttachment], Meta(max_length=20)]
Attributes = Annotated[dict[Annotated[str, Meta(max_length=100, pattern=NO_NUL)], Any], Meta(max_length=100)]
Seq = Annotated[int, Meta(ge=0, le=2_147_483_647)]


class _Body(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


def _nul_free(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" not in value
    if isinstance(value, dict):
        return all(_nul_free(k) and _nul_free(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_nul_free(v) for v in value)
    return True


def _check_attributes(attributes: dict[str, Any] | None) -> None:
    if attributes is not None and not _nul_free(attributes):
        raise ValueError("attributes must not contain NUL characters")  # msgspec makes this a 422


class UpdateUserBody(_Body):
    name: Name | None = None
    email: Email | None = None
    attributes: Attributes | None = None
    device: Device | None = None

    def __post_init__(self) -> None:
        _check_attributes(self.attributes)


class IdentifyBody(UpdateUserBody):
    user_id: ExternalId | None = None
    anonymous_id: ExternalId | None = None


class NewMessageBody(_Body):
    client_id: ClientId
    body: MessageText
    attachments: Attachments = []


class CreateConversationBody(_Body):
    subject: Subject | None = None
    message: NewMessageBody | None = None


class ReceiptBody(_Body):
    seq: Seq


# ---- /client socket payloads ---------------------------------------------------------

class ClientAuth(msgspec.Struct, kw_only=True):
    """Handshake auth. Unknown fields are ignored: SDKs add their own (tokens, versions)."""

    api_key: Annotated[str, Meta(min_length=1, max_length=200, pattern=NO_NUL)]
    user_id: ExternalId | None = None
    anonymous_id: ExternalId | None = None
    user_hash: Annotated[str, Meta(max_length=128, pattern=NO_NUL)] | None = None
    device: Device | None = None


class SendPayload(_Body):
    conversation_id: Id
    client_id: ClientId
    body: MessageText
    attachments: Attachments = []


class ReceiptPayload(_Body):
    conversation_id: Id
    seq: Seq


class TypingPayload(_Body):
    conversation_id: Id


class SyncPayload(_Body):
    cursor: Annotated[str, Meta(max_length=20, pattern=r"^[0-9]*$")] | Annotated[int, Meta(ge=0)] = 0
    limit: Annotated[int, Meta(ge=1, le=500)] = 200


def check_body_size(body: str, max_bytes: int) -> None:
    size = len(body.encode())
    if size > max_bytes:
        raise PayloadTooLarge(f"message body is {size} bytes; the limit is {max_bytes}",
                              {"limit": max_bytes, "size": size}, code="message_too_large")
