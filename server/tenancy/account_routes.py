"""Account settings REST: the app's name and identity verification (the secret only for settings.write)."""

from __future__ import annotations

from datetime import datetime

import msgspec
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from server.auth.rbac import AdminPrincipal, current_admin, requires
from server.auth.schemas import AppName, Body
from server.context import context_of
from server.http.openapi import Operation, document
from server.http.payloads import decode_body
from server.tenancy import apps

bp = Blueprint("admin_account", url_prefix="/admin/api/account")


class AccountOut(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: str
    name: str
    identity_verification_required: bool
    created_at: datetime
    # Signs users' user_hash: shown only to roles that may change settings (owner, admin).
    identity_secret: str | None = None


class AccountPatch(Body, kw_only=True):
    name: AppName | None = None
    identity_verification_required: bool | None = None


document(
    Operation("GET", "/admin/api/account", "The workspace's account settings", "account",
              response=AccountOut, auth="admin_jwt", errors=(401, 403)),
    Operation("PATCH", "/admin/api/account", "Rename the workspace or require identity verification",
              "account", body=AccountPatch, response=AccountOut, auth="admin_jwt", errors=(400, 401, 403, 422)),
)


def _out(account: apps.AppAccount, viewer: AdminPrincipal) -> AccountOut:
    return AccountOut(id=str(account.id), name=account.name,
                      identity_verification_required=account.identity_verification_required,
                      created_at=account.created_at,
                      identity_secret=account.identity_secret if viewer.can("settings.write") else None)


@bp.get("")
@requires("settings.read")
async def get_account(request: Request) -> HTTPResponse:
    p = current_admin(request)
    return json(msgspec.to_builtins(_out(await apps.get(context_of(request).pool, p.app_id), p)))


@bp.patch("")
@requires("settings.write")
async def patch_account(request: Request) -> HTTPResponse:
    body = decode_body(request, AccountPatch)
    p = current_admin(request)
    account = await apps.update(context_of(request).pool, p.app_id, name=body.name,
                                identity_verification_required=body.identity_verification_required)
    return json(msgspec.to_builtins(_out(account, p)))
