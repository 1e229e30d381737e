"""Socket.IO side of the error mapping: refusals and error acks share the REST body."""

from __future__ import annotations

from typing import Any

from socketio.exceptions import ConnectionRefusedError as SioRefused

from server.errors import ApiError, error_body


def refuse(exc: ApiError) -> SioRefused:
    """connect_error carries {message, data}; data is the same {"error": {...}} body REST returns."""
    return SioRefused(exc.message, exc.body())


def ack_error(exc: ApiError) -> dict[str, Any]:
    return {"ok": False, **exc.body(), "status": exc.status}


def internal_error() -> dict[str, Any]:
    """An unexpected failure in a handler: acked like REST's 500, so the client never waits forever."""
    return {"ok": False, **error_body("internal", "internal server error"), "status": 500}


def unknown_event(event: str) -> dict[str, Any]:
    return {"ok": False, **error_body("unknown_event", f"unknown event {event!r}"), "status": 400}
