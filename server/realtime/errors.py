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
    return ack_error(UnknownEvent(event))


class UnknownEvent(ApiError):
    status = 400
    code = "unknown_event"

    def __init__(self, event: str) -> None:
        super().__init__(f"unknown event {event[:100]!r}")  # the name is the client's: never echo 1 MB back


class UnreadablePacket:
    """What a decoded packet carries instead of its payload (an event's name and arguments, or a
    handshake's auth) when it cannot be taken: the namespace answers `error` (an error ack, or a
    connect_error) instead of the packet being dropped with a logged traceback."""

    __slots__ = ("error",)

    def __init__(self, error: ApiError) -> None:
        self.error = error
