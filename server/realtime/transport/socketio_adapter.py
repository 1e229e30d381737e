"""Every use ReplyHQ makes of python-socketio's internals (and of bidict's, which python-socketio
keeps its rooms in), in one place; tests/test_library_adapters.py checks each against the
installed libraries.

Tested with python-socketio 5.18.x and bidict 0.24.x (pinned in pyproject.toml). python-socketio
documents its servers, namespaces, managers and the `serializer` / `client_manager` arguments;
the hooks below (methods with a leading underscore, the `rooms` and `environ` tables, a packet's
`uses_binary_events`, the pub/sub message shape) are not, and may change in any release.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import engineio
import socketio
from socketio import packet as sio_packet


def room_members(manager: socketio.AsyncManager, namespace: str, room: str) -> dict[str, str] | None:
    """sid -> Engine.IO sid of `room`'s sockets on this replica (None when there are none).

    python-socketio 5.18 keeps `manager.rooms[namespace][room]` as a `bidict` (sid <-> eio sid);
    its forward dict `_fwdm` is read as is, without the copy `dict(members)` would make on every
    emit (the fan-out's per-message path).
    """
    rooms = manager.rooms.get(namespace)
    if not rooms:
        return None
    members = rooms.get(room)
    return members._fwdm if members else None


def emit_message(manager: socketio.AsyncRedisManager, event: str, data: Any, namespace: str, room: str,
                 skip_sid: Any) -> dict[str, Any]:
    """A room emit as python-socketio 5.18's pub/sub managers publish it (AsyncPubSubManager.emit),
    so another replica's stock `_handle_emit` can deliver it: `data` is the list of arguments."""
    return {"method": "emit", "event": event, "data": data, "binary": False, "namespace": namespace,
            "room": room, "skip_sid": skip_sid, "callback": None, "host_id": manager.host_id}


def start_manager(sio: socketio.AsyncServer) -> None:
    """Start the client manager now (its pub/sub listener subscribes) rather than on the first
    Socket.IO connect, python-socketio's default: that socket could miss what is published
    meanwhile. python-socketio 5.18 tracks this in `sio.manager_initialized`."""
    if not sio.manager_initialized:
        sio.manager_initialized = True
        sio.manager.initialize()


def eio_environ(sio: socketio.AsyncServer, eio_sid: str) -> dict[str, Any]:
    """The environ of an Engine.IO connection (python-socketio 5.18's `sio.environ[eio_sid]`; the
    public `get_environ` takes a Socket.IO sid and namespace). Empty once the connection is gone."""
    environ: dict[str, Any] = sio.environ.get(eio_sid, {})
    return environ


class JsonOnlyPacket(sio_packet.Packet):
    """A Socket.IO packet class that never walks its data looking for bytes to send as
    attachments (python-socketio 5.18's `uses_binary_events` class flag). Incoming binary packets
    still decode."""

    uses_binary_events = False


class SocketServerBase(socketio.AsyncServer):
    """socketio.AsyncServer with named hooks for the private methods python-socketio 5.18 calls."""

    engineio_class: type[engineio.AsyncServer] = engineio.AsyncServer

    def _engineio_server_class(self) -> type[engineio.AsyncServer]:
        # python-socketio builds its Engine.IO server from this (in __init__ and attach).
        return self.engineio_class

    async def _handle_connect(self, eio_sid: str, namespace: str, data: Any) -> None:
        # python-socketio answers a namespace CONNECT packet here (connected or refused).
        try:
            await super()._handle_connect(eio_sid, namespace, data)
        finally:
            self.connect_answered(eio_sid)

    def connect_answered(self, eio_sid: str) -> None:
        """A namespace connect of `eio_sid` was answered (accepted or refused)."""


class RedisManagerBase(socketio.AsyncRedisManager):
    """socketio.AsyncRedisManager with named hooks for the private methods python-socketio 5.18's
    pub/sub managers call: `_redis_connect` (makes `self.redis` and `self.pubsub`), `_publish`
    (every message for the other hosts) and `_listen` (what they published)."""

    redis: Any
    pubsub: Any

    def _redis_connect(self) -> None:
        super()._redis_connect()
        self.pubsub = self.make_pubsub(self.redis)

    def make_pubsub(self, redis: Any) -> Any:
        """The PubSub the listener subscribes with, on the manager's own client `redis`."""
        return self.pubsub

    async def _publish(self, data: Any) -> Any:
        return await self.publish(data)

    async def publish(self, data: Any) -> Any:
        """Send one manager message (a dict) to the other hosts."""
        return await super()._publish(data)

    def _listen(self) -> AsyncIterator[Any]:
        return self.received(super()._listen())

    def received(self, published: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """The manager messages to handle, from what the channel delivered (`published`: the data
        of each pub/sub message). The stock handlers take a dict, or bytes of JSON."""
        return published
