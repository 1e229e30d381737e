"""The one way admin REST routes and /admin socket events check a permission: @requires(...).

REST:    @bp.get("/admin/api/team") + @requires("team.read") -> request.ctx.admin is the caller.
Socket:  @requires("conversations.read") on an AdminNamespace handler (self, sid, data, *, admin): the
         namespace re-checks the socket's admin against the database before the handler runs, and
         the handler receives that principal as `admin` (one read per event).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from uuid import UUID

from sanic import Request

from server.auth import admins
from server.auth.roles import Permission, Role, roles_of
from server.auth.tokens import decode_access_token
from server.context import AppContext, context_of
from server.errors import Forbidden, Unauthorized

R = TypeVar("R")
Handler = Callable[..., Awaitable[R]]


@dataclass(frozen=True)
class AdminPrincipal:
    """Who is calling: taken from the database row (role included), not from the token's claims."""

    admin_id: UUID | None  # None only for a legacy secret-API-key socket session
    app_id: UUID
    role: str
    rank: int
    permissions: frozenset[str]
    email: str = ""
    name: str = ""
    app_name: str = ""

    def can(self, permission: Permission) -> bool:
        return permission in self.permissions

    def require(self, permission: Permission) -> None:
        if permission not in self.permissions:
            raise Forbidden(f"your role ({self.role}) lacks the {permission} permission",
                            {"permission": permission}, code="permission_denied")


def principal_for(row: admins.AdminRow, role: Role) -> AdminPrincipal:
    return AdminPrincipal(row.id, row.app_id, role.name, role.rank, role.permissions, row.email, row.name,
                          row.app_name)


async def live_admin(ctx: AppContext, admin_id: UUID, app_id: UUID, session_id: UUID) -> admins.AdminRow:
    """The admin row behind a token or socket, if the admin is still enabled in that app and the
    sign-in the token names was not signed out; one query."""
    row = await admins.active_by_id(ctx.pool, admin_id, app_id, session_id)
    if row is None:
        raise Unauthorized("this admin account no longer exists or is disabled", code="admin_disabled")
    if not row.session_live:
        raise Unauthorized("this session was signed out; sign in again", code="session_revoked")
    return row


async def authenticate_token(ctx: AppContext, token: str) -> AdminPrincipal:
    """A valid access JWT whose admin still exists, is enabled and belongs to the token's app, and whose
    session is still signed in."""
    claims = decode_access_token(ctx.settings.signing_key, token)
    row = await live_admin(ctx, claims.admin_id, claims.app_id, claims.session_id)
    roles = await roles_of(ctx)
    return principal_for(row, roles[row.role])


async def authenticate_request(request: Request) -> AdminPrincipal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send the access token as 'Authorization: Bearer <token>'", code="missing_token")
    return await authenticate_token(context_of(request), token.strip())


class SocketPrincipals(Protocol):
    """What a Socket.IO namespace offers @requires: the live principal behind a socket."""

    async def current_admin(self, sid: str) -> AdminPrincipal: ...


def requires(permission: Permission | None = None) -> Callable[[Handler[R]], Handler[R]]:
    """Authenticate the caller and check `permission` (None: any signed-in admin)."""

    def decorate(handler: Handler[R]) -> Handler[R]:
        @functools.wraps(handler)
        async def checked(*args: Any, **kwargs: Any) -> R:
            first = args[0]
            if isinstance(first, Request):
                principal = await authenticate_request(first)
                first.ctx.admin = principal
                if permission is not None:
                    principal.require(permission)
                return await handler(*args, **kwargs)
            # a namespace method (self, sid, *payload): the handler gets the principal just read
            principal = await first.current_admin(args[1])
            if permission is not None:
                principal.require(permission)
            return await handler(*args, admin=principal, **kwargs)

        checked.__permission__ = permission  # type: ignore[attr-defined]
        return checked

    return decorate


def current_admin(request: Request) -> AdminPrincipal:
    principal: AdminPrincipal = request.ctx.admin
    return principal
