"""SQL of the inbox's reads over conversations: filtered, searched, keyset-paged lists."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias
from uuid import UUID

import asyncpg

from server.conversations import rows
from server.conversations.admin_schemas import InboxConversation, UserSummary
from server.http.pagination import Cursor

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool


@dataclass(frozen=True)
class InboxFilter:
    status: str | None = None  # None: every status
    assignee_id: UUID | None = None
    unassigned: bool = False
    unread: bool = False  # user messages no agent has read yet
    tag: str | None = None
    q: str | None = None  # subject, message bodies (notes included), user name / email / ids


def like_pattern(text: str) -> str:
    """A substring ILIKE pattern matching `text` literally (its % and _ escaped)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _where(app_id: UUID, f: InboxFilter) -> tuple[list[str], list[Any]]:
    args: list[Any] = [app_id]
    clauses = ["c.app_id = $1"]

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if f.status:
        clauses.append(f"c.status = {arg(f.status)}")
    if f.assignee_id is not None:
        clauses.append(f"c.assignee_id = {arg(f.assignee_id)}")
    if f.unassigned:
        clauses.append("c.assignee_id IS NULL")
    if f.unread:
        clauses.append("c.admin_unread > 0")
    if f.tag:
        clauses.append(f"c.tags @> ARRAY[{arg(f.tag)}]::text[]")
    if f.q:
        p = arg(like_pattern(f.q))
        clauses.append(
            f"""(c.subject ILIKE {p} OR u.name ILIKE {p} OR u.email ILIKE {p} OR u.external_id ILIKE {p}
                 OR EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = c.id AND m.body ILIKE {p}))""")
    return clauses, args


async def list_inbox(conn: Conn, app_id: UUID, f: InboxFilter, *, limit: int,
                     cursor: Cursor | None = None) -> tuple[list[InboxConversation], Cursor | None]:
    """The app's conversations, most recently active first; returns the page and the next cursor."""
    clauses, args = _where(app_id, f)
    if cursor is not None:
        args.extend([cursor.updated_at, cursor.id])
        clauses.append(f"(c.updated_at, c.id) < (${len(args) - 1}, ${len(args)})")
    args.append(limit + 1)
    found = await conn.fetch(
        f"""SELECT c.*, u.external_id AS u_external_id, u.anonymous_id AS u_anonymous_id, u.name AS u_name,
                   u.email AS u_email, u.metadata AS u_metadata, u.last_seen_at AS u_last_seen_at
            FROM conversations c JOIN end_users u ON u.id = c.user_id
            WHERE {" AND ".join(clauses)}
            ORDER BY c.updated_at DESC, c.id DESC LIMIT ${len(args)}""", *args)
    page = found[:limit]
    next_cursor = Cursor(page[-1]["updated_at"], page[-1]["id"]) if len(found) > limit else None
    return [inbox_conversation(r) for r in page], next_cursor


def inbox_conversation(row: Any) -> InboxConversation:
    conv = rows.conversation(row)
    user = UserSummary(id=conv.user_id, user_id=row["u_external_id"], anonymous_id=row["u_anonymous_id"],
                       name=row["u_name"], email=row["u_email"],
                       device=(row["u_metadata"] or {}).get("device") or {},
                       last_seen_at=rows.iso(row["u_last_seen_at"]) or "")
    return InboxConversation(**{f: getattr(conv, f) for f in conv.__struct_fields__}, user=user)


async def list_for_user(conn: Conn, app_id: UUID, user_id: UUID, limit: int = 100) -> list[Any]:
    found = await conn.fetch(
        "SELECT * FROM conversations WHERE app_id = $1 AND user_id = $2 ORDER BY updated_at DESC LIMIT $3",
        app_id, user_id, limit)
    return [rows.conversation(r) for r in found]


async def admin_in_app(conn: Conn, app_id: UUID, admin_id: UUID) -> bool:
    """An assignee must be an active teammate of the same app."""
    found = await conn.fetchval("SELECT 1 FROM admins WHERE id = $1 AND app_id = $2 AND disabled_at IS NULL",
                                admin_id, app_id)
    return bool(found)
