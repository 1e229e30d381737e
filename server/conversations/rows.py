"""asyncpg rows -> wire Structs (one place for timestamp and id formatting)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from server.conversations.models import Attachment, Conversation, EndUser, Message, Receipt


def iso(ts: datetime | None) -> str | None:
    return ts.isoformat().replace("+00:00", "Z") if ts is not None else None


def _s(v: Any) -> str | None:
    return str(v) if v is not None else None


def message(row: Any) -> Message:
    return Message(id=str(row["id"]), conversation_id=str(row["conversation_id"]), seq=row["seq"],
                   client_id=row["client_id"], sender_kind=row["sender_kind"], sender_id=_s(row["sender_id"]),
                   body=row["body"], attachments=msgspec.convert(row["attachments"] or [], list[Attachment]),
                   created_at=iso(row["created_at"]) or "", is_note=row["is_note"])


def conversation(row: Any) -> Conversation:
    return Conversation(
        id=str(row["id"]), app_id=str(row["app_id"]), user_id=str(row["user_id"]), status=row["status"],
        assignee_id=_s(row["assignee_id"]), tags=list(row["tags"]), subject=row["subject"],
        last_seq=row["last_seq"], last_message_at=iso(row["last_message_at"]),
        last_message_preview=row["last_message_preview"], user_unread=row["user_unread"],
        admin_unread=row["admin_unread"], snoozed_until=iso(row["snoozed_until"]),
        created_at=iso(row["created_at"]) or "", updated_at=iso(row["updated_at"]) or "")


def receipt(row: Any) -> Receipt:
    return Receipt(conversation_id=str(row["conversation_id"]), participant_kind=row["participant_kind"],
                   participant_id=str(row["participant_id"]), delivered_seq=row["delivered_seq"],
                   read_seq=row["read_seq"])


def end_user(row: Any) -> EndUser:
    return EndUser(id=str(row["id"]), app_id=str(row["app_id"]), user_id=row["external_id"],
                   anonymous_id=row["anonymous_id"], name=row["name"], email=row["email"],
                   attributes=row["attributes"] or {}, metadata=row["metadata"] or {},
                   first_seen_at=iso(row["first_seen_at"]) or "", last_seen_at=iso(row["last_seen_at"]) or "")
