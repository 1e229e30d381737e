"""SDK user presence across replicas: `presence` {user_id, online} to the app's admins when a
user's first socket connects (on any replica) and when their last socket goes away, including
when the replica holding it dies.

One Redis hash per user, `presence:{app_id}:{user_id}`: sid -> replica. Adding or removing a sid
and counting what is left happen in one MULTI, so two replicas never both announce the change.

A replica that dies cannot remove its sids, so each process also lists the sids it added in a set
of its own, `presence:sids:{replica}:{incarnation}` (an incarnation per process: a replica restarted
under the same REPLICA_ID is a new one). Every replica reaps the sets of incarnations whose replica
stopped heartbeating (missing from two reads in a row), and a starting replica reaps its own
earlier incarnations at once. Reaping is the same MULTI as a disconnect: whichever reaper removes
a user's last sid announces them offline, and a reaper dying half way leaves the rest for the next.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from server.realtime import sessions
from server.realtime.fanout import ADMIN, admins_room
from server.realtime.transport.socket_server import SocketServer

log = logging.getLogger("replyhq.presence")
TTL_SECONDS = 86_400  # a user hash outlives no connect by more than a day, whatever happens
INCARNATIONS_KEY = "presence:incarnations"  # members "{replica} {random hex}"; rsplit finds the replica
REAP_INTERVAL_S = 2.0
_SCAN_COUNT = 500


def presence_key(app_id: str, user_id: str) -> str:
    return f"presence:{app_id}:{user_id}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _sids_key(incarnation: str) -> str:
    return f"presence:sids:{incarnation.replace(' ', ':')}"


class Presence:
    def __init__(self, redis: aioredis.Redis, sio: SocketServer, replica_id: str) -> None:
        self.redis = redis
        self.sio = sio
        self.replica_id = replica_id
        self.incarnation = f"{replica_id} {uuid.uuid4().hex[:12]}"
        self._sids = _sids_key(self.incarnation)
        self._suspects: set[str] = set()  # incarnations missing from the last round's heartbeats

    async def start(self) -> None:
        """Register this process, then reap what earlier processes of this replica left. Call it
        after the replica heartbeats (its actor host started), before it serves sockets: an
        incarnation listed here always belongs to a replica other replicas have seen alive."""
        await self.redis.sadd(INCARNATIONS_KEY, self.incarnation)
        for member in await self.redis.smembers(INCARNATIONS_KEY):
            incarnation = _text(member)
            if incarnation != self.incarnation and incarnation.rsplit(" ", 1)[0] == self.replica_id:
                await self.reap(incarnation)

    async def connected(self, app_id: str, user_id: str, sid: str) -> None:
        key = presence_key(app_id, user_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, sid, self.replica_id)
            pipe.hlen(key)
            pipe.expire(key, TTL_SECONDS)
            pipe.sadd(self._sids, f"{app_id} {user_id} {sid}")
            _, count, _, _ = await pipe.execute()
        if count == 1:
            await self._announce(app_id, user_id, True)

    async def disconnected(self, app_id: str, user_id: str, sid: str) -> None:
        """The socket is gone: out of presence and of the app's live sessions (`sessions:list`)."""
        await self._remove(self._sids, app_id, user_id, sid)

    async def _remove(self, sids_key: str, app_id: str, user_id: str, sid: str) -> None:
        key = presence_key(app_id, user_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(key, sid)
            pipe.hlen(key)
            pipe.srem(sids_key, f"{app_id} {user_id} {sid}")
            pipe.hdel(sessions.sessions_key(app_id), sid)
            removed, count, _, _ = await pipe.execute()
        if removed and count == 0:
            await self._announce(app_id, user_id, False)

    async def _announce(self, app_id: str, user_id: str, online: bool) -> None:
        await self.sio.emit("presence", {"user_id": user_id, "online": online}, namespace=ADMIN,
                            room=admins_room(app_id))

    async def reap(self, incarnation: str) -> int:
        """Remove every sid a dead process left (announcing users with none left as offline);
        returns how many it removed."""
        key = _sids_key(incarnation)
        removed = 0
        while True:
            batch: Any = await self.redis.srandmember(key, _SCAN_COUNT)
            if not batch:
                break
            for entry in batch:
                try:
                    app_id, user_id, sid = _text(entry).split(" ", 2)
                except ValueError:
                    await self.redis.srem(key, entry)
                    continue
                await self._remove(key, app_id, user_id, sid)
                removed += 1
        await self.redis.srem(INCARNATIONS_KEY, incarnation)
        if removed:
            log.info("reaped %d sockets of %s", removed, incarnation)
        return removed

    async def reap_dead(self) -> int:
        """Reap the incarnations whose replica was missing from the heartbeats in this round and
        in the previous one, while this replica's own heartbeat was there both times.

        One missing read is not enough: after Redis comes back from a restart (or the whole
        cluster stalls) every heartbeat is stale until each replica's next tick, and reaping then
        would show every connected user offline.
        """
        # Incarnations first: one registered before this read had its replica heartbeating
        # already, so the live set read next contains it unless it died since.
        members = await self.redis.smembers(INCARNATIONS_KEY)
        live = await sessions.live_replicas(self.redis)
        if self.replica_id not in live:  # our own view is stale: judge nobody this round
            self._suspects = set()
            return 0
        missing = {i for i in map(_text, members) if i.rsplit(" ", 1)[0] not in live}
        confirmed, self._suspects = missing & self._suspects, missing
        removed = 0
        for incarnation in confirmed:
            removed += await self.reap(incarnation)
        return removed

    async def run_reaper(self, interval_s: float = REAP_INTERVAL_S) -> None:
        """reap_dead() every `interval_s` until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.reap_dead()
            except (RedisError, OSError) as exc:  # Redis away: the next round tries again
                log.warning("presence reaping failed: %s", exc)

    async def stop(self) -> None:
        """On a clean shutdown: whatever sockets are still listed go offline now."""
        await self.reap(self.incarnation)
