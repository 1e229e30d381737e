"""The /admin namespace: dashboard sockets, authenticated by the admin access JWT.

Event handlers declare their permission with server.auth.rbac.requires, exactly like REST routes:

    @requires("conversations.read")
    async def on_conversation_join(self, sid, data): ...

Each checked event re-reads the admin (a primary-key lookup), so a removed, disabled or demoted
admin loses access on the very next event, not when the token expires.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from server.auth import admins
from server.auth.rbac import AdminPrincipal, authenticate_token, principal_for, requires
from server.auth.roles import roles_of
from server.errors import ApiError, Unauthorized
from server.realtime.errors import refuse
from server.realtime.namespace import EventNamespace
from server.tenancy import api_keys

# A legacy secret-API-key session has no admin behind it: it may read and reply, like an agent.
LEGACY_KEY_ROLE = "agent"


class AdminNamespace(EventNamespace):
    def __init__(self, app_ctx: Any) -> None:
        super().__init__("/admin", app_ctx)

    async def _authenticate(self, auth: Any) -> dict[str, Any]:
        token = auth.get("admin_token") if isinstance(auth, dict) else None
        if not isinstance(token, str) or not token:
            raise Unauthorized("handshake auth must include admin_token", code="missing_token")
        if token.startswith("rhq_"):
            # Legacy fallback: a secret API key acts as an admin-less, read/reply session.
            key = await api_keys.verify(self.ctx.pool, token)
            if key is None or key.kind != "secret":
                raise Unauthorized("invalid admin_token", code="invalid_token")
            return {"app_id": str(key.app_id), "admin_id": None, "role": LEGACY_KEY_ROLE, "legacy": True,
                    "key_id": str(key.id)}
        principal = await authenticate_token(self.ctx, token)  # refuses removed/disabled admins
        return {"app_id": str(principal.app_id), "admin_id": str(principal.admin_id), "role": principal.role,
                "legacy": False}

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
        row = await admins.active_by_id(self.ctx.pool, UUID(session["admin_id"]), app_id)
        if row is None:
            raise Unauthorized("this admin account no longer exists or is disabled", code="admin_disabled")
        return principal_for(row, roles[row.role])

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        try:
            session = await self._authenticate(auth)
        except ApiError as exc:
            self.ctx.metrics.socket_connects.labels("/admin", "refused").inc()
            raise refuse(exc) from None
        await self.save_session(sid, session)
        await self.enter_room(sid, f"app:{session['app_id']}:admins")
        self.ctx.metrics.socket_connects.labels("/admin", "ok").inc()
        self.ctx.metrics.socket_connections.labels("/admin").inc()

    @requires()
    async def on_me(self, sid: str, data: Any = None) -> dict[str, Any]:
        """Who this socket is, as of now: lets the dashboard check its socket session."""
        p = await self.current_admin(sid)
        return {"ok": True, "admin_id": str(p.admin_id) if p.admin_id else None, "app_id": str(p.app_id),
                "role": p.role, "permissions": sorted(p.permissions)}

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        self.ctx.metrics.socket_connections.labels("/admin").dec()
