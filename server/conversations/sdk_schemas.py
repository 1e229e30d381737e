"""Response shapes of the /v1 SDK REST API (documented in OpenAPI)."""

from __future__ import annotations

import msgspec

from server.conversations.models import Conversation, Message


class SdkConversationPage(msgspec.Struct, kw_only=True):
    conversations: list[Conversation]
    next_cursor: str | None  # pass as ?before= for the next (older) page; null at the end


class CreatedConversation(msgspec.Struct, kw_only=True):
    conversation: Conversation
    message: Message | None


class MessagePage(msgspec.Struct, kw_only=True):
    messages: list[Message]  # ascending seq
    has_more: bool  # more messages beyond this page in the direction asked
