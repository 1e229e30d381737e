"""Admin auth REST: signup, login, refresh (rotating), logout, me, accept-invite."""

from __future__ import annotations

import msgspec
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from server.auth import admins, invitations, refresh_tokens, sessions
from server.auth.rbac import current_admin, requires
from server.auth.schemas import (
    AdminOut,
    AppName,
    AppOut,
    AuthSession,
    Body,
    Email,
    LoginPassword,
    Name,
    Ok,
    OpaqueToken,
    Password,
    session_body,
)
from server.context import context_of
from server.http.openapi import Operation, document
from server.http.payloads import decode_body
from server.http.source_address import source_address
from server.tenancy.workspaces import create_workspace

bp = Blueprint("admin_auth", url_prefix="/admin/auth")


class Signup(Body, kw_only=True):
    email: Email
    password: Password
    name: Name = ""
    app_name: AppName


class Login(Body, kw_only=True):
    email: Email
    password: LoginPassword


class RefreshRequest(Body, kw_only=True):
    refresh_token: OpaqueToken


class AcceptInvite(Body, kw_only=True):
    token: OpaqueToken
    password: Password
    name: Name | None = None


class MeAdmin(AdminOut, kw_only=True):
    permissions: list[str]


class Me(msgspec.Struct, kw_only=True):
    admin: MeAdmin
    app: AppOut


SIGNUP = Operation("POST", "/admin/auth/signup", "Create a workspace and its owner, signed in", "admin auth",
                   body=Signup, response=AuthSession, errors=(409,), status=201)
document(
    SIGNUP,
    Operation("POST", "/admin/auth/login", "Sign in with email and password", "admin auth",
              body=Login, response=AuthSession, errors=(400, 401, 422, 429),
              extra={"description": "Repeated failures are throttled per account and source address, "
                                    "per address, and per account across addresses (see README): 429 "
                                    "too_many_attempts with Retry-After."}),
    Operation("POST", "/admin/auth/refresh", "Rotate a refresh token into a new token pair", "admin auth",
              body=RefreshRequest, response=AuthSession, errors=(400, 401, 422),
              extra={"description": "Each refresh token works once. Presenting one that was already "
                                    "rotated revokes the whole session (401 refresh_token_reused)."}),
    Operation("POST", "/admin/auth/logout", "End the session a refresh token belongs to", "admin auth",
              body=RefreshRequest, response=Ok, errors=(400, 422),
              extra={"description": "The session's refresh tokens and the access tokens issued for it stop "
                                    "working at once (401 session_revoked)."}),
    Operation("GET", "/admin/auth/me", "The signed-in admin, their permissions and app", "admin auth",
              response=Me, auth="admin_jwt", errors=(401,)),
    Operation("POST", "/admin/auth/accept-invite", "Accept a team invitation: set a password, signed in",
              "admin auth", body=AcceptInvite, response=AuthSession, errors=(400, 401, 422)),
)


@bp.post("/signup")
async def signup(request: Request) -> HTTPResponse:
    body = decode_body(request, Signup)
    ctx = context_of(request)
    ws = await create_workspace(ctx.pool, app_name=body.app_name, email=body.email, password=body.password,
                                owner_name=body.name)
    row = await admins.active_by_id(ctx.pool, ws.admin_id, ws.app_id)
    assert row is not None
    await admins.record_login(ctx.pool, row.id)
    return json(msgspec.to_builtins(session_body(await sessions.start_session(ctx, row))), status=SIGNUP.status)


@bp.post("/login")
async def login(request: Request) -> HTTPResponse:
    body = decode_body(request, Login)
    tokens = await sessions.login(context_of(request), body.email, body.password, source_address(request))
    return json(msgspec.to_builtins(session_body(tokens)))


@bp.post("/refresh")
async def refresh(request: Request) -> HTTPResponse:
    body = decode_body(request, RefreshRequest)
    return json(msgspec.to_builtins(session_body(await sessions.refresh(context_of(request), body.refresh_token))))


@bp.post("/logout")
async def logout(request: Request) -> HTTPResponse:
    body = decode_body(request, RefreshRequest)
    # Same answer for unknown tokens: logout is idempotent and reveals nothing.
    await refresh_tokens.revoke_family_of(context_of(request).pool, body.refresh_token)
    return json(msgspec.to_builtins(Ok()))


@bp.get("/me")
@requires()
async def me(request: Request) -> HTTPResponse:
    p = current_admin(request)
    return json(msgspec.to_builtins(Me(
        admin=MeAdmin(id=str(p.admin_id), email=p.email, name=p.name, role=p.role,
                      permissions=sorted(p.permissions)),
        app=AppOut(id=str(p.app_id), name=p.app_name))))


@bp.post("/accept-invite")
async def accept_invite(request: Request) -> HTTPResponse:
    body = decode_body(request, AcceptInvite)
    ctx = context_of(request)
    row = await invitations.accept(ctx.pool, body.token, body.password, body.name)
    return json(msgspec.to_builtins(session_body(await sessions.start_session(ctx, row))))
