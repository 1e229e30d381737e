"""Engine.IO's websocket transport, without a task per frame or per socket.

The stock transport stacks three layers of tasks on every socket: Sanic's websocket
(a keep-alive ping task, a close watcher, a task per received chunk and per `recv`),
python-engineio's reader (a task and a `wait_for` per frame) and its writer (a task per socket
draining a queue), plus a sleeping task per socket for the next Engine.IO ping. That is most
of the CPU per message and most of the memory per idle socket.

Here a connection parses frames as they arrive (with the `websockets` sans-I/O protocol, as
Sanic does) and dispatches each Engine.IO packet at once; a Socket.IO message runs in one task,
as it does with `async_handlers`. Writes go straight onto the transport in the order they are
made. One task per server sends every socket's Engine.IO PING.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import logging
import struct
import time
from collections.abc import Callable, Coroutine
from typing import Any

from engineio import packet as eio_packet
from websockets import http11
from websockets.datastructures import Headers
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol

from server.http import sanic_adapter
from server.realtime.transport import engineio_adapter
from server.realtime.transport.admission import ENVIRON_KEY as ADMISSION_KEY
from server.realtime.transport.admission import Slot

log = logging.getLogger("replyhq.realtime.websocket")

MAX_WRITE_BUFFER = 8 * 1024 * 1024  # a client this far behind is cut off; it syncs on reconnect
CLOSE_GRACE_S = 5.0  # how long a closing handshake may take before the connection is dropped
_PING = eio_packet.Packet(eio_packet.PING)
# What the environ keeps once the socket is up: our connect handlers read nothing else.
_ENVIRON_KEPT = ("REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "REMOTE_ADDR")
_running: set[asyncio.Task[Any]] = set()  # message handlers in flight (a task must be referenced)


def _track(coro: Coroutine[Any, Any, None]) -> None:
    """Run a message or close handler in its own task, kept until it ends."""
    task = asyncio.get_running_loop().create_task(coro)
    _running.add(task)
    task.add_done_callback(_running.discard)


async def settle_handlers(timeout: float) -> None:
    """Wait (at most `timeout`) for the message and close handlers already running."""
    if _running:
        await asyncio.wait(set(_running), timeout=timeout)


def _header(opcode: int, size: int) -> bytes:
    """An unmasked, final frame header (RFC 6455 section 5.2): servers never mask."""
    if size < 126:
        return bytes((0x80 | opcode, size))
    if size < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, size)
    return struct.pack("!BBQ", 0x80 | opcode, 127, size)


class WebSocketConnection(asyncio.Protocol):
    """One upgraded connection, the transport's protocol once the handshake is done (Sanic's
    HTTP protocol, request and connection task are let go), with synchronous sends."""

    def __init__(self, ws_proto: ServerProtocol, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.ws_proto = ws_proto
        self.transport = transport
        self.loop = loop
        self.closed: asyncio.Future[None] = loop.create_future()
        self.on_data: Callable[[str | bytes], None] | None = None
        self._early: collections.deque[str | bytes] | None = None  # frames before on_data is set
        self._early_wake: asyncio.Event | None = None
        self._fragments: list[bytes] = []
        self._fragment_text = False

    # ---- sending ---------------------------------------------------------------------
    def send(self, data: str | bytes) -> None:
        if self.closed.done() or self.ws_proto.state is not State.OPEN:
            return
        if isinstance(data, str):
            payload, opcode = data.encode(), 0x1
        else:
            payload, opcode = data, 0x2
        self.transport.write(_header(opcode, len(payload)) + payload)
        if self.transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            log.warning("websocket client too slow (%s bytes unsent); dropping it", MAX_WRITE_BUFFER)
            self.abort()

    def start_close(self, code: int = 1000) -> None:
        """Starts the closing handshake; the connection is dropped if it does not finish."""
        self._send_close(code)
        if not self.closed.done():
            self.loop.call_later(CLOSE_GRACE_S, self.abort)

    def _send_close(self, code: int) -> None:
        if self.ws_proto.state is State.OPEN:
            self.ws_proto.send_close(code)
            self._flush()

    def abort(self) -> None:
        self.transport.abort()
        self._set_closed()

    def _flush(self) -> None:
        for chunk in self.ws_proto.data_to_send():
            if chunk:
                self.transport.write(chunk)
            else:  # the protocol's end-of-stream marker: close the TCP connection
                self.transport.close()
                self._set_closed()

    def _set_closed(self) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        if self._early_wake is not None:
            self._early_wake.set()

    # ---- receiving -------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        self.ws_proto.receive_data(data)
        events = self.ws_proto.events_received()
        self._flush()  # pongs for pings, close replies
        for event in events:
            if isinstance(event, Frame):
                self._frame(event)
        if self.ws_proto.state is State.CLOSED:
            self._set_closed()

    def _frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if not frame.fin:
                self._fragments, self._fragment_text = [bytes(frame.data)], opcode is Opcode.TEXT
                return
            data: str | bytes = bytes(frame.data).decode() if opcode is Opcode.TEXT else bytes(frame.data)
        elif opcode is Opcode.CONT and self._fragments:
            self._fragments.append(bytes(frame.data))
            if not frame.fin:
                return
            whole = b"".join(self._fragments)
            self._fragments = []
            data = whole.decode() if self._fragment_text else whole
        else:  # control frames: the protocol answered them already
            return
        if self.on_data is not None:
            self.on_data(data)
        else:
            if self._early is None:
                self._early = collections.deque()
            self._early.append(data)
            if self._early_wake is not None:
                self._early_wake.set()

    async def receive(self, timeout: float) -> str | bytes | None:
        """The next frame, before `on_data` takes over (the polling-to-websocket upgrade)."""
        deadline = self.loop.time() + timeout
        while not self._early:  # None or empty
            if self.closed.done():
                return None
            self._early_wake = asyncio.Event()
            try:
                await asyncio.wait_for(self._early_wake.wait(), max(0.0, deadline - self.loop.time()))
            except TimeoutError:
                return None
        return self._early.popleft()

    def take_early(self) -> list[str | bytes]:
        frames, self._early = list(self._early or ()), None
        return frames

    # ---- asyncio.Protocol -------------------------------------------------------------
    def pause_writing(self) -> None:  # backpressure is the 8 MB cut-off in send()
        pass

    def resume_writing(self) -> None:
        pass

    def eof_received(self) -> bool:
        self.ws_proto.receive_eof()
        self._flush()
        self._set_closed()
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.ws_proto.state is not State.CLOSED:
            self.ws_proto.state = State.CLOSED
        self._set_closed()

    def end_connection(self, code: int = 1000) -> None:
        self._send_close(code)
        if not self.transport.is_closing():
            self.transport.close()
        self._set_closed()



class SanicWebSocketDriver:
    """`_async["websocket"]` for python-engineio: accepts the upgrade on Sanic's connection, then
    hands the transport to a WebSocketConnection and lets Sanic's request end.

    Sanic would otherwise keep, for every open websocket, its HTTP protocol, the request with
    its headers, the connection task and the coroutines of the whole request path alive (about
    a third of an idle socket's memory).
    """

    def __init__(self, handler: Callable[[WebSocketConnection], Any], server: Any) -> None:
        self.handler = handler
        self.server = server

    async def __call__(self, environ: dict[str, Any]) -> Any:
        request = engineio_adapter.sanic_request(environ)
        # The environ lives as long as the socket; rebuilt, its table shrinks too.
        kept = {key: environ[key] for key in _ENVIRON_KEPT if key in environ}
        environ.clear()
        environ.update(kept)
        protocol = sanic_adapter.protocol_of(request)
        ws_proto = ServerProtocol(max_size=self.server.max_http_buffer_size, state=State.OPEN)
        response = ws_proto.accept(http11.Request(path=request.path, headers=Headers(request.headers)))
        if not 100 <= response.status_code <= 299:
            return engineio_adapter.bad_request(self.server, "websocket handshake refused")
        head = f"HTTP/1.1 {response.status_code} {response.reason_phrase}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in response.headers.raw_items()) + "\r\n"
        await sanic_adapter.send_raw(protocol, head.encode())
        # Sanic forgets the connection: its shutdown does not wait for it (EngineServer.close_websockets
        # closes these) and its end-of-request close() leaves it open. `early`: frames a client sent
        # with its upgrade request.
        transport, early = sanic_adapter.take_connection(protocol)
        conn = WebSocketConnection(ws_proto, transport, asyncio.get_running_loop())
        transport.set_protocol(conn)
        self.server.open_websockets.add(conn)
        # The connection's admission slot is held until its first Socket.IO connect is answered
        # (SocketServer releases it) or the websocket closes.
        slot = getattr(protocol, "admission_slot", None)
        if slot is not None:
            protocol.admission_slot = None
            environ[ADMISSION_KEY] = slot
        # Callbacks that live as long as the socket get an empty context: the current one holds
        # Sanic's request (its contextvar) and would keep it, headers and all, alive.
        conn.closed.add_done_callback(lambda _: self._closed(conn, slot), context=contextvars.Context())
        if early:
            conn.data_received(early)
        try:
            await self.handler(conn)  # returns once the socket reads and writes on its own
        except BaseException:
            conn.end_connection(1011)
            raise
        return None

    def _closed(self, conn: WebSocketConnection, slot: Slot | None) -> None:
        self.server.open_websockets.discard(conn)
        if slot is not None:
            slot.release()


class Pinger:
    """Sends the Engine.IO PING of every socket from one task.

    Every socket waits the same interval after its last PONG, so the schedule is a FIFO.
    """

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._due: collections.deque[tuple[float, DirectSocket]] = collections.deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="engineio-pinger")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def schedule(self, sock: DirectSocket) -> None:
        self._due.append((time.monotonic() + self.interval_s, sock))
        self._wake.set()

    async def _run(self) -> None:
        while True:
            if not self._due:
                self._wake.clear()
                await self._wake.wait()
                continue
            due, sock = self._due[0]
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            self._due.popleft()
            if not sock.closing and not sock.closed:
                sock.last_ping = time.time()
                sock.send_nowait(_PING)


class _RetiredQueue:
    """Stands in for the packet queue of a socket that writes straight to its websocket (that
    queue's four deques and event are a good part of an idle socket's memory). Only a packet
    sent after the websocket closed still comes here, and there is nobody left to read it."""

    def empty(self) -> bool:
        return True

    def qsize(self) -> int:
        return 0

    def put_nowait(self, pkt: Any) -> None:
        log.debug("packet after the websocket upgrade dropped from the queue: %s", pkt)

    async def put(self, pkt: Any) -> None:
        self.put_nowait(pkt)

    async def join(self) -> None:
        return None


_RETIRED_QUEUE = _RetiredQueue()


class DirectSocket(engineio_adapter.SocketBase):
    """An Engine.IO socket that writes straight onto its websocket once upgraded.

    Long-polling is unchanged: packets queue for the next GET. Its state is AsyncSocket's
    (engineio_adapter.SOCKET_STATE).
    """

    _ws: WebSocketConnection | None = None
    queue: Any  # asyncio.Queue until the websocket takes over, then _RETIRED_QUEUE
    last_ping: float | None
    connected: bool
    upgrading: bool
    upgraded: bool

    def send_nowait(self, pkt: eio_packet.Packet) -> None:
        ws = self._ws
        if ws is not None:
            ws.send(pkt.encode())
        else:
            self.queue.put_nowait(pkt)

    async def send(self, pkt: eio_packet.Packet) -> None:
        ws = self._ws
        if ws is None:
            await super().send(pkt)
        elif await self.check_ping_timeout():
            ws.send(pkt.encode())

    def schedule_ping(self) -> None:
        pinger: Pinger | None = getattr(self.server, "pinger", None)
        if pinger is None or not pinger.running:
            super().schedule_ping()
        elif self.last_ping:  # as the stock socket: one ping cycle at a time
            self.last_ping = None
            pinger.schedule(self)

    async def close(self, wait: bool = True, abort: bool = False, reason: Any = None) -> None:
        ws = self._ws
        if ws is None:
            await super().close(wait=wait, abort=abort, reason=reason)
            if abort and not self.upgraded:
                # A long-poll still waiting is answered now (python-engineio would hold it for
                # ping_interval + ping_timeout, so a polling client's disconnect took 30 s).
                self.queue.put_nowait(None)
            return
        await super().close(wait=False, abort=abort, reason=reason)  # sends CLOSE straight away
        ws.start_close(1000)

    async def run_websocket(self, ws: WebSocketConnection) -> None:
        wait_s = self.server.ping_interval + self.server.ping_timeout
        if self.connected:  # an upgrade from long-polling: probe first (Engine.IO v4)
            self.upgrading = True
            probe = await ws.receive(wait_s)
            if probe != "2probe":
                self.upgrading = False
                return
            ws.send("3probe")
            await self.queue.put(eio_packet.Packet(eio_packet.NOOP))  # ends the pending poll
            upgrade = await ws.receive(wait_s)
            if upgrade != "5":
                self.upgrading = False
                return
            self.upgrading = False
        else:
            self.connected = True
        self.upgraded = True
        # Whatever was queued (the OPEN packet, emits made during the upgrade) goes first,
        # then every send writes directly: nothing can interleave in between.
        while not self.queue.empty():
            pkt = self.queue.get_nowait()
            self.queue.task_done()
            if pkt is not None:
                ws.send(pkt.encode())
        self._ws = ws
        self.queue = _RETIRED_QUEUE  # every send writes directly from now on
        for data in ws.take_early():
            self._on_data(data)
        ws.on_data = self._on_data
        # Nothing waits for the connection to end (that coroutine chain would live as long as
        # the socket): its end closes the Engine.IO socket, so the disconnect handlers run.
        ws.closed.add_done_callback(self._websocket_closed, context=contextvars.Context())

    def _websocket_closed(self, _: asyncio.Future[None]) -> None:
        self._ws = None
        _track(self._close_after_websocket())

    async def _close_after_websocket(self) -> None:
        await super().close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_CLOSE)
        sockets = engineio_adapter.sockets(self.server)
        if sockets.get(self.sid) is self:
            del sockets[self.sid]

    def _on_data(self, data: str | bytes) -> None:
        if isinstance(data, bytes):  # a binary Socket.IO attachment
            _track(self._message(data))
            return
        kind = data[:1]
        if kind == "4":
            _track(self._message(data[1:]))
        elif kind == "3":
            self.schedule_ping()
        elif kind == "1":
            self._spawn_close()
        elif kind == "5":
            self.send_nowait(eio_packet.Packet(eio_packet.NOOP))
        # "2" (a client ping: Engine.IO v3 only) and "6" (noop) need nothing

    async def _message(self, data: str | bytes) -> None:
        handler = engineio_adapter.message_handler(self.server)
        if handler is None:
            return
        try:
            await handler(self.sid, data)
        except asyncio.CancelledError:
            raise
        except Exception:
            self.server.logger.exception("message async handler error")

    def _spawn_close(self) -> None:
        _track(super().close(wait=False, abort=True, reason=self.server.reason.CLIENT_DISCONNECT))
        if self._ws is not None:
            self._ws.start_close(1000)
