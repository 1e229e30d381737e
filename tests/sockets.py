"""The one way tests open a raw Socket.IO socket.

A raw socket is for what the SDK would not do: an /admin socket, a refused or malformed handshake,
a device without the SDK's dedupe, a socket that must not reconnect when its replica dies. To act
as an SDK app, use `loadtests.sdk_client.ReplyHQClient`.

    async with open_socket(server.url, "/admin", auth={"admin_token": token}) as agent:
        ack = await agent.call("conversation:join", conv_id)       # emit with ack, on /admin
        got = await agent.wait_for("message:new", lambda d: d["seq"] == 2)
        assert agent.named("presence") == [] and agent.events == []   # every event received, in order

    error = await refused_handshake(server.url, "/client", auth={"api_key": "rhq_pk_nope"})
    assert error["data"]["error"]["code"] == "invalid_api_key"

A socket never reconnects (a test that loses its socket should see it lost), joins one namespace
and records every event the server sends it there as `(event, data)`. `sock.sio` is the
underlying `socketio.AsyncClient` for the rare special case (its engine.io sid or transport).
Sockets whose lifetimes do not nest hold their contexts in a `contextlib.AsyncExitStack`.
`admin_socket` and `sdk_socket` are `open_socket` with the usual auth of the inbox tests;
`open_socket_in_thread` is `open_socket` for synchronous tests (the browser tests).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from typing import Any, Protocol, TypeVar

import pytest
import socketio

from tests.inbox_helpers import DEVICE

PATH = "/v1/socket.io"
CONNECT_TIMEOUT = 5  # seconds to wait for the namespace to be accepted or refused
CALL_TIMEOUT = 10  # seconds to wait for an ack

T = TypeVar("T")
Predicate = Callable[..., Any]  # called with the event's data; truthy when it matches


class HasUrl(Protocol):
    @property
    def url(self) -> str: ...


def _anything(data: Any) -> bool:
    return True


class Socket:
    """A raw socket on one namespace that records every event it receives there."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: list[tuple[str, Any]] = []  # (event, data), in the order received
        self.connect_errors: list[Any] = []  # what each refused handshake said
        # Namespace-specific handlers only: python-socketio ignores "*"-namespace handlers for a
        # namespace that has one of its own. connect, connect_error and disconnect never reach "*".
        self.sio.on("*", self._record, namespace=namespace)
        self.sio.on("connect_error", self.connect_errors.append, namespace=namespace)

    def _record(self, event: str, *args: Any) -> None:
        self.events.append((event, args[0] if len(args) == 1 else (args or None)))

    @property
    def connected(self) -> bool:
        return bool(self.sio.connected)

    def named(self, event: str) -> list[Any]:
        """The data of each `event` received so far, in order."""
        return [d for e, d in self.events if e == event]

    async def wait_for(self, event: str, pred: Predicate = _anything, timeout: float = 5) -> Any:
        """The data of the first `event` received (before or after this call) for which `pred` holds."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for d in self.named(event):
                if pred(d):
                    return d
            if asyncio.get_running_loop().time() >= deadline:
                raise AssertionError(f"no {event} matching within {timeout}s; got {self.events}")
            await asyncio.sleep(0.02)

    async def call(self, event: str, data: Any = None, timeout: float = CALL_TIMEOUT) -> Any:
        """Emit `event` on this socket's namespace and return the server's ack. A tuple is sent as
        several arguments; None as none."""
        return await self.sio.call(event, data, namespace=self.namespace, timeout=timeout)

    async def emit(self, event: str, data: Any = None) -> None:
        """Emit `event` on this socket's namespace without waiting for an ack."""
        await self.sio.emit(event, data, namespace=self.namespace)

    async def disconnect(self) -> None:
        """Close the socket now (closing again, or a socket the server closed, is fine)."""
        await self.sio.disconnect()

    async def _connect(self, url: str, auth: Any, headers: dict[str, str] | None,
                       transports: Sequence[str] | None) -> None:
        await self.sio.connect(url, socketio_path=PATH, namespaces=[self.namespace], auth=auth,
                               headers=headers or {}, transports=list(transports) if transports else None,
                               wait_timeout=CONNECT_TIMEOUT)


