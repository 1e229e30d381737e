"""The /admin namespace: dashboard sockets, authenticated by the admin access JWT."""

from __future__ import annotations

from typing import Any

from server.auth.tokens import decode_access_token
from server.errors import ApiError, Unauthorized
from server.realtime.errors import refuse
from server.realtime.namespace import EventNamespace
from server.tenancy import api_keys


class AdminNamespace(EventNamespace):
    def __init__(self, app_ctx: Any) -> None:
        super().__init__("/admin", app_ctx)

    async def _authenticate(self, auth: Any) -> dict[str, Any]:
        token = auth.get("admin_token") if isinstance(auth, dict) else None
        if not isinstance(token, str) or not token:
            raise Unauthorized("handshake auth must include admin_token", code="missing_token")
        if token.startswith("rhq_sk_") or token.startswith("rhq_"):
            # Legacy fallback: a secret API key acts as an owner-less, read/reply session.
            key = await api_keys.verify(self.ctx.pool, token)
            if key is None or key.kind != "secret":
                raise Unauthorized("invalid admin_token", code="invalid_token")
            return {"app_id": str(key.app_id), "admin_id": None, "role": "admin", "legacy": True}
        claims = decode_access_token(self.ctx.settings.jwt_secret, token)
        return {"app_id": str(claims.app_id), "admin_id": str(claims.admin_id), "role": claims.role,
                "legacy": False}

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

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        self.ctx.metrics.socket_connections.labels("/admin").dec()
