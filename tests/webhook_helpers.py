"""Webhook receivers for tests: real HTTP servers on 127.0.0.1 that check every signature with the
SDK client's verify_webhook and answer as each path is told to."""

from __future__ import annotations

import asyncio
import http.server
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from loadtests.sdk_client import WebhookVerificationError, verify_webhook
from server.dev.embedded import free_port

# A webhook server with every knob of the tests turned down: 1 s timeout, retries 100x sooner.
FAST_ENV = {"WEBHOOKS_ALLOW_PRIVATE": "true", "WEBHOOK_TIMEOUT": "1", "WEBHOOK_RETRY_SCALE": "0.01"}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    verified: dict[str, Any] | None  # the parsed body when the signature checked out


@dataclass
class Receiver:
    """`behave[path](n)` answers the n-th request (1-based) to that path with (status, headers, delay_s);
    unknown paths answer 200. `secrets[path]`: the secret(s) its requests are verified with."""

    port: int = 0
    behave: dict[str, Callable[[int], tuple[int, dict[str, str], float]]] = field(default_factory=dict)
    secrets: dict[str, list[str]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def on(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self.port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        path = request.path
        verified = None
        for secret in self.secrets.get(path, []):
            try:
                verified = verify_webhook(secret, dict(request.headers), body)
                break
            except WebhookVerificationError:
                continue
        self.received.append(Received(path, dict(request.headers), body, time.monotonic(), verified))
        n = len(self.on(path))
        status, headers, delay = self.behave.get(path, lambda _: (200, {}, 0.0))(n)
        if delay:
            await asyncio.sleep(delay)
        return web.Response(status=status, headers=headers, text="ok" if status < 300 else "nope")


class ThreadedReceiver:
    """A receiver for sync tests (the browser's): answers 200 to verified requests, 401 otherwise."""

    def __init__(self) -> None:
        self.secret = ""
        self.received: list[Received] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k: v for k, v in self.headers.items()}
                try:
                    verified: dict[str, Any] | None = verify_webhook(owner.secret, headers, body)
                except WebhookVerificationError:
                    verified = None
                owner.received.append(Received(self.path, headers, body, time.monotonic(), verified))
                self.send_response(200 if verified else 401)
                self.end_headers()
                self.wfile.write(b"verified" if verified else b"bad signature")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ThreadedReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
