"""Fan-out manager: local sockets first, Redis pub/sub only to reach other replicas."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import socketio
from engineio import packet as eio_packet
from socketio import packet as sio_packet

from server.coalesce import Coalescer

log = logging.getLogger("replyhq.fanout")
PEER_GRACE_S = 5.0  # keep publishing this long after the last sight of another replica
_BATCH_MARK = b"replyhq-batch:"  # a publish carrying a JSON list of manager messages
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode


class MsgspecJson:
    """The `json` module interface python-socketio calls, backed by msgspec (faster on our payloads)."""

    @staticmethod
    def dumps(obj: Any, **_: Any) -> str:
        return _encode(obj).decode()

    @staticmethod
    def loads(data: str | bytes, **_: Any) -> Any:
        return _decode(data)


class JsonPacket(sio_packet.Packet):  # type: ignore[misc]
    """Socket.IO packets of JSON only.

    Every event ReplyHQ emits is JSON (attachments are metadata, never bytes), so the stock
    per-packet walk looking for binary values is skipped; incoming binary packets still decode.
    """

    uses_binary_events = False
    json = MsgspecJson


class ReplicaFanoutManager(socketio.AsyncRedisManager):  # type: ignore[misc]
    """python-socketio's Redis manager, with a cheaper local delivery and batched publishes.

    Local: an event is encoded once and queued straight onto each recipient's Engine.IO
    socket (the stock manager creates and awaits a task per recipient). Remote: published on
    Redis only when another replica is alive, and never one round trip per emit. Emits queue
    in an outbox that one publisher drains, everything queued meanwhile going out as a single
    PUBLISH: a Redis round trip per emit capped a replica at a few thousand emits a second and
    made every message wait for its predecessors' round trips. One publisher also keeps the
    emits in the order they were made, which concurrent publishes did not.
    """

    name = "replyhq-fanout"

    def __init__(self, url: str, channel: str, **kwargs: Any) -> None:
        super().__init__(url, channel=channel, **kwargs)
        self._peer_seen_at: float | None = None  # None: not checked yet, so assume peers
        self._outbox: Coalescer[dict[str, Any]] = Coalescer(self._publish_batch, "fanout-publisher")
        self._own_batches = _BATCH_MARK + self.host_id.encode() + b"\n"

    def has_peers(self) -> bool:
        """Whether another replica listens on the channel (or did within PEER_GRACE_S).

        Alone, an emit has reached every socket there is once the local delivery is done, and
        publishing it would only cost a Redis round trip. Subscribers are counted by Redis
        itself: a replica too busy to renew its leases is still subscribed and still served.
        """
        return self._peer_seen_at is None or time.monotonic() - self._peer_seen_at < PEER_GRACE_S

    async def watch_peers(self, redis: Any, interval_s: float = 0.25) -> None:
        """Count the channel's subscribers (PUBSUB NUMSUB) until cancelled; ours is one of them."""
        while True:
            try:
                counts = await redis.pubsub_numsub(self.channel)
                if counts and int(counts[0][1]) > 1:
                    self._peer_seen_at = time.monotonic()
                elif self._peer_seen_at is None:
                    self._peer_seen_at = time.monotonic() - PEER_GRACE_S  # checked: alone
            except Exception:  # Redis away: keep the last answer, fan-out retries on its own
                pass
            await asyncio.sleep(interval_s)

    def deliver_local(self, event: str, data: Any, namespace: str, room: str | None,
                      skip_sid: str | list[str] | None = None) -> int:
        """Queue one event for every socket of `room` on this replica; returns how many."""
        rooms = self.rooms.get(namespace)
        if not rooms or room not in rooms:
            return 0
        members = rooms[room]._fwdm
        if not members:
            return 0
        args = [event] if data is None else [event, *data] if isinstance(data, tuple | list) else [event, data]
        pkt = eio_packet.Packet(eio_packet.MESSAGE, JsonPacket(sio_packet.EVENT, namespace=namespace,
                                                              data=args).encode())
        skip = skip_sid if isinstance(skip_sid, list) else (skip_sid,)
        sockets = self.server.eio.sockets
        sent = 0
        for sid, eio_sid in list(members.items()):
            if sid in skip:
                continue
            sock = sockets.get(eio_sid)
            if sock is None or sock.closed:
                continue
            # What AsyncSocket.send does, without a task and an await per recipient.
            send_nowait = getattr(sock, "send_nowait", None)
            if send_nowait is not None:
                send_nowait(pkt)
            else:
                sock.queue.put_nowait(pkt)
            sent += 1
        return sent

    async def emit(self, event: str, data: Any, namespace: str | None = None, room: Any = None,
                   skip_sid: Any = None, callback: Any = None, to: Any = None, **kwargs: Any) -> None:
        room = to or room
        if callback is not None or room is None or not isinstance(room, str):
            # Broadcasts, callbacks and multi-room emits are rare: the stock path.
            return await super().emit(event, data, namespace=namespace, room=room, skip_sid=skip_sid,
                                      callback=callback, **kwargs)
        namespace = namespace or "/"
        self.deliver_local(event, data, namespace, room, skip_sid)
        if kwargs.get("ignore_queue") or not self.has_peers():
            return None
        payload = list(data) if isinstance(data, tuple) else [data]
        self._outbox.put({"method": "emit", "event": event, "data": payload, "binary": False,
                          "namespace": namespace, "room": room, "skip_sid": skip_sid, "callback": None,
                          "host_id": self.host_id})
        return None

    async def _handle_emit(self, message: dict[str, Any]) -> None:
        """An emit published by another replica: deliver to the sockets here."""
        room = message.get("room")
        if message.get("binary") or message.get("callback") is not None or not isinstance(room, str):
            return await super()._handle_emit(message)
        data = message["data"]
        data = data[0] if isinstance(data, list) and len(data) == 1 else tuple(data)
        self.deliver_local(message["event"], data, message.get("namespace") or "/", room, message.get("skip_sid"))
        return None

    async def _publish(self, data: Any) -> Any:
        """The stock manager's publishes (callbacks, broadcasts, room changes) join the outbox too."""
        if not self.has_peers():
            return None
        self._outbox.put(data)
        await self.flush()
        return None

    async def flush(self) -> None:
        """Return once every emit made so far has been published (or given up on)."""
        await self._outbox.drain()

    async def _publish_batch(self, messages: list[dict[str, Any]]) -> None:
        payload = self._own_batches + _encode(messages)
        for attempt in (1, 2):  # as the stock manager: reconnect once, then give up on this batch
            try:
                if not self.connected:  # type: ignore[has-type]
                    self._redis_connect()
                await self.redis.publish(self.channel, payload)
                return
            except Exception as exc:  # the emits are lost to other replicas; their SDKs sync
                self.connected = False
                if attempt == 2:
                    log.error("cannot publish %d bytes of emits to Redis: %s", len(payload), exc)

    async def _listen(self) -> AsyncIterator[Any]:
        """Other replicas' batches, one manager message at a time; our own batches are skipped."""
        async for data in super()._listen():
            if isinstance(data, bytes) and data.startswith(_BATCH_MARK):
                if data.startswith(self._own_batches):
                    continue
                try:
                    messages = _decode(data[data.index(b"\n") + 1:])
                except (ValueError, msgspec.DecodeError):
                    log.error("dropping an undecodable emit batch")
                    continue
                for message in messages:
                    yield message
            else:
                yield data

    async def close(self) -> None:
        """Publish what is queued, then stop the publisher (app shutdown)."""
        await self._outbox.close()
