"""Who receives which realtime event: rooms of the /client and /admin namespaces.

/client: `user:{user_id}` — every device of one SDK user.
/admin:  `app:{app_id}:admins` — every agent of the app (inbox list, live chat).
Notes (is_note) never reach /client.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from server.conversations.models import Conversation, Message, Receipt
from server.platform.metrics import Metrics
from server.realtime.transport.socket_server import SocketServer

CLIENT = "/client"
ADMIN = "/admin"


def user_room(user_id: str) -> str:
    return f"user:{user_id}"


def admins_room(app_id: str) -> str:
    return f"app:{app_id}:admins"


class Fanout:
    def __init__(self, sio: SocketServer, metrics: Metrics) -> None:
        self.sio = sio
        self.metrics = metrics
        self._emit_counters: dict[str, Any] = {}  # labelled children, looked up once per event name

    async def _emit(self, event: str, data: Any, namespace: str, room: str, skip_sid: str | None = None) -> None:
        await self.sio.emit(event, data, namespace=namespace, room=room, skip_sid=skip_sid)
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
