"""End users: SDK identity (API key + user) with its rate limits, and the SDK and admin user routes."""

from __future__ import annotations

from sanic import Sanic

from server.context import AppContext
from server.http.sdk_limits import SdkLimits
from server.platform.rate_limits import WindowCounters
from server.users import admin_routes, sdk_routes
from server.users.identity import SdkIdentity


def setup(app: Sanic, ctx: AppContext) -> None:
    for bp in (sdk_routes.bp, admin_routes.bp):
        app.blueprint(bp)

    async def start() -> None:
        counters = WindowCounters(ctx.redis)
        ctx.spawn(counters.run(), "rate-limit-sync")
        ctx.sdk_limits = SdkLimits(ctx.settings, counters)
        ctx.sdk_identity = SdkIdentity(ctx.pool, ctx.key_verifier, ctx.key_usage, ctx.metrics)

    ctx.lifecycle.add("sdk identity", start)
