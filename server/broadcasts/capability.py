"""Broadcasts: the per-broadcast actors (and, with the routes, the scheduler and the statistics)."""

from __future__ import annotations

from sanic import Sanic

from actors.broadcast import BroadcastCommandsClient, BroadcastHandler
from actors.runtime.host import ActorHost
from server.context import AppContext


def setup(app: Sanic, ctx: AppContext) -> None:
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

    ctx.lifecycle.add("broadcast actors", start_actors, stop_actors)
