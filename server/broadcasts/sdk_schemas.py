"""What SDK clients send about a broadcast delivery (REST bodies, /client payloads) and get back."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from server.broadcasts.receipts import StateName
from server.conversations.models import NO_NUL, ClientId, Conversation, Message
from server.conversations.requests import MessageText

DeliveryIdText = Annotated[str, Meta(min_length=1, max_length=100, pattern=NO_NUL)]


class DeliveryPayload(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """`broadcast:delivered` and `broadcast:read` on /client."""

    delivery_id: DeliveryIdText


class ReplyBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    body: MessageText
    client_id: ClientId


class DeliveryState(msgspec.Struct, kw_only=True):
    delivery_id: str
    state: StateName


class Reply(msgspec.Struct, kw_only=True):
    """The conversation the reply started (or, again, the one it started before) and the reply."""

    delivery_id: str
    conversation: Conversation
    message: Message
