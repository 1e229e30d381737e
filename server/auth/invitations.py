"""Team invitations: an admin row without a password plus a hashed, expiring one-time token."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from server.auth import admins
from server.auth.admins import AdminRow
from server.auth.passwords import hash_password
from server.auth.rbac import AdminPrincipal
from server.auth.roles import Role
from server.auth.team import Member, check_grantable, list_members
from server.errors import Conflict, Unauthorized
from server.events.record import record

INVITE_TTL = 7 * 24 * 3600
_PREFIX = "rhq_inv_"


@dataclass(frozen=True)
class Invitation:
    member: Member
    token: str  # plaintext, returned once to the inviter
    expires_at: datetime


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
        # A newer invitation replaces any older one still open.
        await conn.execute("""UPDATE admin_invitations SET revoked_at = now()
                              WHERE admin_id = $1 AND accepted_at IS NULL AND revoked_at IS NULL""", admin_id)
        expires_at = await conn.fetchval(
            """INSERT INTO admin_invitations (app_id, admin_id, email, role, token_hash, invited_by, expires_at)
               VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7)) RETURNING expires_at""",
            actor.app_id, admin_id, email, role, _hash(token), actor.admin_id, float(INVITE_TTL))
        member = next(m for m in await list_members(conn, actor.app_id) if m.id == admin_id)
        await record(conn, "team.member_invited", actor.app_id,
                     {"invitation": {"admin_id": str(admin_id), "email": email, "role": role,
                                     "expires_at": expires_at.isoformat()}}, admin_id=actor.admin_id)
    return Invitation(member, token, expires_at)


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
