"""The signed-in admin's own account REST: GET/PATCH /admin/api/account, POST /admin/api/account/password.

Any signed-in admin (no permission needed: it is their own account). Changing the email or the
password takes the current password: wrong is 403 wrong_password (not 401, which would mean the
session itself is gone), missing is 422 current_password_required. A new password ends the admin's
other sessions and keeps this one.
"""

from __future__ import annotations

from datetime import datetime

import msgspec
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from server.auth import account
from server.auth.admins import AdminRow
from server.auth.rbac import current_admin, requires
from server.auth.schemas import Body, Email, LoginPassword, Name, Password
from server.auth.tokens import decode_access_token
from server.context import context_of
from server.http.openapi import Operation, document
from server.http.payloads import decode_body
from server.http.source_address import source_address

bp = Blueprint("admin_account", url_prefix="/admin/api/account")


class AccountOut(msgspec.Struct, kw_only=True):
    id: str
    email: str
    name: str
    role: str
    created_at: datetime
    last_login_at: datetime | None


class AccountPatch(Body, kw_only=True):
    name: Name | None = None
    email: Email | None = None
    current_password: LoginPassword | None = None  # required when the email changes


class PasswordChange(Body, kw_only=True):
    current_password: LoginPassword
    new_password: Password


class PasswordChanged(msgspec.Struct, kw_only=True):
    ok: bool = True
    other_sessions_ended: int  # this session stays signed in


document(
    Operation("GET", "/admin/api/account", "The signed-in admin's own account", "account",
              response=AccountOut, auth="admin_jwt"),
    Operation("PATCH", "/admin/api/account", "Change your name or email (email needs current_password)",
              "account", body=AccountPatch, response=AccountOut, auth="admin_jwt", errors=(403, 409, 429),
              extra={"description": "403 wrong_password, 422 current_password_required, 409 email_taken; "
                                    "wrong passwords are throttled like sign-in (429 too_many_attempts)."}),
    Operation("POST", "/admin/api/account/password", "Change your password; your other sessions end",
              "account", body=PasswordChange, response=PasswordChanged, auth="admin_jwt", errors=(403, 429),
              extra={"description": "403 wrong_password. Every other session of this admin is signed out "
                                    "(their tokens answer 401 session_revoked); this one stays signed in."}),
)


def _out(row: AdminRow) -> AccountOut:
    return AccountOut(id=str(row.id), email=row.email, name=row.name, role=row.role, created_at=row.created_at,
                      last_login_at=row.last_login_at)


@bp.get("")
@requires()
async def get_account(request: Request) -> HTTPResponse:
    p = current_admin(request)
    assert p.admin_id is not None
    return json(msgspec.to_builtins(_out(await account.own_row(context_of(request), p.admin_id, p.app_id))))


@bp.patch("")
@requires()
async def patch_account(request: Request) -> HTTPResponse:
    body = decode_body(request, AccountPatch)
    p = current_admin(request)
    assert p.admin_id is not None
    row = await account.update(context_of(request), p.admin_id, p.app_id, name=body.name, email=body.email,
                               current_password=body.current_password, address=source_address(request))
    return json(msgspec.to_builtins(_out(row)))


@bp.post("/password")
@requires()
async def change_password(request: Request) -> HTTPResponse:
    body = decode_body(request, PasswordChange)
    ctx = context_of(request)
    p = current_admin(request)
    assert p.admin_id is not None
    # @requires checked the token; its session is the one that stays signed in.
    session_id = decode_access_token(ctx.settings.signing_key,
                                     request.headers["authorization"].partition(" ")[2].strip()).session_id
    ended = await account.change_password(ctx, p.admin_id, p.app_id, session_id,
                                          current_password=body.current_password, new_password=body.new_password,
                                          address=source_address(request))
    return json(msgspec.to_builtins(PasswordChanged(other_sessions_ended=ended)))
