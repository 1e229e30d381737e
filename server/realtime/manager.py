"""Fan-out manager: local sockets first, Redis pub/sub only to reach other replicas."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from engineio import packet as eio_packet
from socketio import packet as sio_packet

from server.errors import ValidationFailed
from server.platform.redis.pubsub import subscriber
from server.platform.redis.writer import RedisWriter
from server.realtime.errors import UnknownEvent, UnreadablePacket
from server.realtime.transport import engineio_adapter
from server.realtime.transport.socketio_adapter import JsonOnlyPacket, RedisManagerBase, emit_message, room_members

log = logging.getLogger("replyhq.fanout")
PEER_GRACE_S = 5.0  # keep publishing this long after the last sight of another replica
_BATCH_MARK = b"replyhq-batch:"  # a publish carrying a JSON list of manager messages
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode


class _RemoteEmit(msgspec.Struct):
    """A manager message as another replica published it, its arguments left encoded."""

    method: str
    event: str | None = None
    data: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"[]"))
    namespace: str | None = None
    room: Any = None
    skip_sid: Any = None
    callback: Any = None
    binary: bool = False


_batch_decoder = msgspec.json.Decoder(list[msgspec.Raw])
_emit_decoder = msgspec.json.Decoder(_RemoteEmit)


def _event_text(event: str, args: bytes, namespace: str) -> str:
    """A Socket.IO EVENT packet, as JsonPacket(EVENT, namespace, [event, *args]).encode() writes
    it, from the arguments already encoded as a JSON list."""
    inner = args[1:-1]
    body = b"[" + _encode(event) + (b"," + inner if inner else b"") + b"]"
    return ("2" if namespace == "/" else "2" + namespace + ",") + body.decode()


class MsgspecJson:
    """The `json` module interface python-socketio calls, backed by msgspec (faster on our payloads)."""

    @staticmethod
    def dumps(obj: Any, **_: Any) -> str:
        return _encode(obj).decode()

    @staticmethod
    def loads(data: str | bytes, **_: Any) -> Any:
        return _decode(data)


class JsonPacket(JsonOnlyPacket):
    """Socket.IO packets of JSON only.

    Every event ReplyHQ emits is JSON (attachments are metadata, never bytes), so the stock
    per-packet walk looking for binary values is skipped; incoming binary packets still decode.

    An incoming event or handshake whose payload cannot be taken (JSON msgspec refuses, such as a
    lone UTF-16 surrogate; nesting past the decoder's depth; an event that is not [name, ...]; a
    client naming a reserved event) carries an UnreadablePacket instead, which the namespace
    answers with an error ack or a connect_error: python-socketio would log a traceback and
    drop the packet, and the client would wait forever.
    """

    json = MsgspecJson
    packet_type: int
    data: Any

    def decode(self, encoded_packet: str | bytes) -> int:
        try:
            attachments = int(super().decode(encoded_packet) or 0)
        except (msgspec.DecodeError, RecursionError) as exc:
            # The header (type, namespace, ack id) is read before the JSON, so the packet can be answered.
            reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            self.data = UnreadablePacket(ValidationFailed("the payload is not JSON the server can read",
                                                          {"path": "$", "reason": reason}))
            if self.packet_type == sio_packet.BINARY_EVENT:
                self.packet_type = sio_packet.EVENT  # its attachments cannot help: answer it now
            attachments = 0
        if self.packet_type == sio_packet.EVENT:
            self.data = _event_or_refusal(self.data)
        return attachments


# Names python-socketio calls handlers by itself; a client emitting them would run those handlers.
_RESERVED_EVENTS = frozenset({"connect", "connect_error", "disconnect", "__disconnect_final"})


def _event_or_refusal(data: Any) -> list[Any]:
    """An event packet's data as [name, *args], or [UnreadablePacket] when it is not one."""
    if isinstance(data, UnreadablePacket):
        return [data]
    if not isinstance(data, list) or not data or not isinstance(data[0], str):
        return [UnreadablePacket(ValidationFailed("an event is a JSON array: [name, payload]",
                                                  {"path": "$", "reason": "expected [name, payload]"}))]
    if data[0] in _RESERVED_EVENTS:
        return [UnreadablePacket(UnknownEvent(data[0]))]
    return data


