"""Signing in: password check with throttling, and the access + refresh token pair a session gets."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

from server.auth import admins, login_limits, refresh_tokens
from server.auth.admins import AdminRow
from server.auth.passwords import verify_password
from server.auth.rbac import AdminPrincipal, principal_for
from server.auth.refresh_tokens import RefreshGrant
from server.auth.roles import roles_of
from server.auth.tokens import issue_access_token
from server.context import AppContext
from server.errors import Unauthorized

LIMITS = login_limits.LoginLimits()


@dataclass(frozen=True)
class SessionTokens:
    access_token: str
    refresh_token: str
    expires_in: int
    principal: AdminPrincipal


async def start_session(ctx: AppContext, row: AdminRow, rotated: RefreshGrant | None = None) -> SessionTokens:
    """Tokens for `row`: a new refresh family (session) unless a `rotated` refresh grant is passed in.
    The access token names the session, so signing out ends it too."""
    settings = ctx.settings
    role = (await roles_of(ctx))[row.role]
    if rotated is None:
        family = uuid.uuid4()
        refresh_token, _ = await refresh_tokens.issue(ctx.pool, row.id, row.app_id, settings.refresh_token_ttl,
                                                      family)
    else:
        family, refresh_token = rotated.family_id, rotated.token
    access, _ = issue_access_token(settings.signing_key, admin_id=row.id, app_id=row.app_id, role=row.role,
                                   ttl=settings.access_token_ttl, session_id=family)
    return SessionTokens(access, refresh_token, settings.access_token_ttl, principal_for(row, role))


async def login(ctx: AppContext, email: str, password: str, address: str) -> SessionTokens:
    await login_limits.check(ctx.redis, LIMITS, email, address)
    row = await admins.active_by_email(ctx.pool, email)
    # verify_password does the same Argon2 work for unknown emails: no account enumeration by timing.
    ok = await asyncio.to_thread(verify_password, row.password_hash if row else None, password)
    if not ok or row is None:
        await login_limits.record_failure(ctx.redis, LIMITS, email, address)
        raise Unauthorized("wrong email or password", code="invalid_credentials")
    await login_limits.record_success(ctx.redis, email, address)
    await admins.record_login(ctx.pool, row.id)
    return await start_session(ctx, row)


async def refresh(ctx: AppContext, presented: str) -> SessionTokens:
    grant = await refresh_tokens.rotate(ctx.pool, presented, ctx.settings.refresh_token_ttl)
    row = await admins.active_by_id(ctx.pool, grant.admin_id, grant.app_id)
    if row is None:
        raise Unauthorized("this admin account no longer exists or is disabled", code="admin_disabled")
    return await start_session(ctx, row, grant)
