"""The webhook dispatcher's HTTP/1.1 client: one POST per attempt over kept-alive connections.

Much lighter per request than a general client (the dispatcher's hot path): the request is one
`write` of bytes built once per endpoint plus the attempt's headers and body, and the answer is
parsed by httptools (C) in an asyncio protocol. What it does and does not do:

- the SSRF guard at connect time: every new connection resolves its host through
  `ssrf.GuardedResolver` (non-public addresses dropped) and connects to an address from that
  answer; an address-literal host goes through `ssrf.check_literal`. A kept-alive connection was
  checked when it was made;
- no redirects (a 3xx is the answer), no cookies, no proxies from the environment; TLS verified
  by the default context, with SNI;
- the first RESPONSE_SNIPPET bytes of the answer's body are kept; a longer body ends the read and
  the connection (it is not reused);
- a connection is reused only when the answer allowed it (HTTP/1.1 keep-alive, complete body) and
  it has been idle for less than IDLE_S; a reused connection that the peer had closed before any
  byte of the answer came back is replaced once by a fresh one (the receiver never answered it:
  at worst it sees the same webhook-id twice, which it deduplicates anyway).

The caller bounds the whole attempt (connect, send, answer) with its timeout.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from dataclasses import dataclass
from typing import cast
from urllib.parse import quote, urlsplit

import httptools

from server.platform import ssrf

RESPONSE_SNIPPET = 1024
IDLE_S = 4.0  # under the keep-alive timeout of common servers (node 5 s, aiohttp 15 s, nginx 75 s)
MAX_IDLE_PER_ORIGIN = 64


class SendError(Exception):
    """The attempt got no HTTP answer: `message` says why (connection failed, closed, bad answer)."""


@dataclass(frozen=True)
class Target:
    """What a URL resolves to once: the origin, the request line and Host header, the TLS name."""

    scheme: str
    host: str
    port: int
    head: bytes  # b"POST /path?q HTTP/1.1\r\nhost: ...\r\n"

    @classmethod
    def of(cls, url: str) -> Target:
        scheme, host, port = ssrf.parse(url)
        parts = urlsplit(url)
        path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
        if parts.query:
            path += "?" + quote(parts.query, safe="/%:@!$&'()*+,;=-._~?")
        name = host.strip("[]")
        host_header = name.encode("idna").decode() if not name.isascii() else name
        if ":" in host_header:
            host_header = f"[{host_header}]"
        if port != (443 if scheme == "https" else 80):
            host_header += f":{port}"
        head = f"POST {path} HTTP/1.1\r\nhost: {host_header}\r\n".encode()
        return cls(scheme, host, port, head)


class _Conn(asyncio.Protocol):
    """One connection; one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = time.monotonic()
        self._reset()

    def _reset(self) -> None:
        self.waiter: asyncio.Future[None] | None = None
        self.status = 0
        self.retry_after: str | None = None
        self.body = bytearray()
        self.got_bytes = False
        self.headers_done = False
        self.complete = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not its subclasses

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._finish(SendError("the receiver switched protocols"))
        except httptools.HttpParserError as exc:
            self._finish(SendError(f"invalid HTTP answer: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.headers_done:  # a body read until the connection closed
            self._finish(None)
        else:
            self._finish(SendError(f"the connection closed{f': {exc}' if exc else ''}"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"retry-after":
            self.retry_after = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.headers_done = self.status >= 200  # an interim 1xx answer is followed by the real one

    def on_body(self, body: bytes) -> None:
        if len(self.body) < RESPONSE_SNIPPET:
            self.body += body[:RESPONSE_SNIPPET - len(self.body) + 1]
        if len(self.body) > RESPONSE_SNIPPET:  # enough of it: stop reading; the connection goes
            del self.body[RESPONSE_SNIPPET:]
            self.closed = True
            self._finish(None)

    def on_message_complete(self) -> None:
        if not self.headers_done:  # 1xx
            self.retry_after = None
            return
        self.complete = True
        if not self.parser.should_keep_alive():
            self.closed = True
        self._finish(None)

    def _finish(self, exc: Exception | None) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            if exc is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(exc)

    async def request(self, data: bytes) -> None:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        await self.waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Sender:
    """Kept-alive connections per origin; `post` sends one attempt."""

    def __init__(self, *, allow_private: bool) -> None:
        self.allow_private = allow_private
        self.resolver = ssrf.GuardedResolver(allow_private=allow_private)
        self._idle: dict[tuple[str, str, int], list[_Conn]] = {}
        self._targets: dict[str, Target] = {}
        self._ssl: ssl.SSLContext | None = None

    def target(self, url: str) -> Target:
        t = self._targets.get(url)
        if t is None:
            if len(self._targets) > 10_000:
                self._targets.clear()
            t = self._targets[url] = Target.of(url)
        return t

    async def post(self, url: str, headers: bytes, body: bytes) -> tuple[int, str, str | None]:
        """(status, the answer's first KB, Retry-After). `headers`: b"name: value\\r\\n" lines without
        Host and Content-Length. Raises ssrf.UrlRefused, SendError, OSError (connect)."""
        t = self.target(url)
        data = b"".join((t.head, headers, b"content-length: ", str(len(body)).encode(), b"\r\n\r\n", body))
        key = (t.scheme, t.host, t.port)
        conn = self._reuse(key)
        if conn is not None:
            try:
                await conn.request(data)
            except SendError:
                conn.close()
                if conn.got_bytes:
                    raise
                conn = None  # closed by the peer while idle: once more on a fresh connection
            except BaseException:
                conn.close()
                raise
        if conn is None:
            conn = await self._connect(t, url)
            try:
                await conn.request(data)
            except BaseException:
                conn.close()
                raise
        status, text, retry_after = conn.status, conn.body.decode("utf-8", "replace"), conn.retry_after
        if conn.closed or not conn.complete:
            conn.close()
        else:
            conn._reset()
            conn.idle_since = time.monotonic()
            idle = self._idle.setdefault(key, [])
            if len(idle) < MAX_IDLE_PER_ORIGIN:
                idle.append(conn)
            else:
                conn.close()
        return status, text, retry_after

    def _reuse(self, key: tuple[str, str, int]) -> _Conn | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < IDLE_S:
                return conn
            conn.close()
        return None

    async def _connect(self, t: Target, url: str) -> _Conn:
        """A new connection, checked by the SSRF guard now (the name resolved again)."""
        ssrf.check_literal(url, allow_private=self.allow_private)
        loop = asyncio.get_running_loop()
        literal = ssrf.literal(t.host)
        if literal is not None:
            addresses = [str(literal)]
        else:
            found = await self.resolver.resolve(t.host, t.port, socket.AF_UNSPEC)
            addresses = [str(r["host"]) for r in found]
        tls = None
        if t.scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            tls = self._ssl
        last: OSError | None = None
        for address in addresses:
            try:
                _, conn = await loop.create_connection(
                    _Conn, address, t.port, ssl=tls, server_hostname=t.host.strip("[]") if tls else None)
                return conn
            except OSError as exc:
                last = exc
        raise last or OSError(f"{t.host} did not resolve")

    def sweep(self) -> None:
        """Close the connections idle too long."""
        now = time.monotonic()
        for key in list(self._idle):
            keep = []
            for conn in self._idle[key]:
                if conn.closed or now - conn.idle_since >= IDLE_S:
                    conn.close()
                else:
                    keep.append(conn)
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]

    async def close(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()
        await self.resolver.close()
