"""Live SDK sessions in Redis, so admins on any replica can list them (`sessions:list`).

One hash per app, `sessions:{app_id}`: sid -> JSON {sid, replica, user_id, external_user_id,
anonymous_id, device, connected_at}. A socket's entry leaves with its presence
(server/realtime/presence.py), on disconnect or when the reaper clears a dead replica's sockets;
listing also keeps only entries of replicas still heartbeating in the actor runtime's membership
set (and prunes the rest).
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
import redis.asyncio as aioredis

REPLICAS_KEY = "actors:conversation:replicas"  # actors/runtime/leases.py: member -> last heartbeat (ms)
REPLICA_TTL_MS = 4000  # twice the lease TTL: what actors/runtime/leases.py itself treats as alive


class SdkSession(msgspec.Struct, kw_only=True):
    sid: str
    replica: str
    user_id: str
    external_user_id: str | None
    anonymous_id: str | None
    device: dict[str, Any]
    connected_at: str


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(SdkSession).decode


def sessions_key(app_id: str) -> str:
    return f"sessions:{app_id}"


async def register(redis: aioredis.Redis, app_id: str, session: SdkSession) -> None:
    await redis.hset(sessions_key(app_id), session.sid, _encode(session))


async def live_replicas(redis: aioredis.Redis) -> set[str]:
    now_ms = int(time.time() * 1000)
    members: list[Any] = await redis.zrangebyscore(REPLICAS_KEY, now_ms - REPLICA_TTL_MS, "+inf")
    return {m.decode() if isinstance(m, bytes) else str(m) for m in members}


async def list_sessions(redis: aioredis.Redis, app_id: str, live: set[str]) -> list[SdkSession]:
    """The app's sessions on live replicas, oldest first; entries of dead replicas are pruned."""
    raw = await redis.hgetall(sessions_key(app_id))
    alive: list[SdkSession] = []
    dead: list[Any] = []
    for sid, data in raw.items():
        try:
            session = _decode(data)
        except msgspec.DecodeError:
            dead.append(sid)
            continue
        if session.replica in live:
            alive.append(session)
        else:
            dead.append(sid)
    if dead:
        await redis.hdel(sessions_key(app_id), *dead)
    return sorted(alive, key=lambda s: s.connected_at)
