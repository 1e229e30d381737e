"""Live SDK sessions of an app, across replicas (the /client namespace keeps them in Redis)."""

from __future__ import annotations

from uuid import UUID

from server.context import AppContext
from server.realtime import sessions


async def live_sessions(ctx: AppContext, app_id: UUID) -> list[sessions.SdkSession]:
    live = await sessions.live_replicas(ctx.redis)
    return await sessions.list_sessions(ctx.redis, str(app_id), live)


async def online_user_ids(ctx: AppContext, app_id: UUID) -> set[str]:
    return {s.user_id for s in await live_sessions(ctx, app_id)}
