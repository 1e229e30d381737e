"""SDK user presence across replicas: `presence` {user_id, online} to the app's admins when a
user's first socket connects (on any replica) and when their last socket disconnects.

One Redis hash per user, `presence:{app_id}:{user_id}`: sid -> replica. Adding or removing a sid
and counting what is left happen in one MULTI, so two replicas never both announce the change.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from server.realtime.fanout import ADMIN, admins_room

TTL_SECONDS = 86_400  # a replica that died cannot clean up: stale hashes expire a day after the last connect


def presence_key(app_id: str, user_id: str) -> str:
    return f"presence:{app_id}:{user_id}"


async def connected(redis: aioredis.Redis, sio: Any, app_id: str, user_id: str, sid: str, replica: str) -> None:
    key = presence_key(app_id, user_id)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(key, sid, replica)
        pipe.hlen(key)
        pipe.expire(key, TTL_SECONDS)
        _, count, _ = await pipe.execute()
    if count == 1:
        await sio.emit("presence", {"user_id": user_id, "online": True}, namespace=ADMIN, room=admins_room(app_id))


async def disconnected(redis: aioredis.Redis, sio: Any, app_id: str, user_id: str, sid: str) -> None:
    key = presence_key(app_id, user_id)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hdel(key, sid)
        pipe.hlen(key)
        removed, count = await pipe.execute()
    if removed and count == 0:
        await sio.emit("presence", {"user_id": user_id, "online": False}, namespace=ADMIN, room=admins_room(app_id))
