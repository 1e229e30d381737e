"""The /client namespace: SDK sockets. The handshake names the app (API key) and the user
(user_id or anonymous_id, plus user_hash when the app verifies identity); each socket joins
its user's room, so every device of the user receives the user's events.

Client events (each acknowledged with {"ok": true, ...} or an error ack):
message:send, conversation:create, message:delivered, message:read, typing:start,
typing:stop, sync, broadcast:delivered, broadcast:read. See docs/socket-events.md.

A socket lives as long as its API key: when the key is revoked, or its rotation grace ends, every
socket of the key (on every replica) gets `session:ended` and is disconnected. A secret key's
socket is held to the key's scopes, as they are now.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

import msgspec

from server.broadcasts import receipts
from server.broadcasts.sdk_schemas import DeliveryPayload
from server.context import AppContext
from server.conversations.models import ReceiptKind
from server.conversations.requests import (
    ClientAuth,
    CreateConversationBody,
    ReceiptPayload,
    SendPayload,
    SyncPayload,
    TypingPayload,
    check_body_size,
)
from server.conversations.sdk_messages import send_as_user
from server.errors import ApiError, Forbidden, ServiceUnavailable, Unauthorized
from server.http.payloads import convert
from server.http.sdk_limits import user_subject
from server.realtime import sessions
from server.realtime.errors import ack_error, refuse
from server.realtime.fanout import user_room
from server.realtime.namespace import EventNamespace
from server.tenancy import api_keys
from server.tenancy.key_checks import KeyChange

KEY_RECHECK_S = 30.0  # every socket's key is read again this often (in case a change notice was lost)

log = logging.getLogger("replyhq.realtime.client")
_to_builtins = msgspec.to_builtins


@dataclass
class LiveKey:
    """An API key as this replica's sockets use it: shared by all of the key's sockets."""

    sids: set[str]
    expires_at: float | None  # Unix time its rotation grace ends
    scopes: frozenset[str] | None  # a secret key's scopes


@dataclass
class ClientSocket:
    app_id: UUID
    user_id: str  # end_users.id
    key_kind: str
    key_id: UUID
    key_subject: str  # the key and the user as the SDK rate limits count them (server/http/sdk_limits.py)
    user_subject: str
    key: LiveKey
    address: str
    # A conversation's owner never changes, so a checked id stays checked for the socket's life.
    own_conversations: set[str] = field(default_factory=set)


class ClientNamespace(EventNamespace):
    def __init__(self, app_ctx: AppContext) -> None:
        super().__init__("/client", app_ctx)
        self._sockets: dict[str, ClientSocket] = {}
        self._keys: dict[UUID, LiveKey] = {}

    # ---- connection ----------------------------------------------------------------------
    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        metrics = self.ctx.metrics
        limits = self.ctx.sdk_limits
        try:
            address = str(environ.get("REMOTE_ADDR", "unknown"))
            limits.handshake_address(address)  # before any lookup
            if not isinstance(auth, dict) or not auth.get("api_key"):
                raise Unauthorized("handshake auth must include api_key", code="missing_api_key")
            hello = convert(auth, ClientAuth)
            caller = await self.ctx.sdk_identity.authenticate(
                hello.api_key, external_id=hello.user_id, anonymous_id=hello.anonymous_id,
                presented_hash=hello.user_hash, scope="conversations.read", address=address)
            subject = user_subject(caller.app_id, caller.external_id, caller.anonymous_id)
            limits.admit(str(caller.key_id), subject)
            device = _to_builtins(hello.device) if hello.device else None
            user = await self.ctx.messaging.identify(caller.app_id, external_id=caller.external_id,
                                                     anonymous_id=caller.anonymous_id, device=device)
            await sessions.register(self.ctx.redis, str(caller.app_id), sessions.SdkSession(
                sid=sid, replica=self.ctx.settings.replica_id, user_id=user.id, external_user_id=user.user_id,
                anonymous_id=user.anonymous_id, device=user.metadata.get("device") or {},
                connected_at=datetime.now(UTC).isoformat().replace("+00:00", "Z")))
        except ApiError as exc:
            metrics.socket_connects.labels("/client", "refused").inc()
            raise refuse(exc) from None
        except Exception as exc:  # storage down: refuse clearly instead of leaving the client hanging
            log.warning("client connect failed: %s", exc)
            metrics.socket_connects.labels("/client", "refused").inc()
            raise refuse(ServiceUnavailable("could not connect; retry", code="unavailable")) from None
        live = self._keys.get(caller.key_id)
        if live is None:
            live = self._keys[caller.key_id] = LiveKey(set(), None, None)
        live.scopes = frozenset(caller.scopes) if caller.scopes is not None else None
        live.expires_at = caller.key_expires_at.timestamp() if caller.key_expires_at is not None else None
        live.sids.add(sid)
        self._sockets[sid] = ClientSocket(caller.app_id, user.id, caller.key_kind, caller.key_id,
                                          str(caller.key_id), subject, live, address)
        await self.enter_room(sid, user_room(user.id))
        await self.ctx.presence.connected(str(caller.app_id), user.id, sid)
        metrics.socket_connects.labels("/client", "ok").inc()
        metrics.socket_connections.labels("/client").inc()

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        client = self._sockets.pop(sid, None)
        if client is None:
            return
        client.key.sids.discard(sid)
        if not client.key.sids and self._keys.get(client.key_id) is client.key:
            del self._keys[client.key_id]
        self.ctx.metrics.socket_connections.labels("/client").dec()
        try:
            await self.ctx.presence.disconnected(str(client.app_id), client.user_id, sid)
        except Exception as exc:  # a stale entry is pruned when its replica is gone
            log.warning("session %s not unregistered: %s", sid, exc)

    def _client(self, sid: str, scope: str = "conversations.reply") -> ClientSocket:
        """The socket's client; `scope`: what a secret key needs for the event."""
        client = self._sockets.get(sid)
        if client is None:
            raise Unauthorized("socket is not authenticated", code="not_connected")
        # Every event handler starts here: each event counts against its key and user.
        self.ctx.sdk_limits.admit(client.key_subject, client.user_subject)
        self.ctx.key_usage.seen(client.key_id, client.address)
        scopes = client.key.scopes
        if scopes is not None and scope not in scopes:
            raise Forbidden(f"this API key lacks the {scope} scope", {"scope": scope}, code="scope_denied")
        return client

    # ---- the keys' lives -----------------------------------------------------------------------
    async def key_changed(self, change: KeyChange) -> None:
        """A key was revoked, rotated or re-scoped (on any replica): apply it to its sockets here."""
        live = self._keys.get(change.key_id)
        if live is None:
            return
        live.scopes = frozenset(change.scopes) if change.scopes is not None else None
        live.expires_at = change.expires_at.timestamp() if change.expires_at is not None else None
        if change.ended:
            await self._end_key(change.key_id, "this API key was revoked", "invalid_api_key")

    async def _end_key(self, key_id: UUID, message: str, code: str) -> None:
        live = self._keys.pop(key_id, None)
        if live is None:
            return
        error = ack_error(Unauthorized(message, code=code))
        for sid in list(live.sids):
            try:
                await self.emit("session:ended", error, to=sid)
                await self.disconnect(sid)
            except Exception as exc:  # already gone
                log.debug("ending socket %s: %s", sid, exc)

    async def run_key_checks(self, interval_s: float = 1.0, recheck_s: float = KEY_RECHECK_S) -> None:
        """End the sockets of keys whose rotation grace is over (checked every `interval_s`), and read
        every live key again every `recheck_s` (a revocation whose notice was lost)."""
        last_read = time.monotonic()
        while True:
            await asyncio.sleep(interval_s)
            now = time.time()
            for key_id, live in list(self._keys.items()):
                if live.expires_at is not None and live.expires_at <= now:
                    await self._end_key(key_id, "this API key was rotated and its grace period is over",
                                        "api_key_expired")
            if time.monotonic() - last_read < recheck_s or not self._keys:
                continue
            last_read = time.monotonic()
            try:
                found = await api_keys.by_ids(self.ctx.pool, list(self._keys))
            except Exception as exc:  # Postgres away: judge again next round
                log.warning("cannot recheck the API keys of sockets: %s", exc)
                continue
            for key_id in list(self._keys):
                key = found.get(key_id)
                if key is None:
                    await self._end_key(key_id, "this API key was revoked", "invalid_api_key")
                else:
                    await self.key_changed(KeyChange.of(key))

    async def _own(self, client: ClientSocket, conversation_id: str) -> None:
        """404 for any conversation that is not this user's (another user's or another app's)."""
        if conversation_id in client.own_conversations:
            return
        await self.ctx.messaging.conversation_for_user(client.app_id, UUID(client.user_id), conversation_id)
        client.own_conversations.add(conversation_id)

    # ---- events ----------------------------------------------------------------------------
    async def on_message_send(self, sid: str, data: Any = None) -> dict[str, Any]:
        client = self._client(sid)
        p = convert(data, SendPayload)
        await self._own(client, p.conversation_id)
        sent = await send_as_user(self.ctx.messaging, client.app_id, client.user_id, p.conversation_id,
                                  client_id=p.client_id, body=p.body, attachments=p.attachments,
                                  max_bytes=self.ctx.settings.max_message_bytes)
        return {"ok": True, "message": _to_builtins(sent.message)}

    async def on_conversation_create(self, sid: str, data: Any = None) -> dict[str, Any]:
        client = self._client(sid)
        p = convert({} if data is None else data, CreateConversationBody)
        first = None
        if p.message is not None:
            check_body_size(p.message.body, self.ctx.settings.max_message_bytes)
            first = (p.message.client_id, p.message.body, p.message.attachments)
        conv, message = await self.ctx.messaging.create_conversation(
            client.app_id, UUID(client.user_id), subject=p.subject, first_message=first)
        client.own_conversations.add(conv.id)
        return {"ok": True, "conversation": _to_builtins(conv),
                "message": _to_builtins(message) if message else None}

    async def _receipt(self, sid: str, data: Any, kind: ReceiptKind) -> dict[str, Any]:
        client = self._client(sid)
        p = convert(data, ReceiptPayload)
        await self._own(client, p.conversation_id)
        receipt = await self.ctx.messaging.mark(client.app_id, p.conversation_id, "user", client.user_id, kind,
                                                p.seq)
        return {"ok": True, "receipt": _to_builtins(receipt)}

    async def on_message_delivered(self, sid: str, data: Any = None) -> dict[str, Any]:
        return await self._receipt(sid, data, "delivered")

    async def on_message_read(self, sid: str, data: Any = None) -> dict[str, Any]:
        return await self._receipt(sid, data, "read")

    async def _broadcast_receipt(self, sid: str, data: Any, to: Literal[2, 3]) -> dict[str, Any]:
        client = self._client(sid)
        p = convert(data, DeliveryPayload)
        state = await receipts.advance(self.ctx.pool, client.app_id, UUID(client.user_id), p.delivery_id, to)
        return {"ok": True, "state": state}

    async def on_broadcast_delivered(self, sid: str, data: Any = None) -> dict[str, Any]:
        return await self._broadcast_receipt(sid, data, receipts.DELIVERED)

    async def on_broadcast_read(self, sid: str, data: Any = None) -> dict[str, Any]:
        return await self._broadcast_receipt(sid, data, receipts.READ)

    async def _typing(self, sid: str, data: Any, typing: bool) -> dict[str, Any]:
        client = self._client(sid)
        p = convert(data, TypingPayload)
        await self._own(client, p.conversation_id)
        await self.ctx.fanout.typing(str(client.app_id), client.user_id, p.conversation_id,
                                     {"sender_kind": "user", "sender_id": client.user_id}, typing, skip_sid=sid)
        return {"ok": True}

    async def on_typing_start(self, sid: str, data: Any = None) -> dict[str, Any]:
        return await self._typing(sid, data, True)

    async def on_typing_stop(self, sid: str, data: Any = None) -> dict[str, Any]:
        return await self._typing(sid, data, False)

    async def on_sync(self, sid: str, data: Any = None) -> dict[str, Any]:
        client = self._client(sid, "conversations.read")
        p = convert({} if data is None else data, SyncPayload)
        cursor = int(p.cursor or 0)
        page = await self.ctx.messaging.sync(UUID(client.user_id), cursor, p.limit)
        return {"ok": True, **_to_builtins(page)}