@asynccontextmanager
async def open_socket(url: str, namespace: str, *, auth: Any = None, headers: dict[str, str] | None = None,
                      transports: Sequence[str] | None = None) -> AsyncIterator[Socket]:
    """A socket connected to `namespace` of the server at `url`, disconnected on exit.

    `auth` is the handshake's auth payload, `headers` extra HTTP headers of the handshake request,
    `transports` e.g. ["websocket"] (default: long-polling, then the upgrade to websocket).
    A refused handshake raises socketio.exceptions.ConnectionError (see `refused_handshake`)."""
    sock = Socket(namespace)
    try:
        await sock._connect(url, auth, headers, transports)
        yield sock
    finally:
        await sock.disconnect()


async def refused_handshake(url: str, namespace: str, *, auth: Any = None, headers: dict[str, str] | None = None,
                            transports: Sequence[str] | None = ("websocket",)) -> Any:
    """The connect_error payload ({"message", "data"}) of a handshake the server must refuse."""
    sock = Socket(namespace)
    try:
        with pytest.raises(socketio.exceptions.ConnectionError):
            await sock._connect(url, auth, headers, transports)
        for _ in range(50):
            if sock.connect_errors:
                break
            await asyncio.sleep(0.02)
    finally:
        await sock.disconnect()
    assert sock.connect_errors, ("no connect_error", namespace, auth)
    return sock.connect_errors[0]


def admin_socket(server: HasUrl, token: str, *, transports: Sequence[str] | None = None
                 ) -> AbstractAsyncContextManager[Socket]:
    """An agent's /admin socket (`admin_token` may also be a legacy secret key)."""
    return open_socket(server.url, "/admin", auth={"admin_token": token}, transports=transports)


def sdk_socket(server: HasUrl, key: str, user_id: str, *, device: dict[str, Any] | None = DEVICE,
               transports: Sequence[str] | None = None) -> AbstractAsyncContextManager[Socket]:
    """An end user's raw /client socket (with the inbox tests' device unless `device=None`)."""
    auth: dict[str, Any] = {"api_key": key, "user_id": user_id}
    if device is not None:
        auth["device"] = device
    return open_socket(server.url, "/client", auth=auth, transports=transports)


class ThreadedSocket:
    """A `Socket` run on its own event loop thread, with blocking methods, for synchronous tests."""

    def __init__(self, sock: Socket, loop: asyncio.AbstractEventLoop) -> None:
        self.socket = sock
        self._loop = loop

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    @property
    def events(self) -> list[tuple[str, Any]]:
        return list(self.socket.events)

    def named(self, event: str) -> list[Any]:
        return [d for e, d in self.events if e == event]

    def wait_for(self, event: str, pred: Predicate = _anything, timeout: float = 5) -> Any:
        return self._run(self.socket.wait_for(event, pred, timeout), timeout + 5)

    def call(self, event: str, data: Any = None, timeout: float = CALL_TIMEOUT) -> Any:
        return self._run(self.socket.call(event, data, timeout), timeout + 5)

    def emit(self, event: str, data: Any = None) -> None:
        self._run(self.socket.emit(event, data), CALL_TIMEOUT)


@contextmanager
def open_socket_in_thread(url: str, namespace: str, **kw: Any) -> Iterator[ThreadedSocket]:
    """`open_socket(url, namespace, **kw)` on an event loop in a thread of its own."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name=f"socket {namespace}", daemon=True)
    thread.start()
    opened = open_socket(url, namespace, **kw)
    try:
        sock = asyncio.run_coroutine_threadsafe(opened.__aenter__(), loop).result(CONNECT_TIMEOUT + 10)
        try:
            yield ThreadedSocket(sock, loop)
        finally:
            asyncio.run_coroutine_threadsafe(opened.__aexit__(None, None, None), loop).result(CONNECT_TIMEOUT + 10)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        if not thread.is_alive():
            loop.close()
