"""Webhooks: the admin routes; the `webhooks` consumer group that turns events into deliveries; a
dispatcher on every replica that sends them (workers/webhook_dispatch.py)."""

from __future__ import annotations

from sanic import Sanic

from server.context import AppContext
from server.webhooks import routes
from server.webhooks.deliveries import WebhookDeliveries
from workers.webhook_dispatch import WebhookDispatcher

EVENT_CONSUMERS = (WebhookDeliveries,)  # run by the event workers (server/events/worker_process.py)


def setup(app: Sanic, ctx: AppContext) -> None:
    app.blueprint(routes.bp)
    settings = ctx.settings

    async def start() -> None:
        ctx.webhooks = WebhookDispatcher(ctx.pool, settings, metrics=ctx.metrics)
        await ctx.webhooks.start()

    async def stop() -> None:
        if getattr(ctx, "webhooks", None) is not None:
            await ctx.webhooks.stop()

    ctx.lifecycle.add("webhooks", start, stop)
