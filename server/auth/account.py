"""The signed-in admin's own account: name, email, password.

Changing the email or the password takes the current password, checked with the same Argon2 work
and the same throttle as signing in (server/auth/login_limits.py): a wrong one is 403
wrong_password, and too many are 429. A new password ends every other session of the admin (their
refresh tokens, and so their access tokens, stop working); the session that changed it stays signed
in, as Intercom and Chatwoot do. Each change records its event in its transaction.
"""

from __future__ import annotations

import asyncio
from uuid import UUID

import asyncpg

from server.auth import admins, login_limits
from server.auth.admins import AdminRow
from server.auth.passwords import hash_password, verify_password
from server.context import AppContext
from server.errors import Conflict, Forbidden, NotFound, ValidationFailed
from server.events.record import record

LIMITS = login_limits.LoginLimits()


async def check_password(ctx: AppContext, row: AdminRow, password: str, address: str) -> None:
    await login_limits.check(ctx.redis, LIMITS, row.email, address)
    if not await asyncio.to_thread(verify_password, row.password_hash, password):
        await login_limits.record_failure(ctx.redis, LIMITS, row.email, address)
        raise Forbidden("the current password is wrong", {"path": "$.current_password"}, code="wrong_password")


async def own_row(ctx: AppContext, admin_id: UUID, app_id: UUID) -> AdminRow:
    row = await admins.active_by_id(ctx.pool, admin_id, app_id)
    if row is None:
        raise NotFound("no such admin")
    return row


def _public(admin_id: UUID, email: str, name: str) -> dict[str, str]:
    """The admin as events carry it."""
    return {"id": str(admin_id), "email": email, "name": name}


async def update(ctx: AppContext, admin_id: UUID, app_id: UUID, *, name: str | None, email: str | None,
                 current_password: str | None, address: str) -> AdminRow:
    row = await own_row(ctx, admin_id, app_id)
    email_changes = email is not None and email.lower() != row.email.lower()
    if email is not None and email != row.email and current_password is None:
        raise ValidationFailed("changing the email needs current_password", {"path": "$.current_password"},
                               code="current_password_required")
    if email is not None and email != row.email:
        assert current_password is not None
        await check_password(ctx, row, current_password, address)
    async with ctx.pool.acquire() as conn, conn.transaction():
        if email_changes:
            taken = await conn.fetchval(
                "SELECT 1 FROM admins WHERE lower(email) = lower($1) AND id <> $2", email, admin_id)
            if taken:
                raise Conflict("another account uses this email", {"path": "$.email"}, code="email_taken")
        try:
            new = await conn.fetchrow(
                """UPDATE admins SET name = coalesce($2, name), email = coalesce($3, email)
                   WHERE id = $1 RETURNING id, email, name""", admin_id, name, email)
        except asyncpg.UniqueViolationError:
            raise Conflict("another account uses this email", {"path": "$.email"}, code="email_taken") from None
        changes = [f for f in ("name", "email") if new[f] != getattr(row, f)]
        if changes:
            admin = _public(admin_id, new["email"], new["name"])
            await record(conn, "account.updated", app_id, {"admin": admin, "changes": changes}, admin_id=admin_id)
    return await own_row(ctx, admin_id, app_id)


async def change_password(ctx: AppContext, admin_id: UUID, app_id: UUID, session_id: UUID, *,
                          current_password: str, new_password: str, address: str) -> int:
    """Set a new password and end the admin's other sessions; returns how many were ended."""
    row = await own_row(ctx, admin_id, app_id)
    await check_password(ctx, row, current_password, address)
    await login_limits.record_success(ctx.redis, row.email, address)
    pw_hash = await asyncio.to_thread(hash_password, new_password)
    async with ctx.pool.acquire() as conn, conn.transaction():
        await conn.execute("UPDATE admins SET password_hash = $2 WHERE id = $1", admin_id, pw_hash)
        ended = await conn.fetchval(
            """WITH r AS (UPDATE admin_refresh_tokens SET revoked_at = now()
                          WHERE admin_id = $1 AND family_id <> $2 AND revoked_at IS NULL RETURNING family_id)
               SELECT count(DISTINCT family_id) FROM r""", admin_id, session_id)
        await record(conn, "account.password_changed", app_id,
                     {"admin": _public(admin_id, row.email, row.name), "other_sessions_ended": int(ended)},
                     admin_id=admin_id)
    return int(ended)
