"""Who receives which realtime event: rooms of the /client and /admin namespaces.

/client: `user:{user_id}` — every device of one SDK user.
/admin:  `app:{app_id}:admins` — every agent of the app (inbox list, live chat).
Notes (is_note) never reach /client.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import redis.asyncio as aioredis

from server.conversations.models import Conversation, Message, Receipt
from server.platform.metrics import Metrics
from server.realtime import sessions
from server.realtime.transport.socket_server import SocketServer

CLIENT = "/client"
ADMIN = "/admin"


def user_room(user_id: str) -> str:
    return f"user:{user_id}"


def admins_room(app_id: str) -> str:
    return f"app:{app_id}:admins"


class Fanout:
    def __init__(self, sio: SocketServer, metrics: Metrics, *, redis: aioredis.Redis | None = None,
                 replica_id: str = "") -> None:
        self.sio = sio
        self.metrics = metrics
        self.redis = redis  # live sessions (server/realtime/sessions.py), for broadcasts
        self.replica_id = replica_id
        self._emit_counters: dict[str, Any] = {}  # labelled children, looked up once per event name

    async def _emit(self, event: str, data: Any, namespace: str, room: str, skip_sid: str | None = None,
                    local_only: bool = False) -> None:
        await self.sio.emit(event, data, namespace=namespace, room=room, skip_sid=skip_sid, ignore_queue=local_only)
        counter = self._emit_counters.get(event)
        if counter is None:
            counter = self._emit_counters[event] = self.metrics.socket_emits.labels(event)
        counter.inc()

    def published(self) -> asyncio.Future[None] | None:
        """What to wait on before telling anyone the emits made so far reached the other
        replicas (None: nothing is on its way, or a single-process manager has no others)."""
        published = getattr(self.sio.manager, "published", None)
        return published() if published is not None else None  # type: ignore[no-any-return]

    async def flush(self) -> None:
        """Wait until the emits made so far have gone out to the other replicas too."""
        flush = getattr(self.sio.manager, "flush", None)  # a single-process manager has nothing to send
        if flush is not None:
            await flush()

    async def message_new(self, app_id: str, user_id: str, message: Message) -> None:
        data = msgspec.to_builtins(message)
        if not message.is_note:
            await self._emit("message:new", data, CLIENT, user_room(user_id))
        await self._emit("message:new", {**data, "user_id": user_id}, ADMIN, admins_room(app_id))

    async def conversation(self, event: str, conversation: Conversation) -> None:
        data = msgspec.to_builtins(conversation)
        await self._emit(event, data, CLIENT, user_room(conversation.user_id))
        await self._emit(event, data, ADMIN, admins_room(conversation.app_id))

    async def receipt(self, app_id: str, user_id: str, receipt: Receipt) -> None:
        data = msgspec.to_builtins(receipt)
        await self._emit("receipt:updated", data, CLIENT, user_room(user_id))
        await self._emit("receipt:updated", data, ADMIN, admins_room(app_id))

    async def typing(self, app_id: str, user_id: str, conversation_id: str, who: dict[str, Any], typing: bool,
                     skip_sid: str | None = None) -> None:
        data = {"conversation_id": conversation_id, "typing": typing, **who}
        if who.get("sender_kind") != "user":
            await self._emit("typing", data, CLIENT, user_room(user_id))
        else:
            await self._emit("typing", data, CLIENT, user_room(user_id), skip_sid=skip_sid)
        await self._emit("typing", {**data, "user_id": user_id}, ADMIN, admins_room(app_id), skip_sid=skip_sid)

    # ---- broadcasts (server/broadcasts/ports.py BroadcastFanout) --------------------------------
    async def online_users(self, app_id: str) -> dict[str, bool]:
        """The app's connected SDK users: user id -> whether a socket of theirs is on another replica."""
        if self.redis is None:
            return {}
        live = await sessions.live_replicas(self.redis)
        users: dict[str, bool] = {}
        for s in await sessions.list_sessions(self.redis, app_id, live):
            users[s.user_id] = users.get(s.user_id, False) or s.replica != self.replica_id
        return users

    async def broadcast_message(self, user_id: str, payload: dict[str, Any], *, remote: bool) -> None:
        """Local sockets first; the other replicas' fan-out only for a user connected there."""
        await self._emit("broadcast:message", payload, CLIENT, user_room(user_id), local_only=not remote)

    async def broadcast_progress(self, app_id: str, progress: dict[str, Any]) -> None:
        await self._emit("broadcast:progress", progress, ADMIN, admins_room(app_id))
