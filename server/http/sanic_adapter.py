"""Every use ReplyHQ makes of Sanic's internals, in one place; tests/test_library_adapters.py
checks each against the installed Sanic.

Tested with Sanic 25.12.x (pinned in pyproject.toml). Sanic documents `app.run(protocol=...)`
with a subclass of its HTTP protocol, and `request.transport`; what ReplyHQ does with the
protocol (hold its first request, take a websocket's connection away from it) relies on
attributes and methods of `sanic.server.protocols` that are not documented and may change in any
release.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sanic.server.protocols.websocket_protocol import WebSocketProtocol


def mark_websocket_handler(handler: Callable[..., Any]) -> None:
    """Let `handler` end a request without an HTTP response (it took the connection over for a
    websocket). Sanic 25.12's `handle_request` checks `hasattr(handler, "is_websocket")`, which
    its own `app.websocket` routes set; any other handler without a response is an error."""
    handler.is_websocket = True  # type: ignore[attr-defined]


class FirstRequestProtocol(WebSocketProtocol):
    """Sanic's HTTP protocol (the websocket-capable one `app.run` uses by default) whose first
    request on a connection goes to `first_request`, later ones to `app.handle_request`.

    Sanic 25.12 sets the protocol's `request_handler` in `_setup()` (called from `__init__`), and
    its HTTP loop awaits `protocol.request_handler(request)` per request.
    """

    __slots__ = ()

    def _setup(self) -> None:
        super()._setup()
        self.request_handler = self._first_request

    async def _first_request(self, request: Any) -> None:
        self.request_handler = self.app.handle_request
        await self.first_request(request)

    async def first_request(self, request: Any) -> None:
        """Handle the connection's first request (as `app.handle_request` would)."""
        await self.app.handle_request(request)


def protocol_of(request: Any) -> Any:
    """The Sanic HTTP protocol serving `request`'s connection."""
    return request.transport.get_protocol()


async def send_raw(protocol: Any, data: bytes) -> None:
    """Write bytes on the connection as Sanic would (`protocol.send`, with its backpressure)."""
    await protocol.send(data)


def take_connection(protocol: Any) -> tuple[Any, bytes]:
    """Take the connection from Sanic after a websocket upgrade: (its transport, the bytes the
    client sent after the upgrade request that Sanic had buffered).

    Sanic 25.12 forgets it: the protocol leaves its server's `connections` set (so Sanic's
    shutdown does not wait for it), loses its `transport` (so its end-of-request close() leaves
    the connection open) and its `recv_buffer` is emptied. The caller then sets its own protocol on
    the transport.
    """
    transport = protocol.transport
    protocol.connections.discard(protocol)
    protocol.transport = None
    early = bytes(protocol.recv_buffer)
    protocol.recv_buffer.clear()
    return transport, early
