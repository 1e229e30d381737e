"""Webhooks: the admin routes; the `webhooks` consumer group that turns events into deliveries; a
dispatcher on every replica that sends them (workers/webhook_dispatch.py)."""

from __future__ import annotations

from sanic import Sanic

from server.context import AppContext
from server.webhooks import routes
from server.webhooks.deliveries import WebhookDeliveries
from workers.runtime.consumer_groups import ConsumerGroup
from workers.webhook_dispatch import WebhookDispatcher


def setup(app: Sanic, ctx: AppContext) -> None:
    app.blueprint(routes.bp)
    settings = ctx.settings
    group: list[ConsumerGroup] = []

    async def start() -> None:
        ctx.webhooks = WebhookDispatcher(ctx.pool, settings, metrics=ctx.metrics)
        await ctx.webhooks.start()
        group.append(ConsumerGroup(ctx.pool, ctx.redis, WebhookDeliveries(), replica_id=settings.replica_id,
                                   metrics=ctx.metrics))
        await group[0].start()

    async def stop() -> None:
        for g in group:
            await g.stop()
        if getattr(ctx, "webhooks", None) is not None:
            await ctx.webhooks.stop()

    ctx.lifecycle.add("webhooks", start, stop)
