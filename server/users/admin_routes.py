"""Admin users REST: the app's SDK users with device metadata, attributes, last seen and presence."""

from __future__ import annotations

from uuid import UUID

import msgspec
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from server.auth.rbac import current_admin, requires
from server.context import context_of
from server.conversations import inbox_queries as inbox_sql
from server.conversations.admin_schemas import UserDetail, UserPage
from server.errors import NotFound
from server.http.openapi import Operation, document
from server.http.query_params import int_param, text_param
from server.users import listing as users_sql

bp = Blueprint("admin_users", url_prefix="/admin/api/users")

document(
    Operation("GET", "/admin/api/users",
              "The app's users, most recently seen first, each with metadata.device (platform, model, os_version, "
              "app_version, ...), attributes, last_seen_at and online", "users", response=UserPage, auth="admin_jwt",
              errors=(401, 403, 422), params=(
                  ("q", "query", "search name, email, user id, anonymous id, device model / platform"),
                  ("offset", "query", "next_offset of the previous page"), ("limit", "query", "1..100, default 50"))),
    Operation("GET", "/admin/api/users/{user_id}", "One user with their conversations and live SDK sessions", "users",
              response=UserDetail, auth="admin_jwt", params=(("user_id", "path", "the user's id (end user id)"),),
              errors=(401, 403, 404)),
)


@bp.get("")
@requires("users.read")
async def list_users(request: Request) -> HTTPResponse:
    me = current_admin(request)
    limit = int_param(request, "limit", 50, lo=1, hi=100) or 50
    offset = int_param(request, "offset", 0, lo=0, hi=10_000_000) or 0
    q = text_param(request, "q", 200)
    ctx = context_of(request)
    found, total = await users_sql.list_users(ctx.pool, me.app_id, q=q, limit=limit, offset=offset,
                                              online=await ctx.online.online_user_ids(me.app_id))
    more = offset + len(found) < total
    return json(msgspec.to_builtins(UserPage(users=found, total=total, next_offset=offset + limit if more else None)))


@bp.get("/<user_id:str>")
@requires("users.read")
async def detail(request: Request, user_id: str) -> HTTPResponse:
    me = current_admin(request)
    ctx = context_of(request)
    try:
        uid = UUID(user_id)
    except ValueError:
        raise NotFound("user not found", code="user_not_found") from None
    sessions = [s for s in await ctx.online.of_app(me.app_id) if s.user_id == str(uid)]
    user = await users_sql.get_user(ctx.pool, me.app_id, uid, {s.user_id for s in sessions})
    if user is None:
        raise NotFound("user not found", code="user_not_found")
    convs = await inbox_sql.list_for_user(ctx.pool, me.app_id, uid)
    out = UserDetail(user=user, conversations=convs, sessions=[msgspec.to_builtins(s) for s in sessions])
    return json(msgspec.to_builtins(out))
