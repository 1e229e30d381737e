"""Roles and their permissions: the roles table is the source of truth, read once per process."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import asyncpg

from server.context import AppContext

# Every permission a route or socket event may require. A typo in @requires(...) is a mypy error;
# tests check this list equals the union of the roles table's permissions.
Permission = Literal[
    "conversations.read", "conversations.reply", "conversations.assign",
    "users.read", "users.write", "broadcasts.read", "broadcasts.write",
    "workflows.read", "workflows.write", "analytics.read",
    "settings.read", "settings.write", "team.read", "team.write",
    "api_keys.read", "api_keys.write", "billing.read", "billing.write",
    "webhooks.read", "webhooks.write", "events.read", "usage.read",
]
ALL_PERMISSIONS: frozenset[str] = frozenset(get_args(Permission))


@dataclass(frozen=True)
class Role:
    name: str
    rank: int  # higher = more privileged; nobody grants a rank above their own
    permissions: frozenset[str]


async def load_roles(conn: asyncpg.Pool | asyncpg.Connection) -> dict[str, Role]:
    rows = await conn.fetch("SELECT name, rank, permissions FROM roles ORDER BY rank DESC")
    return {r["name"]: Role(r["name"], r["rank"], frozenset(r["permissions"])) for r in rows}


async def roles_of(ctx: AppContext) -> dict[str, Role]:
    """The roles, cached on the app context: they only change with a migration (and a restart)."""
    cached: dict[str, Role] | None = getattr(ctx, "roles", None)
    if cached is None:
        cached = await load_roles(ctx.pool)
        ctx.roles = cached
    return cached
