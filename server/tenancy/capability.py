"""Tenancy: workspaces (settings, identity secret, branding and the SDK's app config) and API keys."""

from __future__ import annotations

import asyncio

from sanic import Sanic

from server.context import AppContext
from server.tenancy import api_key_routes, branding_routes, sdk_config_routes, workspace_routes
from server.tenancy.key_usage import KeyUsage


def setup(app: Sanic, ctx: AppContext) -> None:
    for bp in (api_key_routes.bp, workspace_routes.bp, branding_routes.bp, sdk_config_routes.bp):
        app.blueprint(bp)
    task: asyncio.Task[None] | None = None

    async def start() -> None:
        nonlocal task
        ctx.key_usage = KeyUsage(ctx.pool)
        task = ctx.spawn(ctx.key_usage.run(), "key-usage")

    async def stop() -> None:
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await ctx.key_usage.flush()  # the uses seen since the last flush

    ctx.lifecycle.add("api key usage", start, stop)
