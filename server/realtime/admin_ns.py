"""The /admin namespace: dashboard sockets, authenticated by the admin access JWT.

Event handlers declare their permission with server.auth.rbac.requires, exactly like REST routes:

    @requires("conversations.read")
    async def on_conversation_join(self, sid, data, *, admin): ...

Each checked event re-reads the admin once (a primary-key lookup) and hands the handler that
principal as `admin`, so a removed, disabled or demoted admin loses access on the very next event,
not when the token expires. Broadcasts need no event
from the socket, so `recheck` re-reads every socket's admin every ADMIN_SOCKET_RECHECK_INTERVAL
seconds and ends the sockets of signed-out sessions, removed or disabled admins and revoked keys.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from uuid import UUID

import msgspec

from server.auth.rbac import AdminPrincipal, live_admin, principal_for, requires
from server.auth.roles import roles_of
from server.auth.tokens import decode_access_token
from server.context import AppContext
from server.conversations import agent
from server.conversations.admin_schemas import ConversationRef, NoPayload, SocketRead, SocketSend
from server.errors import ApiError, Unauthorized, ValidationFailed
from server.http.payloads import convert
from server.realtime.errors import ack_error, refuse
from server.realtime.namespace import EventNamespace
from server.tenancy import api_keys

_to_builtins = msgspec.to_builtins

log = logging.getLogger("replyhq.realtime.admin")

# A legacy secret-API-key session has no admin behind it: it may read and reply, like an agent.
LEGACY_KEY_ROLE = "agent"


class AdminNamespace(EventNamespace):
    def __init__(self, app_ctx: AppContext) -> None:
        super().__init__("/admin", app_ctx)
        self._sids: set[str] = set()  # this replica's connected /admin sockets

    async def _authenticate(self, auth: Any) -> dict[str, Any]:
        token = auth.get("admin_token") if isinstance(auth, dict) else None
        if not isinstance(token, str) or not token:
            raise Unauthorized("handshake auth must include admin_token", code="missing_token")
        if token.startswith("rhq_"):
            # Legacy fallback: a secret API key acts as an admin-less, read/reply session.
            key = await api_keys.verify(self.ctx.pool, token)
            if key is None or key.kind != "secret":
                raise Unauthorized("invalid admin_token", code="invalid_token")
            self.ctx.key_usage.seen(key.id)
            return {"app_id": str(key.app_id), "admin_id": None, "role": LEGACY_KEY_ROLE, "legacy": True,
                    "key_id": str(key.id)}
        claims = decode_access_token(self.ctx.settings.signing_key, token)
        # refuses removed/disabled admins and signed-out sessions
        row = await live_admin(self.ctx, claims.admin_id, claims.app_id, claims.session_id)
        return {"app_id": str(row.app_id), "admin_id": str(row.id), "role": row.role, "legacy": False,
                "session_id": str(claims.session_id)}

    async def current_admin(self, sid: str) -> AdminPrincipal:
        """The socket's principal as the database sees it now (used by @requires on events)."""
        session = await self.get_session(sid)
        app_id = UUID(session["app_id"])
        roles = await roles_of(self.ctx)
        if session.get("legacy"):
            key = await api_keys.get(self.ctx.pool, app_id, UUID(session["key_id"]))
            if key is None or key.revoked_at is not None:
                raise Unauthorized("the API key of this session was revoked", code="invalid_token")
            role = roles[LEGACY_KEY_ROLE]
            return AdminPrincipal(None, app_id, role.name, role.rank, role.permissions)
        row = await live_admin(self.ctx, UUID(session["admin_id"]), app_id, UUID(session["session_id"]))
        return principal_for(row, roles[row.role])

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        try:
            session = await self._authenticate(auth)
        except ApiError as exc:
            self.ctx.metrics.socket_connects.labels("/admin", "refused").inc()
            raise refuse(exc) from None
        await self.save_session(sid, session)
        await self.enter_room(sid, f"app:{session['app_id']}:admins")
        self._sids.add(sid)
        self.ctx.metrics.socket_connects.labels("/admin", "ok").inc()
        self.ctx.metrics.socket_connections.labels("/admin").inc()

    @requires()
    async def on_me(self, sid: str, data: Any = None, *, admin: AdminPrincipal) -> dict[str, Any]:
        """Who this socket is, as of now: lets the dashboard check its socket session."""
        convert({} if data is None else data, NoPayload)
        p = admin
        return {"ok": True, "admin_id": str(p.admin_id) if p.admin_id else None, "app_id": str(p.app_id),
                "role": p.role, "permissions": sorted(p.permissions)}

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        self._sids.discard(sid)
        self.ctx.metrics.socket_connections.labels("/admin").dec()

    async def recheck(self) -> int:
        """End the sockets whose admin may no longer see the app: `session:ended` {error}, then a
        server disconnect. Returns how many it ended. Storage errors end nobody."""
        ended = 0
        for sid in list(self._sids):
            try:
                await self.current_admin(sid)
            except Unauthorized as exc:
                await self.emit("session:ended", ack_error(exc), to=sid)
                await self.disconnect(sid)  # on_disconnect forgets the sid
                ended += 1
            except KeyError:  # disconnected meanwhile
                self._sids.discard(sid)
            except Exception as exc:  # Postgres away: judge again next round
                log.warning("cannot recheck admin socket %s: %s", sid, exc)
                return ended
        return ended

    async def run_rechecks(self, interval_s: float) -> None:
        """recheck() every `interval_s` until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            await self.recheck()

    # ---- inbox events (payload contract: a plain conversation id string or {"conversation_id": ...}) ----
    async def _conversation(self, admin: AdminPrincipal, data: Any) -> Any:
        """The conversation a payload names, checked against the socket's app (another app's id: 404)."""
        if isinstance(data, str):
            data = {"conversation_id": data}
        if data is None:
            raise ValidationFailed("send a conversation id or {conversation_id}", {"path": "$"})
        ref = convert(data, ConversationRef)
        return await agent.conversation(self.ctx, admin, ref.conversation_id)

    @requires("conversations.read")
    async def on_conversation_join(self, sid: str, data: Any = None, *, admin: AdminPrincipal) -> dict[str, Any]:
        """Watch one conversation: the socket enters its room `conversation:{id}`."""
        conv = await self._conversation(admin, data)
        await self.enter_room(sid, conversation_room(conv.id))
        return {"ok": True, "conversation": _to_builtins(conv)}

    @requires("conversations.read")
    async def on_conversation_leave(self, sid: str, data: Any = None, *, admin: AdminPrincipal) -> dict[str, Any]:
        conv = await self._conversation(admin, data)
        await self.leave_room(sid, conversation_room(conv.id))
        return {"ok": True, "conversation_id": conv.id}

    async def _typing(self, sid: str, data: Any, typing: bool, p: AdminPrincipal) -> dict[str, Any]:
        conv = await self._conversation(p, data)
        who = {"sender_kind": "admin", "sender_id": str(p.admin_id) if p.admin_id else None, "name": p.name or None}
        # To the SDK user's devices and to every other agent of the app (not back to this socket).
        await self.ctx.fanout.typing(str(p.app_id), conv.user_id, conv.id, who, typing, skip_sid=sid)
        return {"ok": True}

    @requires("conversations.reply")
    async def on_typing_start(self, sid: str, data: Any = None, *, admin: AdminPrincipal) -> dict[str, Any]:
        return await self._typing(sid, data, True, admin)

    @requires("conversations.reply")
    async def on_typing_stop(self, sid: str, data: Any = None, *, admin: AdminPrincipal) -> dict[str, Any]:
        return await self._typing(sid, data, False, admin)

    @requires("users.read")
    async def on_sessions_list(self, sid: str, data: Any = None, *, admin: AdminPrincipal) -> dict[str, Any]:
        """Live SDK sessions of this app on every replica."""
        convert({} if data is None else data, NoPayload)
        found = await self.ctx.online.of_app(admin.app_id)
        return {"ok": True, "sessions": [_to_builtins(s) for s in found]}

    @requires("conversations.reply")
    async def on_message_send(self, sid: str, data: Any = None, *, admin: AdminPrincipal) -> dict[str, Any]:
        """An agent reply (or note, with is_note) over the socket: the same path as the REST reply."""
        payload = convert(data, SocketSend)
        message, created = await agent.reply(self.ctx, admin, payload.conversation_id, client_id=payload.client_id,
                                             body=payload.body, is_note=payload.is_note)
        return {"ok": True, "message": _to_builtins(message), "created": created}

    @requires("conversations.reply")
    async def on_message_read(self, sid: str, data: Any = None, *, admin: AdminPrincipal) -> dict[str, Any]:
        payload = convert(data, SocketRead)
        receipt = await agent.read(self.ctx, admin, payload.conversation_id, payload.seq)
        return {"ok": True, "receipt": _to_builtins(receipt)}


def conversation_room(conversation_id: str) -> str:
    return f"conversation:{conversation_id}"
