"""Team invitations: an admin row without a password plus a hashed, expiring one-time token."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from server.auth import admins
from server.auth.admins import AdminRow
from server.auth.passwords import hash_password
from server.auth.rbac import AdminPrincipal
from server.auth.roles import Role
from server.auth.team import Member, check_grantable, list_members
from server.errors import Conflict, Forbidden, NotFound, Unauthorized
from server.events.record import record

INVITE_TTL = 7 * 24 * 3600
_PREFIX = "rhq_inv_"


@dataclass(frozen=True)
class Invitation:
    id: UUID
    member: Member
    token: str  # plaintext, returned once to the inviter
    expires_at: datetime


@dataclass(frozen=True)
class PendingInvitation:
    id: UUID
    admin_id: UUID
    email: str
    role: str
    created_at: datetime
    expires_at: datetime
    invited_by: UUID | None
    invited_by_email: str | None


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def invite(pool: asyncpg.Pool, actor: AdminPrincipal, roles: dict[str, Role], *, email: str, role: str,
                 name: str) -> Invitation:
    check_grantable(actor, roles, role)
    token = _PREFIX + secrets.token_urlsafe(32)
    async with pool.acquire() as conn, conn.transaction():
        existing = await conn.fetchrow(
            "SELECT id, app_id, disabled_at FROM admins WHERE lower(email) = lower($1) FOR UPDATE", email)
        if existing is not None and (existing["app_id"] != actor.app_id or existing["disabled_at"] is None):
            # Emails are one login identity across all workspaces; say no more than "taken".
            raise Conflict("an account with this email already exists", code="email_taken")
        if existing is not None:  # a removed member invited back: the same row, a fresh start
            admin_id = existing["id"]
            await conn.execute("""UPDATE admins SET disabled_at = NULL, password_hash = NULL, role = $2, name = $3
                                  WHERE id = $1""", admin_id, role, name)
        else:
            admin_id = await conn.fetchval(
                "INSERT INTO admins (app_id, email, name, role) VALUES ($1, $2, $3, $4) RETURNING id",
                actor.app_id, email, name, role)
        inv_id, expires_at = await _issue(conn, actor, admin_id, email, role, token)
        member = next(m for m in await list_members(conn, actor.app_id) if m.id == admin_id)
        await record(conn, "team.member_invited", actor.app_id,
                     {"invitation": {"id": str(inv_id), "admin_id": str(admin_id), "email": email, "role": role,
                                     "expires_at": expires_at.isoformat()}}, admin_id=actor.admin_id)
    return Invitation(inv_id, member, token, expires_at)


async def _issue(conn: asyncpg.Connection, actor: AdminPrincipal, admin_id: UUID, email: str, role: str,
                 token: str) -> tuple[UUID, datetime]:
    """A new invitation for `admin_id`; any older one still open dies (its link stops working)."""
    await conn.execute("""UPDATE admin_invitations SET revoked_at = now()
                          WHERE admin_id = $1 AND accepted_at IS NULL AND revoked_at IS NULL""", admin_id)
    row = await conn.fetchrow(
        """INSERT INTO admin_invitations (app_id, admin_id, email, role, token_hash, invited_by, expires_at)
           VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7)) RETURNING id, expires_at""",
        actor.app_id, admin_id, email, role, _hash(token), actor.admin_id, float(INVITE_TTL))
    return row["id"], row["expires_at"]


_PENDING = """SELECT i.id, i.admin_id, i.email, i.role, i.created_at, i.expires_at, i.invited_by,
                     b.email AS invited_by_email
              FROM admin_invitations i JOIN admins a ON a.id = i.admin_id
                   LEFT JOIN admins b ON b.id = i.invited_by
              WHERE i.app_id = $1 AND i.accepted_at IS NULL AND i.revoked_at IS NULL
                AND a.disabled_at IS NULL AND a.password_hash IS NULL"""


async def pending(conn: asyncpg.Pool | asyncpg.Connection, app_id: UUID) -> list[PendingInvitation]:
    """Invitations not yet accepted nor withdrawn (expired ones too: they can be resent)."""
    rows = await conn.fetch(f"{_PENDING} ORDER BY i.created_at, i.id", app_id)
    return [PendingInvitation(**dict(r)) for r in rows]


async def _lock_pending(conn: asyncpg.Connection, actor: AdminPrincipal, roles: dict[str, Role],
                        invitation_id: UUID) -> asyncpg.Record:
    await conn.execute("SELECT 1 FROM apps WHERE id = $1 FOR UPDATE", actor.app_id)
    row = await conn.fetchrow("SELECT * FROM admin_invitations WHERE id = $1 AND app_id = $2",
                              invitation_id, actor.app_id)
    if row is None:
        raise NotFound("no such invitation", code="invitation_not_found")
    still = await conn.fetchval(f"{_PENDING} AND i.id = $2", actor.app_id, invitation_id)
    if not still:
        state = "accepted" if row["accepted_at"] else "revoked" if row["revoked_at"] else "withdrawn"
        raise Conflict(f"this invitation is no longer pending ({state})", {"state": state},
                       code="invitation_not_pending")
    target = roles.get(row["role"])
    if target is not None and target.rank > actor.rank:
        raise Forbidden("you cannot manage an invitation for a role above your own", code="role_above_own")
    return row


def _about(row: asyncpg.Record, expires_at: datetime | None = None) -> dict[str, str]:
    return {"id": str(row["id"]), "admin_id": str(row["admin_id"]), "email": row["email"], "role": row["role"],
            "expires_at": (expires_at or row["expires_at"]).isoformat()}


async def resend(pool: asyncpg.Pool, actor: AdminPrincipal, roles: dict[str, Role],
                 invitation_id: UUID) -> Invitation:
    """A new link for a pending (or expired) invitation, valid INVITE_TTL again; the old link dies
    (only the new token's hash is kept). The invitation keeps its id."""
    token = _PREFIX + secrets.token_urlsafe(32)
    async with pool.acquire() as conn, conn.transaction():
        row = await _lock_pending(conn, actor, roles, invitation_id)
        expires_at = await conn.fetchval(
            """UPDATE admin_invitations SET token_hash = $2, expires_at = now() + make_interval(secs => $3)
               WHERE id = $1 RETURNING expires_at""", invitation_id, _hash(token), float(INVITE_TTL))
        member = next(m for m in await list_members(conn, actor.app_id) if m.id == row["admin_id"])
        await record(conn, "team.invitation_resent", actor.app_id, {"invitation": _about(row, expires_at)},
                     admin_id=actor.admin_id)
    return Invitation(invitation_id, member, token, expires_at)


async def revoke(pool: asyncpg.Pool, actor: AdminPrincipal, roles: dict[str, Role], invitation_id: UUID) -> None:
    """Withdraw a pending invitation: its link dies and the invited member is gone from the team."""
    async with pool.acquire() as conn, conn.transaction():
        row = await _lock_pending(conn, actor, roles, invitation_id)
        await conn.execute("UPDATE admin_invitations SET revoked_at = now() WHERE id = $1", invitation_id)
        await conn.execute("UPDATE admins SET disabled_at = now() WHERE id = $1 AND password_hash IS NULL",
                           row["admin_id"])
        await record(conn, "team.invitation_revoked", actor.app_id, {"invitation": _about(row)},
                     admin_id=actor.admin_id)


async def accept(pool: asyncpg.Pool, token: str, password: str, name: str | None) -> AdminRow:
    """Set the invited admin's password (and name); the token works once."""
    pw_hash = await asyncio.to_thread(hash_password, password)
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """SELECT i.id, i.admin_id, i.app_id FROM admin_invitations i JOIN admins a ON a.id = i.admin_id
               WHERE i.token_hash = $1 AND i.accepted_at IS NULL AND i.revoked_at IS NULL
                 AND i.expires_at > now() AND a.disabled_at IS NULL
               FOR UPDATE OF i""", _hash(token))
        if row is None:
            raise Unauthorized("this invitation is invalid, used or expired", code="invalid_invitation")
        await conn.execute("UPDATE admin_invitations SET accepted_at = now() WHERE id = $1", row["id"])
        await conn.execute("""UPDATE admins SET password_hash = $2, name = coalesce($3, name), last_login_at = now()
                              WHERE id = $1""", row["admin_id"], pw_hash, name)
        admin = await admins.active_by_id(conn, row["admin_id"], row["app_id"])
        await record(conn, "team.member_joined", row["app_id"], {"admin": {"id": str(row["admin_id"])}},
                     admin_id=row["admin_id"])
    assert admin is not None
    return admin
