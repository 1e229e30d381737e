"""Writing events: always on the connection, inside the transaction, of the change itself."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from server.events.catalog import EVENT_TYPES

_encode = msgspec.json.Encoder().encode

INSERT_SQL = """INSERT INTO event_rows (type, app_id, conversation_id, user_id, admin_id, data)
                VALUES ($1, $2, $3, $4, $5, $6::text::json)"""


async def record(conn: asyncpg.Connection, type: str, app_id: UUID | str, data: Any, *,
                 conversation_id: UUID | str | None = None, user_id: UUID | str | None = None,
                 admin_id: UUID | str | None = None) -> None:
    """Record one event in the caller's transaction (the caller must be in one)."""
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r}: add it to server/events/catalog.py")
    if not conn.is_in_transaction():
        raise RuntimeError("an event is recorded in the transaction of its change")
    await conn.execute(INSERT_SQL, type, _uuid(app_id), _uuid(conversation_id), _uuid(user_id), _uuid(admin_id),
                       _encode(msgspec.to_builtins(data)).decode())


def _uuid(value: UUID | str | None) -> UUID | None:
    if value is None or isinstance(value, UUID):
        return value
    return UUID(value)
