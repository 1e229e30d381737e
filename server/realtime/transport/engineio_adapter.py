"""Every use ReplyHQ makes of python-engineio's internals, in one place;
tests/test_library_adapters.py checks each against the installed library.

Tested with python-engineio 4.15.x (pinned in pyproject.toml). python-engineio documents its
servers, `handle_request`, `generate_id` and the `async_mode` drivers by name; what ReplyHQ
replaces underneath (the per-mode driver table `_async`, the socket class it builds,
`AsyncSocket._websocket_handler`, the `sockets` and `handlers` tables) is not documented and may
change in any release. DirectSocket (eio_websocket.py) extends AsyncSocket and keeps its state in
AsyncSocket's own attributes (SOCKET_STATE below), which the test checks too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import engineio
from engineio import async_socket
from engineio import packet as eio_packet

# AsyncSocket attributes DirectSocket reads and writes as its own (python-engineio 4.15).
SOCKET_STATE = ("server", "sid", "queue", "last_ping", "connected", "upgrading", "upgraded", "closing", "closed")
# Where python-engineio's sanic driver (engineio/async_drivers/sanic.py) keeps the request in the environ.
SANIC_REQUEST_KEY = "sanic.request"

WebSocketDriver = Callable[[Callable[[Any], Awaitable[None]], "engineio.AsyncServer"], Callable[[dict[str, Any]], Any]]


def install_transport(server: engineio.AsyncServer, *, websocket: WebSocketDriver,
                      create_route: Callable[[Any, engineio.AsyncServer, str], None],
                      wrap_translate_request: Callable[[Callable[..., dict[str, Any]]], Callable[..., dict[str, Any]]],
                      ) -> None:
    """Replace entries of the async mode's driver table, `server._async` (python-engineio 4.15):

    - "websocket": `websocket(handler, server)` is called per upgrade, the result awaited with the
      environ; `handler` is the socket's `_websocket_handler` (see SocketBase);
    - "create_route": `create_route(app, server, endpoint)` registers the Engine.IO route (attach);
    - "translate_request": request -> environ, wrapped by `wrap_translate_request`.
    The table is shared by every server of the mode: a copy is edited.
    """
    table: dict[str, Any] = server._async
    server._async = {**table, "websocket": websocket, "create_route": create_route,
                     "translate_request": wrap_translate_request(table["translate_request"])}


def sanic_request(environ: dict[str, Any]) -> Any:
    """The Sanic request the environ was translated from (python-engineio's sanic driver)."""
    return environ[SANIC_REQUEST_KEY]


def bad_request(server: engineio.AsyncServer, message: str) -> Any:
    """python-engineio's own 400 response (`server._bad_request`), returned by a driver."""
    return server._bad_request(message)


def sockets(server: engineio.AsyncServer) -> dict[str, Any]:
    """eio sid -> AsyncSocket of every open session (`server.sockets`). Not cached: python-engineio
    replaces the dict on shutdown."""
    table: dict[str, Any] = server.sockets
    return table


def message_handler(server: engineio.AsyncServer) -> Callable[[str, str | bytes], Awaitable[Any]] | None:
    """The handler registered for the "message" event (`server.handlers`); python-socketio
    registers a coroutine function taking (eio sid, data)."""
    return server.handlers.get("message")


def queue_packet(sock: async_socket.AsyncSocket, pkt: eio_packet.Packet) -> None:
    """What `AsyncSocket.send` does for a socket without a websocket, without awaiting: the packet
    waits in the socket's `queue` for the next long-poll."""
    sock.queue.put_nowait(pkt)


class EngineServerBase(engineio.AsyncServer):
    """engineio.AsyncServer whose sockets are `socket_class`.

    python-engineio 4.15 builds `AsyncSocket(server, sid)` itself in `_handle_connect`, with no
    hook for the class, then triggers "connect" before the socket's first ping or upgrade. There
    the socket's class is switched: `socket_class` must extend AsyncSocket adding behaviour only
    (no `__init__`, no state of its own beyond class attributes).
    """

    socket_class: type[async_socket.AsyncSocket] | None = None

    async def _trigger_event(self, event: str, *args: Any, **kwargs: Any) -> Any:
        if event == "connect" and self.socket_class is not None:
            sock = self.sockets.get(args[0])
            if sock is not None and type(sock) is async_socket.AsyncSocket:
                sock.__class__ = self.socket_class
        return await super()._trigger_event(event, *args, **kwargs)


class SocketBase(async_socket.AsyncSocket):
    """AsyncSocket whose websocket upgrade runs `run_websocket`: python-engineio 4.15 hands the
    driver `sock._websocket_handler`, which the driver awaits with its websocket."""

    def _websocket_handler(self, ws: Any) -> Awaitable[None]:
        return self.run_websocket(ws)

    async def run_websocket(self, ws: Any) -> None:
        raise NotImplementedError
