"""Live SDK sessions of an app, across replicas (the /client namespace keeps them in Redis)."""

from __future__ import annotations

from uuid import UUID

import redis.asyncio as aioredis

from server.realtime import sessions


class OnlineSessions:
    """What the domain sees of presence (the LiveSessions protocol of server/context.py)."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis

    async def of_app(self, app_id: UUID) -> list[sessions.SdkSession]:
        live = await sessions.live_replicas(self.redis)
        return await sessions.list_sessions(self.redis, str(app_id), live)

    async def online_user_ids(self, app_id: UUID) -> set[str]:
        return {s.user_id for s in await self.of_app(app_id)}
