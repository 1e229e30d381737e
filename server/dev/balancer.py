"""A small HTTP/websocket load balancer for the local cluster: connections round-robin over healthy
replicas, Engine.IO sessions stick to the replica that owns them.

Each accepted connection is piped, byte for byte, to one replica whose `/healthz` answered; a
replica that refuses a connection or fails its health check is skipped until it answers again.
The balancer reads only the head of the first request of a connection:

- a request carrying `sid=<prefix>.<...>` (Engine.IO long-polling, or the websocket upgrade of a
  polling session) goes to the replica whose `sid_prefix` that is (server/realtime/transport/replica_sids.py);
- an Engine.IO long-polling request (`transport=polling`) is forwarded with `Connection: close`,
  so the next request of the session arrives on a new connection and is routed by its own sid
  instead of riding a keep-alive connection that may belong to another replica;
- everything else (REST, the dashboard, websocket-only Socket.IO) is plain round-robin.

A real deployment puts a real load balancer in front instead; see docs/deployment.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from server.realtime.transport.replica_sids import sid_prefix_of

log = logging.getLogger("replyhq.balancer")
_PIPE_CHUNK = 65536
_HEAD_END = b"\r\n\r\n"
_HOP_BY_HOP = (b"connection", b"keep-alive")


@dataclass
class Backend:
    host: str
    port: int
    name: str = ""
    sid_prefix: str = ""  # the replica's SOCKETIO_SID_PREFIX, for sticky Engine.IO sessions
    healthy: bool = False

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Route:
    """What the head of a connection's first request says about where it must go."""

    sid_prefix: str | None = None
    polling: bool = False


def route_of(head: bytes) -> Route:
    """Route of an HTTP request head; an unparseable head routes like any other connection."""
    request_line = head.split(b"\r\n", 1)[0]
    parts = request_line.split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
        return Route()
    try:
        query = parse_qs(urlsplit(parts[1].decode("latin-1")).query)
    except ValueError:
        return Route()
    sid = (query.get("sid") or [""])[0]
    return Route(sid_prefix=sid_prefix_of(sid) if sid else None,
                 polling=(query.get("transport") or [""])[0] == "polling")


def close_after_response(head: bytes) -> bytes:
    """The same request head asking the server to close the connection after its response."""
    lines = head[: -len(_HEAD_END)].split(b"\r\n")
    kept = [lines[0]] + [line for line in lines[1:]
                         if line.split(b":", 1)[0].strip().lower() not in _HOP_BY_HOP]
    return b"\r\n".join([*kept, b"Connection: close"]) + _HEAD_END


async def check_health(backend: Backend, timeout: float = 1.0) -> bool:
    """GET /healthz over a fresh connection; only a 200 counts."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(backend.host, backend.port), timeout)
    except (OSError, TimeoutError):
        return False
    try:
        writer.write(f"GET /healthz HTTP/1.1\r\nHost: {backend.address}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout)
        return status_line.split(b" ")[1:2] == [b"200"]
    except (OSError, TimeoutError, IndexError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_PIPE_CHUNK):
            writer.write(data)
            await writer.drain()
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        # Half-close so the other side sees EOF, as a direct connection would.
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()


class Balancer:
    def __init__(self, backends: list[Backend], host: str, port: int, *, health_interval: float = 0.5,
                 backlog: int = 4096, head_timeout: float = 60.0) -> None:
        self.backends = backends
        self.host = host
        self.port = port
        self.health_interval = health_interval
        self.backlog = backlog  # a connect storm must queue, not be refused (the default is 100)
        self.head_timeout = head_timeout  # a connection that sends no request in this time is closed
        self._next = 0
        self._server: asyncio.Server | None = None
        self._health_task: asyncio.Task[None] | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self.check_all()
        self._server = await asyncio.start_server(self._accept, self.host, self.port, backlog=self.backlog,
                                                  reuse_address=True)
        if self.port == 0:
            self.port = self._server.sockets[0].getsockname()[1]
        self._health_task = asyncio.create_task(self._health_loop(), name="balancer-health")

    async def stop(self) -> None:
        if self._health_task is not None:
            self._health_task.cancel()
            await asyncio.gather(self._health_task, return_exceptions=True)
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    async def check_all(self) -> None:
        results = await asyncio.gather(*(check_health(b) for b in self.backends))
        for backend, ok in zip(self.backends, results, strict=True):
            if ok != backend.healthy:
                log.info("replica %s (%s) is %s", backend.name, backend.address, "up" if ok else "down")
            backend.healthy = ok

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.health_interval)
            await self.check_all()

    def candidates(self, sid_prefix: str | None = None) -> list[Backend]:
        """Healthy backends to try in order: the session's owner first, then round-robin from the
        one after the last used. A session whose owner is gone goes anywhere: that replica answers
        'unknown session' and the client opens a new one."""
        n = len(self.backends)
        start = self._next
        self._next = (self._next + 1) % n
        order = [self.backends[(start + i) % n] for i in range(n)]
        if sid_prefix is not None:
            order.sort(key=lambda b: b.sid_prefix != sid_prefix)  # stable: the rest keep their order
        return [b for b in order if b.healthy]

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            await self._proxy(client_reader, client_writer)
        except (OSError, TimeoutError):
            pass
        finally:
            if task is not None:
                self._connections.discard(task)
            client_writer.close()

    async def _read_head(self, reader: asyncio.StreamReader) -> bytes:
        """The first request's head (through the blank line), or whatever arrived before EOF."""
        try:
            return await asyncio.wait_for(reader.readuntil(_HEAD_END), self.head_timeout)
        except asyncio.IncompleteReadError as exc:
            return exc.partial
        except asyncio.LimitOverrunError:  # a head over 64 KiB: not ours to parse, pass it on
            return await reader.read(_PIPE_CHUNK)

    async def _proxy(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        head = await self._read_head(client_reader)
        if not head:
            return
        route = route_of(head) if head.endswith(_HEAD_END) else Route()
        if route.polling:
            head = close_after_response(head)
        for backend in self.candidates(route.sid_prefix):
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(backend.host, backend.port), 2.0)
            except (OSError, TimeoutError):
                # Died between health checks: take it out now rather than on the next check.
                backend.healthy = False
                log.warning("replica %s (%s) refused a connection", backend.name, backend.address)
                continue
            try:
                up_writer.write(head)
                upstream = asyncio.create_task(_pipe(client_reader, up_writer))
                await _pipe(up_reader, client_writer)
                # The replica closed: nothing more the client sends can be answered.
                upstream.cancel()
                await asyncio.gather(upstream, return_exceptions=True)
            finally:
                up_writer.close()
            return
        log.warning("no healthy replica for a new connection")
