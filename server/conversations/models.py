"""Wire shapes of the messaging domain (REST bodies, socket payloads, actor commands)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

# Postgres text and jsonb cannot hold NUL: refused at the edge (422), not in storage (a 503
# that a client would retry forever).
NO_NUL = r"^[^\x00]*$"

Id = Annotated[str, Meta(min_length=1, max_length=64, pattern=NO_NUL)]
ClientId = Annotated[str, Meta(min_length=1, max_length=100, pattern=NO_NUL)]
Body = Annotated[str, Meta(min_length=1, max_length=10_000, pattern=NO_NUL)]
SenderKind = Literal["user", "admin", "bot", "system"]
Status = Literal["open", "pending", "snoozed", "closed"]


class Attachment(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Metadata only: the file itself lives wherever the app uploaded it."""

    url: Annotated[str, Meta(max_length=2048, pattern=NO_NUL)]
    name: Annotated[str, Meta(max_length=255, pattern=NO_NUL)] | None = None
    content_type: Annotated[str, Meta(max_length=255, pattern=NO_NUL)] | None = None
    size: Annotated[int, Meta(ge=0)] | None = None


# What a client may send as an attachment URL: absolute http(s) with a host, so nothing a dashboard
# renders as a link can run script (javascript:, data:, vbscript:) or point at a relative path. The
# scheme in any case; no whitespace or control character anywhere (browsers drop some of them and
# would follow another URL than the one checked; the lookahead, because `$` also matches before a
# final newline).
WEB_URL = (r"^(?![\s\S]*[\x00-\x20\x7f])[Hh][Tt][Tt][Pp][Ss]?://"
           r"([^/?#\\@]*@)?"                      # user info
           r"([^/?#\\@:\[\]]+|\[[0-9A-Fa-f:.]+\])"  # host name, IPv4 or [IPv6]
           r"(:[0-9]{1,5})?([/?#].*)?$")


class NewAttachment(Attachment, kw_only=True):
    """An attachment a client sends (metadata only): `url` must be an absolute http(s) URL with a host
    and no whitespace or control characters; anything else is a 422."""

    url: Annotated[str, Meta(max_length=2048, pattern=WEB_URL)]


class Device(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    platform: Annotated[str, Meta(max_length=40, pattern=NO_NUL)] | None = None
    model: Annotated[str, Meta(max_length=100, pattern=NO_NUL)] | None = None
    os_version: Annotated[str, Meta(max_length=40, pattern=NO_NUL)] | None = None
    app_version: Annotated[str, Meta(max_length=40, pattern=NO_NUL)] | None = None
    sdk_version: Annotated[str, Meta(max_length=40, pattern=NO_NUL)] | None = None
    locale: Annotated[str, Meta(max_length=20, pattern=NO_NUL)] | None = None
    timezone: Annotated[str, Meta(max_length=60, pattern=NO_NUL)] | None = None


class Message(msgspec.Struct, kw_only=True):
    id: str
    conversation_id: str
    seq: int
    client_id: str
    sender_kind: SenderKind
    sender_id: str | None
    body: str
    attachments: list[Attachment]
    created_at: str
    is_note: bool = False


class Receipt(msgspec.Struct, kw_only=True):
    conversation_id: str
    participant_kind: Literal["user", "admin"]
    participant_id: str
    delivered_seq: int
    read_seq: int


class Conversation(msgspec.Struct, kw_only=True):
    id: str
    app_id: str
    user_id: str
    status: Status
    assignee_id: str | None
    tags: list[str]
    subject: str | None
    last_seq: int
    last_message_at: str | None
    last_message_preview: str | None
    user_unread: int
    admin_unread: int
    snoozed_until: str | None
    created_at: str
    updated_at: str


class EndUser(msgspec.Struct, kw_only=True):
    id: str
    app_id: str
    user_id: str | None
    anonymous_id: str | None
    name: str | None
    email: str | None
    attributes: dict[str, Any]
    metadata: dict[str, Any]
    first_seen_at: str
    last_seen_at: str


class Sender(msgspec.Struct, frozen=True):
    kind: SenderKind
    id: str | None


# ---- actor commands -------------------------------------------------------------

class SendCommand(msgspec.Struct, tag="send", kw_only=True):
    conversation_id: str
    app_id: str
    sender_kind: SenderKind
    sender_id: str | None
    client_id: str
    body: str
    attachments: list[Attachment] = []
    is_note: bool = False


class ReceiptCommand(msgspec.Struct, tag="receipt", kw_only=True):
    conversation_id: str
    app_id: str
    participant_kind: Literal["user", "admin"]
    participant_id: str
    delivered_seq: int | None = None
    read_seq: int | None = None


class UpdateCommand(msgspec.Struct, tag="update", kw_only=True):
    """Admin changes to a conversation: status, snooze, assignee, tags."""

    conversation_id: str
    app_id: str
    actor_id: str | None = None
    status: Status | None = None
    snoozed_until: str | None = None
    assignee_id: str | None = None
    unassign: bool = False
    add_tags: list[str] = []
    remove_tags: list[str] = []


class CreateCommand(msgspec.Struct, tag="create", kw_only=True):
    """A new conversation of `user_id`, optionally with its first message (sent by that user).
    The caller picks the id: it is the actor's key, so the create lands on the partition that will
    own the conversation, and a create processed twice (a claimed entry) makes it only once."""

    conversation_id: str
    app_id: str
    user_id: str
    subject: str | None = None
    first: SendCommand | None = None


ConversationCommand = SendCommand | ReceiptCommand | UpdateCommand | CreateCommand
ReceiptKind = Literal["delivered", "read"]


# ---- actor results ---------------------------------------------------------------

class Sent(msgspec.Struct, kw_only=True):
    """What a SendCommand answers: the stored message, and whether this command stored it
    (False: a resend, answered with the original)."""

    message: Message
    created: bool


class Created(msgspec.Struct, kw_only=True):
    """What a CreateCommand answers: the conversation (after its first message, if any)."""

    conversation: Conversation
    message: Message | None = None
