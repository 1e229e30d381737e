"""Domain events: recorded with each change; the event workers relay them to the stream and run
every capability's consumer (server/events/worker_process.py: in a worker process beside the
replica, or inline); the admin route lists a workspace's recent events."""

from __future__ import annotations

from sanic import Sanic

from server.context import AppContext
from server.events import routes, worker_process
from server.events.counts import EventCounts
from server.platform.supervised_child import SupervisedChild

EVENT_CONSUMERS = (EventCounts,)


def setup(app: Sanic, ctx: AppContext) -> None:
    app.blueprint(routes.bp)
    settings = ctx.settings
    process: list[SupervisedChild] = []
    if settings.event_workers == "inline":
        ctx.metrics_sources.append(worker_process.inline_metrics(ctx.metrics))
    else:
        ctx.metrics_sources.append(worker_process.published_metrics(lambda: ctx.redis, settings.replica_id))

    async def start() -> None:
        if settings.event_workers == "inline":
            ctx.event_workers = worker_process.build_workers(ctx.pool, ctx.redis, settings, ctx.metrics,
                                                             ctx.event_consumers)
            for worker in ctx.event_workers:
                await worker.start()
            return
        child = worker_process.child(settings, on_restart=ctx.metrics.event_worker_restarts.inc)
        process.append(child)
        await child.start()

    async def stop() -> None:
        for child in process:
            await child.stop()
        for worker in reversed(ctx.event_workers):
            await worker.stop()

    ctx.lifecycle.add("domain events", start, stop)
