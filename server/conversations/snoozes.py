"""SQL of snoozes: which snoozed conversations are due to reopen."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias
from uuid import UUID

import asyncpg

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool


@dataclass(frozen=True)
class DueSnooze:
    conversation_id: UUID
    app_id: UUID


async def due(conn: Conn, limit: int) -> list[DueSnooze]:
    """Snoozed conversations whose snoozed_until has passed, the longest overdue first."""
    found = await conn.fetch(
        """SELECT id, app_id FROM conversations
           WHERE status = 'snoozed' AND snoozed_until <= now()
           ORDER BY snoozed_until LIMIT $1""", limit)
    return [DueSnooze(r["id"], r["app_id"]) for r in found]


async def still_due(conn: Conn, conversation_id: UUID) -> bool:
    """Re-checked just before reopening: an agent may have changed the conversation meanwhile."""
    found = await conn.fetchval(
        "SELECT 1 FROM conversations WHERE id = $1 AND status = 'snoozed' AND snoozed_until <= now()",
        conversation_id)
    return bool(found)
