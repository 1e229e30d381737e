"""Domain events: recorded with each change; one replica relays them to the stream, every replica
consumes (workers/event_*.py); the admin route lists a workspace's recent events."""

from __future__ import annotations

from sanic import Sanic

from server.context import AppContext
from server.events import routes
from server.events.counts import EventCounts
from workers.event_relay import EventRelay
from workers.event_retention import EventRetention
from workers.runtime.consumer_groups import ConsumerGroup


def setup(app: Sanic, ctx: AppContext) -> None:
    app.blueprint(routes.bp)
    settings = ctx.settings

    async def start() -> None:
        ctx.event_workers = [
            EventRelay(ctx.pool, ctx.redis, replica_id=settings.replica_id, metrics=ctx.metrics,
                       interval_s=settings.event_relay_interval),
            ConsumerGroup(ctx.pool, ctx.redis, EventCounts(), replica_id=settings.replica_id,
                          metrics=ctx.metrics),
            EventRetention(ctx.pool, ctx.redis, replica_id=settings.replica_id,
                           days=settings.event_retention_days),
        ]
        for worker in ctx.event_workers:
            await worker.start()

    async def stop() -> None:
        for worker in ctx.event_workers:
            await worker.stop()

    ctx.lifecycle.add("domain events", start, stop)
