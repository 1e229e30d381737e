"""Wire shapes of the admin inbox API: REST bodies, /admin socket payloads, responses."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from server.conversations.models import NO_NUL, ClientId, Conversation, EndUser, Id, Message, Receipt, Status

# Strings refuse NUL (Postgres text cannot hold it): NO_NUL, or \x00 excluded from their own pattern.
MessageText = Annotated[str, Meta(min_length=1, max_length=1_000_000, pattern=NO_NUL)]  # bytes: check_body_size
Tag = Annotated[str, Meta(min_length=1, max_length=50, pattern=r"^[^\s,\x00][^,\x00]*$")]
Tags = Annotated[list[Tag], Meta(max_length=20)]
Seq = Annotated[int, Meta(ge=0, le=2_147_483_647)]


class _Body(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Unknown fields are an error, not silently dropped."""


# ---- REST bodies ---------------------------------------------------------------------------

class ReplyBody(_Body):
    client_id: ClientId
    body: MessageText


class AssignBody(_Body):
    assignee_id: Id | None  # null unassigns; must be given either way


class StatusBody(_Body):
    status: Status
    # ISO 8601 with a zone; required (and only allowed) with "snoozed"
    snoozed_until: Annotated[str, Meta(max_length=64, pattern=NO_NUL)] | None = None


class TagsBody(_Body):
    add: Tags = []
    remove: Tags = []


class ReadBody(_Body):
    seq: Seq


# ---- /admin socket payloads ------------------------------------------------------------------

class NoPayload(_Body):
    """The payload of an event that takes none: absent, null or {} (anything else is a 422)."""


class ConversationRef(_Body):
    conversation_id: Id


class SocketSend(_Body):
    conversation_id: Id
    client_id: ClientId
    body: MessageText
    is_note: bool = False


class SocketRead(_Body):
    conversation_id: Id
    seq: Seq


# ---- responses -------------------------------------------------------------------------------

class UserSummary(msgspec.Struct, kw_only=True):
    """Enough of the user to label a conversation in the inbox list."""

    id: str
    user_id: str | None
    anonymous_id: str | None
    name: str | None
    email: str | None
    device: dict[str, Any]
    last_seen_at: str


class InboxConversation(Conversation, kw_only=True):
    user: UserSummary


class ConversationPage(msgspec.Struct, kw_only=True):
    conversations: list[InboxConversation]
    next_cursor: str | None  # pass as ?cursor= for the next page; null at the end


class ConversationDetail(msgspec.Struct, kw_only=True):
    conversation: Conversation
    user: EndUser
    messages: list[Message]  # ascending seq, notes included
    has_more: bool  # older messages exist: page back with ?before=<first seq>
    receipts: list[Receipt]


class AdminUser(EndUser, kw_only=True):
    online: bool
    conversations_count: int


class UserPage(msgspec.Struct, kw_only=True):
    users: list[AdminUser]
    total: int
    next_offset: int | None


class UserDetail(msgspec.Struct, kw_only=True):
    user: AdminUser
    conversations: list[Conversation]
    sessions: list[dict[str, Any]]  # the user's live SDK sessions (device, replica, connected_at)


class WaitingConversation(msgspec.Struct, kw_only=True):
    conversation_id: str
    user_id: str
    user_name: str | None
    waiting_since: str
    age_seconds: int


class DailyCount(msgspec.Struct, kw_only=True):
    day: str  # YYYY-MM-DD (UTC)
    conversations: int
    replies: int


class DashboardStats(msgspec.Struct, kw_only=True):
    open: int
    unassigned: int
    waiting_longest: WaitingConversation | None
    replies_today: int
    median_first_response_seconds: float | None
    online_users: int
    daily: list[DailyCount]  # last 14 days, oldest first


class ReplyResult(msgspec.Struct, kw_only=True):
    message: Message


StatusFilter = Literal["open", "pending", "snoozed", "closed", "all"]
