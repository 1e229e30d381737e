"""Broadcasts: the admin routes, the scheduler that turns due occurrences into runs (every replica),
and the per-broadcast actors (actors/broadcast.py) that snapshot and send the runs.

The actors set `ctx.broadcast_commands` in their own step; the scheduler reads it at each call, so
it may start first and a start it could not ask is asked again.
"""

from __future__ import annotations

from sanic import Sanic

from actors.broadcast import BroadcastCommandsClient, BroadcastHandler
from actors.runtime.host import ActorHost
from server.broadcasts import routes
from server.context import AppContext
from workers.broadcast_scheduler import BroadcastScheduler


def setup(app: Sanic, ctx: AppContext) -> None:
    app.blueprint(routes.bp)
    settings = ctx.settings

    async def start_actors() -> None:
        handler = BroadcastHandler(ctx.pool, ctx.fanout, ctx.metrics, partitions=settings.actor_partitions,
                                   batch_size=settings.broadcast_batch_size, base_url=settings.base_url,
                                   signing_key=settings.signing_key)
        ctx.broadcast_handler = handler
        await handler.start()
        ctx.broadcast_actors = ActorHost(ctx.redis, handler, replica_id=settings.replica_id,
                                         partitions=settings.actor_partitions, writer=ctx.redis_writer,
                                         metrics=ctx.metrics)
        await ctx.broadcast_actors.start()
        ctx.broadcast_commands = BroadcastCommandsClient(ctx.broadcast_actors)

    async def stop_actors() -> None:
        if getattr(ctx, "broadcast_actors", None) is not None:
            await ctx.broadcast_actors.stop()
        if getattr(ctx, "broadcast_handler", None) is not None:
            await ctx.broadcast_handler.close()  # its runners hold pool connections

    async def start_scheduler() -> None:
        ctx.broadcast_scheduler = BroadcastScheduler(ctx.pool, lambda: ctx.broadcast_commands,
                                                     interval_s=settings.broadcast_scheduler_interval)
        await ctx.broadcast_scheduler.start()

    async def stop_scheduler() -> None:
        if getattr(ctx, "broadcast_scheduler", None) is not None:
            await ctx.broadcast_scheduler.stop()

    ctx.lifecycle.add("broadcast actors", start_actors, stop_actors)
    ctx.lifecycle.add("broadcast-scheduler", start_scheduler, stop_scheduler)
