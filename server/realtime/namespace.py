"""Base namespace: `a:b` events map to `on_a_b` handlers; unknown events get an error ack."""

from __future__ import annotations

from typing import Any

import socketio

from server.errors import ApiError
from server.realtime.errors import ack_error, unknown_event


class EventNamespace(socketio.AsyncNamespace):  # type: ignore[misc]
    def __init__(self, namespace: str, app_ctx: Any) -> None:
        super().__init__(namespace)
        self.ctx = app_ctx

    async def trigger_event(self, event: str, *args: Any) -> Any:
        handler = getattr(self, "on_" + event.replace(":", "_"), None)
        if handler is None:
            return None if event in ("connect", "disconnect") else unknown_event(event)
        if event in ("connect", "disconnect"):
            return await handler(*args)
        try:
            return await handler(*args)
        except ApiError as exc:  # typed errors become error acks, the socket stays up
            return ack_error(exc)
