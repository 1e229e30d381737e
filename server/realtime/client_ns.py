"""The /client namespace: SDK sockets, authenticated by API key."""

from __future__ import annotations

from typing import Any

from server.errors import ApiError, Unauthorized
from server.realtime.errors import refuse
from server.realtime.namespace import EventNamespace
from server.tenancy import api_keys


class ClientNamespace(EventNamespace):
    def __init__(self, app_ctx: Any) -> None:
        super().__init__("/client", app_ctx)

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        metrics = self.ctx.metrics
        try:
            if not isinstance(auth, dict) or not isinstance(auth.get("api_key"), str):
                raise Unauthorized("handshake auth must include api_key", code="missing_api_key")
            key = await api_keys.verify(self.ctx.pool, auth["api_key"])
            if key is None:
                raise Unauthorized("unknown or revoked API key", code="invalid_api_key")
        except ApiError as exc:
            metrics.socket_connects.labels("/client", "refused").inc()
            raise refuse(exc) from None
        await self.save_session(sid, {"app_id": str(key.app_id), "key_kind": key.kind})
        metrics.socket_connects.labels("/client", "ok").inc()
        metrics.socket_connections.labels("/client").inc()

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        self.ctx.metrics.socket_connections.labels("/client").dec()