class ReplicaFanoutManager(RedisManagerBase):
    """python-socketio's Redis manager, with a cheaper local delivery and batched publishes.

    Local: an event is encoded once and queued straight onto each recipient's Engine.IO
    socket (the stock manager creates and awaits a task per recipient). Remote: published on
    Redis only when another replica is alive, and never one round trip per emit. Emits queue
    on the replica's RedisWriter, everything queued meanwhile going out as a single PUBLISH in
    its next pipeline: a Redis round trip per emit capped a replica at a few thousand emits a
    second and made every message wait for its predecessors' round trips. One writer also keeps
    the emits in the order they were made, which concurrent publishes did not.
    """

    name = "replyhq-fanout"

    def __init__(self, url: str, channel: str, **kwargs: Any) -> None:
        super().__init__(url, channel=channel, **kwargs)
        self._peer_seen_at: float | None = None  # None: not checked yet, so assume peers
        self._writer: RedisWriter | None = None  # set by the app before the first emit
        self._published: asyncio.Future[None] | None = None  # the write of the last emit queued
        self._own_batches = _BATCH_MARK + self.host_id.encode() + b"\n"

    def use_writer(self, writer: RedisWriter) -> None:
        """Publish through `writer`: the pipeline the actor host replies through, so a reply
        never goes out ahead of the fan-out queued before it."""
        self._writer = writer

    def make_pubsub(self, redis: Any) -> Any:
        return subscriber(redis)

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

    def _deliver(self, members: dict[str, str], text: str, skip_sid: str | list[str] | None) -> None:
        """Queue one encoded Socket.IO packet for every member socket (but the skipped)."""
        pkt = eio_packet.Packet(eio_packet.MESSAGE, text)
        skip = skip_sid if isinstance(skip_sid, list) else (skip_sid,)
        sockets = engineio_adapter.sockets(self.server.eio)
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
                engineio_adapter.queue_packet(sock, pkt)

    async def emit(self, event: str, data: Any, namespace: str | None = None, room: Any = None,
                   skip_sid: Any = None, callback: Any = None, to: Any = None, **kwargs: Any) -> None:
        room = to or room
        if callback is not None or room is None or not isinstance(room, str):
            # Broadcasts, callbacks and multi-room emits are rare: the stock path.
            return await super().emit(event, data, namespace=namespace, room=room, skip_sid=skip_sid,
                                      callback=callback, **kwargs)
        namespace = namespace or "/"
        members = room_members(self, namespace, room)
        publish = not kwargs.get("ignore_queue") and self.has_peers()
        if not members and not publish:
            return None
        # The arguments are encoded once: the local packet and the published emit share them.
        args = _encode(list(data) if isinstance(data, tuple) else [] if data is None else [data])
        if members:
            self._deliver(members, _event_text(event, args, namespace), skip_sid)
        if publish:
            self._put(emit_message(self, event, msgspec.Raw(args), namespace, room, skip_sid))
        return None

    def _handle_remote_emit(self, raw: bytes) -> bool:
        """Deliver a plain room emit of another replica straight from its JSON (its arguments are
        never decoded, only spliced into the packet); False for anything else."""
        try:
            emit = _emit_decoder.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return False
        if (emit.method != "emit" or emit.event is None or not isinstance(emit.room, str)
                or emit.callback is not None or emit.binary):
            return False
        namespace = emit.namespace or "/"
        members = room_members(self, namespace, emit.room)
        if members:
            self._deliver(members, _event_text(emit.event, bytes(emit.data), namespace), emit.skip_sid)
        return True

    def _put(self, message: dict[str, Any]) -> None:
        if self._writer is None:
            raise RuntimeError("ReplicaFanoutManager.use_writer() was not called")
        self._published = self._writer.put(self, message)

    async def publish(self, data: Any) -> Any:
        """The stock manager's publishes (callbacks, broadcasts, room changes) join the batches too."""
        if not self.has_peers():
            return None
        self._put(data)
        await self.flush()
        return None

    def published(self) -> asyncio.Future[None] | None:
        """Resolves once every emit made so far has been published (None: they all have).
        Pipelines run in order, so the last emit's is the one to wait for."""
        published = self._published
        return published if published is not None and not published.done() else None

    async def flush(self) -> None:
        """Return once every emit made so far has been published (or given up on)."""
        published = self.published()
        if published is not None:
            await asyncio.shield(published)

    # RedisWriter sink: first in a pipeline, so replies queued after an emit follow it.
    order = 0

    def queue(self, pipe: Any, messages: list[dict[str, Any]]) -> None:
        """Everything emitted since the last pipeline, as one publish."""
        pipe.publish(self.channel, self._own_batches + _encode(messages))

    def failed(self, messages: list[dict[str, Any]], exc: Exception) -> None:
        # The emits are lost to other replicas; their SDKs notice the seq gap and sync.
        log.error("cannot publish %d emits to Redis: %r", len(messages), exc)

    async def received(self, published: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """Other replicas' batches, one manager message at a time; our own batches are skipped."""
        async for data in published:
            if isinstance(data, bytes) and data.startswith(_BATCH_MARK):
                if data.startswith(self._own_batches):
                    continue
                try:
                    messages = _batch_decoder.decode(data[data.index(b"\n") + 1:])
                except (ValueError, msgspec.DecodeError):
                    log.error("dropping an undecodable emit batch")
                    continue
                for raw in messages:
                    if not self._handle_remote_emit(raw):
                        yield _decode(raw)  # room changes, callbacks, broadcasts: the stock handlers
            else:
                yield data
