"""Conversations: SDK and agent routes, the conversation actors, messaging, snoozes."""

from __future__ import annotations

from sanic import Sanic

from actors.conversation import ConversationHandler
from actors.runtime.host import ActorHost
from server.broadcasts.deliveries import PendingDeliveries
from server.context import AppContext
from server.conversations import admin_routes, sdk_routes, sync_routes
from server.conversations.service import MessagingService
from workers.snoozes import SnoozeWorker


def setup(app: Sanic, ctx: AppContext) -> None:
    for bp in (sdk_routes.bp, sync_routes.bp, admin_routes.bp):
        app.blueprint(bp)
    settings = ctx.settings

    async def start() -> None:
        handler = ConversationHandler(ctx.pool, ctx.fanout, ctx.metrics,
                                      commit_workers=settings.commit_workers,
                                      state_cache_size=settings.conversation_state_cache_size)
        ctx.conversation_handler = handler
        await handler.start()
        ctx.conversation_actors = ActorHost(ctx.redis, handler, replica_id=settings.replica_id,
                                            partitions=settings.actor_partitions, writer=ctx.redis_writer,
                                            metrics=ctx.metrics)
        await ctx.conversation_actors.start()
        ctx.messaging = MessagingService(ctx.pool, ctx.conversation_actors, broadcasts=PendingDeliveries(
            ctx.pool, base_url=settings.base_url, signing_key=settings.signing_key))
        ctx.snoozes = SnoozeWorker(ctx.pool, ctx.redis, ctx.messaging,
                                   replica_id=settings.replica_id, interval_s=settings.snooze_check_interval)
        await ctx.snoozes.start()

    async def stop() -> None:
        if getattr(ctx, "snoozes", None) is not None:
            await ctx.snoozes.stop()
        if getattr(ctx, "conversation_actors", None) is not None:
            await ctx.conversation_actors.stop()
        if getattr(ctx, "conversation_handler", None) is not None:
            # Its group-commit workers hold pool connections: pool.close() would wait for them forever.
            await ctx.conversation_handler.close()

    ctx.lifecycle.add("conversations", start, stop)
