"""Broadcasts: the admin routes and the scheduler that turns due occurrences into runs (every replica).

The per-broadcast actors (actors/broadcast.py) set `ctx.broadcast_commands` in their own step; the
scheduler reads it at each call, so it may start first and a start it could not ask is asked again.
"""

from __future__ import annotations

from sanic import Sanic

from server.broadcasts import routes
from server.context import AppContext
from workers.broadcast_scheduler import BroadcastScheduler


def setup(app: Sanic, ctx: AppContext) -> None:
    app.blueprint(routes.bp)

    async def start() -> None:
        ctx.broadcast_scheduler = BroadcastScheduler(ctx.pool, lambda: ctx.broadcast_commands,
                                                     interval_s=ctx.settings.broadcast_scheduler_interval)
        await ctx.broadcast_scheduler.start()

    async def stop() -> None:
        if getattr(ctx, "broadcast_scheduler", None) is not None:
            await ctx.broadcast_scheduler.stop()

    ctx.lifecycle.add("broadcast-scheduler", start, stop)
