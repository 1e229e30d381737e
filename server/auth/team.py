"""A workspace's team: members, role changes and removal, under the rank and last-owner rules."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from uuid import UUID

import asyncpg

from server.auth import refresh_tokens
from server.auth.rbac import AdminPrincipal
from server.auth.roles import Role
from server.errors import Conflict, Forbidden, NotFound, ValidationFailed
from server.events.record import record


@dataclass(frozen=True)
class Member:
    id: UUID
    email: str
    name: str
    role: str
    status: Literal["active", "invited"]
    created_at: datetime
    last_login_at: datetime | None
    last_active_at: datetime | None  # the last authenticated request or socket event, to the minute


_MEMBER = """SELECT id, email, name, role, created_at, last_login_at, last_active_at,
                    CASE WHEN password_hash IS NULL THEN 'invited' ELSE 'active' END AS status
             FROM admins"""


def _member(row: asyncpg.Record) -> Member:
    return Member(**dict(row))


async def list_members(conn: asyncpg.Pool | asyncpg.Connection, app_id: UUID) -> list[Member]:
    rows = await conn.fetch(f"{_MEMBER} WHERE app_id = $1 AND disabled_at IS NULL ORDER BY created_at", app_id)
    return [_member(r) for r in rows]


def check_grantable(actor: AdminPrincipal, roles: dict[str, Role], role: str) -> Role:
    """`role` exists and is not above the actor's own."""
    target = roles.get(role)
    if target is None:
        raise ValidationFailed(f"unknown role {role!r}", {"path": "$.role", "roles": sorted(roles)})
    if target.rank > actor.rank:
        raise Forbidden(f"you cannot grant the {role} role, which is above your own",
                        {"role": role}, code="role_above_own")
    return target


async def _lock_member(conn: asyncpg.Connection, actor: AdminPrincipal, admin_id: UUID,
                       roles: dict[str, Role]) -> asyncpg.Record:
    # Locking the app row serialises team changes per workspace, so two owners demoting each
    # other at once cannot leave it ownerless.
    await conn.execute("SELECT 1 FROM apps WHERE id = $1 FOR UPDATE", actor.app_id)
    row = await conn.fetchrow(f"{_MEMBER} WHERE id = $1 AND app_id = $2 AND disabled_at IS NULL",
                              admin_id, actor.app_id)
    if row is None:
        raise NotFound("no such team member", code="member_not_found")
    if roles[row["role"]].rank > actor.rank:
        raise Forbidden("you cannot change a member whose role is above your own", code="role_above_own")
    return row


async def _ensure_another_owner(conn: asyncpg.Connection, app_id: UUID, leaving: UUID) -> None:
    others = await conn.fetchval(
        """SELECT count(*) FROM admins WHERE app_id = $1 AND role = 'owner' AND disabled_at IS NULL
             AND password_hash IS NOT NULL AND id <> $2""", app_id, leaving)
    if not others:
        raise Conflict("a workspace must keep at least one owner", code="last_owner")


async def change_role(pool: asyncpg.Pool, actor: AdminPrincipal, roles: dict[str, Role], admin_id: UUID,
                      role: str) -> Member:
    check_grantable(actor, roles, role)
    async with pool.acquire() as conn, conn.transaction():
        row = await _lock_member(conn, actor, admin_id, roles)
        if row["role"] == "owner" and role != "owner":
            await _ensure_another_owner(conn, actor.app_id, admin_id)
        await conn.execute("UPDATE admins SET role = $2 WHERE id = $1", admin_id, role)
        updated = await conn.fetchrow(f"{_MEMBER} WHERE id = $1", admin_id)
        if row["role"] != role:
            await record(conn, "team.role_changed", actor.app_id,
                         {"admin_id": str(admin_id), "role": role, "previous_role": row["role"]},
                         admin_id=actor.admin_id)
    return _member(updated)


async def remove(pool: asyncpg.Pool, actor: AdminPrincipal, roles: dict[str, Role], admin_id: UUID) -> None:
    """Disable the member (their past replies keep an author) and end their sessions at once."""
    async with pool.acquire() as conn, conn.transaction():
        row = await _lock_member(conn, actor, admin_id, roles)
        if row["role"] == "owner":
            await _ensure_another_owner(conn, actor.app_id, admin_id)
        await conn.execute("UPDATE admins SET disabled_at = now() WHERE id = $1", admin_id)
        await conn.execute("UPDATE admin_invitations SET revoked_at = now() WHERE admin_id = $1 "
                           "AND accepted_at IS NULL AND revoked_at IS NULL", admin_id)
        await refresh_tokens.revoke_all_for(conn, admin_id)
        await record(conn, "team.member_removed", actor.app_id, {"admin_id": str(admin_id)}, admin_id=actor.admin_id)
