"""Usage: the `usage` consumer (daily counts from domain events), the secret-key API call
meter with its flusher, and GET /admin/api/usage. Webhook deliveries and active users are counted
by triggers of migration 034 in the transactions that write them."""

from __future__ import annotations

import asyncio

from sanic import Sanic

from server.context import AppContext
from server.usage import routes
from server.usage.api_calls import ApiCallMeter
from server.usage.consumer import UsageCounts

EVENT_CONSUMERS = (UsageCounts,)  # run by the event workers (server/events/worker_process.py)


def setup(app: Sanic, ctx: AppContext) -> None:
    app.blueprint(routes.bp)
    settings = ctx.settings
    tasks: list[asyncio.Task[None]] = []

    async def start() -> None:
        ctx.usage = ApiCallMeter(ctx.pool, ctx.redis, ctx.redis_writer)
        tasks.append(ctx.spawn(ctx.usage.run(settings.usage_flush_interval), "usage-flush"))

    async def stop() -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if getattr(ctx, "usage", None) is not None:
            await ctx.usage.close()

    ctx.lifecycle.add("usage", start, stop)
