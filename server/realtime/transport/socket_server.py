"""The Socket.IO server ReplyHQ runs: replica-named sids plus the direct websocket transport."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import engineio

from server.http.sanic_adapter import mark_websocket_handler
from server.http.source_address import source_address
from server.realtime.transport import engineio_adapter, socketio_adapter
from server.realtime.transport.admission import ENVIRON_KEY as ADMISSION_KEY
from server.realtime.transport.eio_websocket import (
    CLOSE_GRACE_S,
    DirectSocket,
    Pinger,
    SanicWebSocketDriver,
    WebSocketConnection,
    settle_handlers,
)
from server.realtime.transport.replica_sids import ReplicaEngineIOServer, ReplicaSidServer


def _create_route(app: Any, server: engineio.AsyncServer, endpoint: str) -> None:
    """The Engine.IO route (python-engineio's own registers its bound handle_request)."""

    async def engineio_route(request: Any, *args: Any, **kwargs: Any) -> Any:
        return await server.handle_request(request, *args, **kwargs)

    # An accepted websocket leaves Sanic without an HTTP response (any other request without a
    # response still gets an error).
    mark_websocket_handler(engineio_route)
    app.add_route(engineio_route, endpoint, methods=["GET", "POST", "OPTIONS"], name="engineio")
    app.enable_websocket()


def _translate_request(translate: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """python-engineio's Sanic environ says REMOTE_ADDR 127.0.0.1 for everyone: name the client."""

    def translate_request(request: Any) -> dict[str, Any]:
        environ = translate(request)
        environ["REMOTE_ADDR"] = source_address(request)
        return environ

    return translate_request


class EngineServer(ReplicaEngineIOServer, engineio_adapter.EngineServerBase):
    """Engine.IO with sockets that write straight onto their websocket and one shared pinger."""

    # python-engineio builds its sockets itself; DirectSocket adds behaviour, not state.
    socket_class = DirectSocket

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        engineio_adapter.install_transport(self, websocket=SanicWebSocketDriver, create_route=_create_route,
                                           wrap_translate_request=_translate_request)
        self.pinger = Pinger(self.ping_interval)
        self.open_websockets: set[WebSocketConnection] = set()

    async def close_websockets(self, code: int = 1001, timeout: float = CLOSE_GRACE_S) -> None:
        """Close every websocket (shutdown: clients reconnect elsewhere) and let their
        disconnect handlers finish while the pool and Redis are still open."""
        conns = list(self.open_websockets)
        for conn in conns:
            conn.start_close(code)
        if conns:
            await asyncio.wait([conn.closed for conn in conns], timeout=timeout)
        await settle_handlers(timeout)


class SocketServer(ReplicaSidServer):
    engineio_class = EngineServer

    def connect_answered(self, eio_sid: str) -> None:
        # The handshake is over (connected or refused): the next connection may start its own.
        slot = socketio_adapter.eio_environ(self, eio_sid).pop(ADMISSION_KEY, None)
        if slot is not None:
            slot.release()

    def start_manager(self) -> None:
        """Subscribe to other replicas' emits now, not on the first socket connect (python-socketio's
        default), so that socket cannot miss what is published meanwhile."""
        socketio_adapter.start_manager(self)
