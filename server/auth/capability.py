"""Admin authentication and the team: sign-up, sessions, invitations, roles, members' last activity."""

from __future__ import annotations

import asyncio

from sanic import Sanic

from server.auth import account_routes, routes, team_routes
from server.auth.activity import AdminActivity
from server.context import AppContext


def setup(app: Sanic, ctx: AppContext) -> None:
    for bp in (routes.bp, team_routes.bp, account_routes.bp):
        app.blueprint(bp)
    task: asyncio.Task[None] | None = None

    async def start() -> None:
        nonlocal task
        ctx.admin_activity = AdminActivity(ctx.pool)
        task = ctx.spawn(ctx.admin_activity.run(), "admin-activity")

    async def stop() -> None:
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await ctx.admin_activity.flush()

    ctx.lifecycle.add("admin activity", start, stop)
