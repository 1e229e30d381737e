"""Broadcasts: the admin routes, the scheduler that turns due occurrences into runs (every replica),
the per-broadcast actors (actors/broadcast.py) that snapshot and send the runs, the SDK's receipts,
replies and click redirect, and the broadcast-stats consumer group.

The actors set `ctx.broadcast_commands` in their own step; the scheduler reads it at each call, so
it may start first and a start it could not ask is asked again.
"""

from __future__ import annotations

from sanic import Sanic

from actors.broadcast import BroadcastCommandsClient, BroadcastHandler
from actors.runtime.host import ActorHost
from server.broadcasts import routes, sdk_routes
from server.broadcasts.stats_consumer import BroadcastStats
from server.context import AppContext
from workers.broadcast_scheduler import BroadcastScheduler

EVENT_CONSUMERS = (BroadcastStats,)  # run by the event workers (server/events/worker_process.py)


def setup(app: Sanic, ctx: AppContext) -> None:
    app.blueprint(routes.bp)
    _setup_actors(ctx)
    _setup_scheduler(ctx)
    _setup_sdk_side(app, ctx)


def _setup_actors(ctx: AppContext) -> None:
    settings = ctx.settings

    async def start() -> None:
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

    async def stop() -> None:
        if getattr(ctx, "broadcast_actors", None) is not None:
            await ctx.broadcast_actors.stop()
        if getattr(ctx, "broadcast_handler", None) is not None:
            await ctx.broadcast_handler.close()  # its runners hold pool connections

    ctx.lifecycle.add("broadcast actors", start, stop)


def _setup_scheduler(ctx: AppContext) -> None:
    async def start() -> None:
        ctx.broadcast_scheduler = BroadcastScheduler(ctx.pool, lambda: ctx.broadcast_commands,
                                                     interval_s=ctx.settings.broadcast_scheduler_interval)
        await ctx.broadcast_scheduler.start()

    async def stop() -> None:
        if getattr(ctx, "broadcast_scheduler", None) is not None:
            await ctx.broadcast_scheduler.stop()

    ctx.lifecycle.add("broadcast-scheduler", start, stop)


def _setup_sdk_side(app: Sanic, ctx: AppContext) -> None:
    """The SDK routes: receipts, replies, the click redirect (the stats consumer counts them)."""
    app.blueprint(sdk_routes.bp)
