"""Dashboard stats REST: what the team's home page shows at a glance."""

from __future__ import annotations

import msgspec
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from server.analytics import stats
from server.auth.rbac import current_admin, requires
from server.context import context_of
from server.conversations.admin_schemas import DashboardStats
from server.http.openapi import Operation, document

bp = Blueprint("admin_dashboard", url_prefix="/admin/api/dashboard")

document(
    Operation("GET", "/admin/api/dashboard/stats", "Open and unassigned conversations, the longest wait, replies "
              "today (UTC), median first response (conversations of the last 30 days), online users, last 14 days",
              "dashboard", response=DashboardStats, auth="admin_jwt", errors=(401, 403)),
)


@bp.get("/stats")
@requires("analytics.read")
async def dashboard_stats(request: Request) -> HTTPResponse:
    me = current_admin(request)
    ctx = context_of(request)
    async with ctx.pool.acquire() as conn:
        open_count, unassigned = await stats.counts(conn, me.app_id)
        out = DashboardStats(
            open=open_count, unassigned=unassigned, waiting_longest=await stats.waiting_longest(conn, me.app_id),
            replies_today=await stats.replies_today(conn, me.app_id),
            median_first_response_seconds=await stats.median_first_response(conn, me.app_id),
            online_users=len(await ctx.online.online_user_ids(me.app_id)),
            daily=await stats.daily(conn, me.app_id))
    return json(msgspec.to_builtins(out))
