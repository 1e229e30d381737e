"""Broadcasts: the SDK's receipts, replies and click redirect, and the broadcast-stats consumer group."""

from __future__ import annotations

from sanic import Sanic

from server.broadcasts import sdk_routes
from server.broadcasts.stats_consumer import BroadcastStats
from server.context import AppContext
from workers.runtime.consumer_groups import ConsumerGroup


def setup(app: Sanic, ctx: AppContext) -> None:
    _setup_sdk_side(app, ctx)


def _setup_sdk_side(app: Sanic, ctx: AppContext) -> None:
    """The SDK routes, and the consumer group that counts what they (and the actor) record."""
    app.blueprint(sdk_routes.bp)
    groups: list[ConsumerGroup] = []

    async def start() -> None:
        groups.append(ConsumerGroup(ctx.pool, ctx.redis, BroadcastStats(), replica_id=ctx.settings.replica_id,
                                    metrics=ctx.metrics))
        await groups[0].start()

    async def stop() -> None:
        for group in groups:
            await group.stop()

    ctx.lifecycle.add("broadcast-stats", start, stop)
