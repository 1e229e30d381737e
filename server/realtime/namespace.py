"""Base namespace: `a:b` events map to `on_a_b` handlers; unknown events get an error ack.

Every event handler takes (sid, payload=None): one payload argument at most. Whatever a client sends,
it gets an ack: a packet that could not be read (JsonPacket) a 4xx error ack, a typed ApiError an
error ack, a payload spread over several arguments a 422, Postgres or Redis out of reach a 503
`storage` ack, and any other exception a logged 500 ack (never a silently dropped ack the client
waits on). A handshake whose auth could not be read gets
a connect_error (422)."""

from __future__ import annotations

import logging
from typing import Any

import socketio

from server.context import AppContext
from server.errors import ApiError, ValidationFailed, storage_error
from server.platform.storage_errors import storage_unavailable
from server.realtime.errors import UnreadablePacket, ack_error, internal_error, refuse, unknown_event

log = logging.getLogger("replyhq.realtime")


class EventNamespace(socketio.AsyncNamespace):  # type: ignore[misc]
    def __init__(self, namespace: str, app_ctx: AppContext) -> None:
        super().__init__(namespace)
        self.ctx = app_ctx

    async def trigger_event(self, event: str | UnreadablePacket, *args: Any) -> Any:
        if isinstance(event, UnreadablePacket):  # an event packet that could not be read (JsonPacket)
            return ack_error(event.error)
        if event == "connect" and len(args) > 2 and isinstance(args[2], UnreadablePacket):
            self.ctx.metrics.socket_connects.labels(self.namespace, "refused").inc()
            raise refuse(args[2].error)  # a handshake whose auth could not be read: connect_error
        handler = getattr(self, "on_" + event.replace(":", "_"), None)
        if handler is None:
            return None if event in ("connect", "disconnect") else unknown_event(event)
        if event in ("connect", "disconnect"):
            return await handler(*args)
        if len(args) > 2:  # (sid, payload, more...): not something any event accepts
            return ack_error(ValidationFailed("send the payload as one argument", {
                "path": "$", "reason": f"expected 1 argument, got {len(args) - 1}"}))
        try:
            return await handler(*args)
        except ApiError as exc:  # typed errors become error acks, the socket stays up
            return ack_error(exc)
        except Exception as exc:
            if storage_unavailable(exc):  # Postgres or Redis restarting: a 503 to retry
                log.warning("storage unavailable in %s event %r: %r", self.namespace, event[:100], exc)
                return ack_error(storage_error())
            log.exception("unhandled error in %s event %r", self.namespace, event[:100])
            return internal_error()
