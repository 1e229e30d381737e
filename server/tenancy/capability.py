"""Tenancy: workspaces (settings, identity secret, branding and the SDK's app config) and API keys
(checks, changes across replicas, last use)."""

from __future__ import annotations

import asyncio

from sanic import Sanic

from server.context import AppContext
from server.tenancy import api_key_routes, branding_routes, sdk_config_routes, workspace_routes
from server.tenancy.key_checks import KeyChanges, KeyVerifier
from server.tenancy.key_usage import KeyUsage


def setup(app: Sanic, ctx: AppContext) -> None:
    for bp in (api_key_routes.bp, workspace_routes.bp, branding_routes.bp, sdk_config_routes.bp):
        app.blueprint(bp)
    tasks: list[asyncio.Task[None]] = []

    async def start() -> None:
        ctx.key_usage = KeyUsage(ctx.pool)
        tasks.append(ctx.spawn(ctx.key_usage.run(), "key-usage"))
        ctx.key_verifier = KeyVerifier(ctx.pool, legacy=ctx.settings.legacy_auth)
        ctx.key_changes = KeyChanges(ctx.redis, f"{ctx.settings.socketio_channel}:api-keys", ctx.key_verifier)
        subscribed = asyncio.Event()
        tasks.append(ctx.spawn(ctx.key_changes.run(subscribed), "api-key-changes"))
        await asyncio.wait_for(subscribed.wait(), 10)  # no change published meanwhile is missed

    async def stop() -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if getattr(ctx, "key_usage", None) is not None:
            await ctx.key_usage.flush()  # the uses seen since the last flush

    ctx.lifecycle.add("api keys", start, stop)
