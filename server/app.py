"""App factory: builds the Sanic app from settings; listeners own every async resource."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from pathlib import Path
from typing import Any

from sanic import Request, Sanic
from sanic.response import HTTPResponse, file

from server.analytics import capability as analytics
from server.auth import capability as auth
from server.broadcasts import capability as broadcasts
from server.context import AppContext, context_of
from server.conversations import capability as conversations
from server.errors import install_error_handlers
from server.events import capability as events
from server.http import docs, operations, sdk_limits
from server.http.payloads import dumps
from server.platform.db.pool import create_pool
from server.platform.gc_tuning import freeze_long_lived
from server.platform.logging_setup import request_id_var
from server.platform.metrics import Metrics
from server.platform.redis import client as redis_client
from server.platform.redis.writer import RedisWriter
from server.realtime import capability as realtime
from server.realtime.capability import SOCKETIO_PATH
from server.segments import capability as segments
from server.settings import Settings
from server.tenancy import capability as tenancy
from server.usage import capability as usage
from server.users import capability as users
from server.webhooks import capability as webhooks

log = logging.getLogger("replyhq.app")
ROOT = Path(__file__).resolve().parent.parent
STATIC_DIR = ROOT / "static"
# Each sets up its routes and its lifecycle steps (started in this order, stopped in reverse), and
# may name the event consumers it needs (`EVENT_CONSUMERS`, run by the event workers).
CAPABILITIES = (tenancy, auth, users, conversations, analytics, events, webhooks, usage, segments, broadcasts)


def event_consumers() -> list[Any]:
    """Every capability's event consumers, new: the replica's and its event worker process's one list."""
    return [make() for capability in CAPABILITIES for make in getattr(capability, "EVENT_CONSUMERS", ())]


def create_app(settings: Settings, name: str = "replyhq") -> Sanic:
    if not settings.database_url or not settings.redis_url:
        raise ValueError("create_app needs database_url and redis_url (the CLI fills them in embedded mode)")
    ctx = AppContext(settings=settings, metrics=Metrics(), event_consumers=event_consumers())
    app = Sanic(name, ctx=ctx, dumps=dumps, configure_logging=False)
    app.config.GRACEFUL_SHUTDOWN_TIMEOUT = settings.graceful_shutdown_timeout
    app.config.REQUEST_MAX_SIZE = 1_000_000
    app.config.USE_UVLOOP = True
    app.config.FALLBACK_ERROR_FORMAT = "json"
    app.config.KEEP_ALIVE_TIMEOUT = 75
    install_error_handlers(app)
    _install_middleware(app)
    for bp in (operations.bp, docs.bp):
        app.blueprint(bp)
    _setup_platform(ctx)
    realtime.setup(app, ctx)
    for capability in CAPABILITIES:
        capability.setup(app, ctx)
    realtime.setup_presence(app, ctx)
    ctx.lifecycle.add("gc", _freeze_gc)
    _install_static(app)

    @app.before_server_start
    async def _start(app: Sanic) -> None:
        await ctx.lifecycle.start()
        log.info("replica %s serving on %s", settings.replica_id, settings.base_url)

    @app.after_server_stop
    async def _stop(app: Sanic) -> None:
        await ctx.lifecycle.stop()
        log.info("replica %s stopped", settings.replica_id)

    return app


def _setup_platform(ctx: AppContext) -> None:
    """Postgres, Redis and the shared Redis writer: opened first, closed last."""

    async def start() -> None:
        ctx.pool = await create_pool(ctx.settings, ctx.settings.database_url or "")
        ctx.redis = redis_client.connect(ctx.settings.redis_url or "")
        ctx.redis_writer = RedisWriter(ctx.redis, "redis-writer")

    async def stop() -> None:
        if getattr(ctx, "redis_writer", None) is not None:
            with contextlib.suppress(TimeoutError):
                await ctx.redis_writer.close()  # emits of the last batches still reach other replicas
        for task in ctx.tasks:
            task.cancel()
        await asyncio.gather(*ctx.tasks, return_exceptions=True)
        if getattr(ctx, "redis", None) is not None:
            await ctx.redis.aclose()
        if getattr(ctx, "pool", None) is not None:
            await ctx.pool.close()

    ctx.lifecycle.add("platform", start, stop)


async def _freeze_gc() -> None:
    freeze_long_lived()


def _install_middleware(app: Sanic) -> None:
    @app.on_request
    async def _start(request: Request) -> None:
        rid = request.headers.get("x-request-id") or uuid.uuid4().hex
        request.ctx.request_id = rid[:64]
        request.ctx.started = time.perf_counter()
        request_id_var.set(request.ctx.request_id)

    @app.on_response
    async def _finish(request: Request, response: HTTPResponse) -> None:
        if response is None:
            return
        rid = getattr(request.ctx, "request_id", None)
        if rid:
            response.headers["x-request-id"] = rid
        sdk_limits.add_headers(request, response)  # what a /v1 request counted against
        started = getattr(request.ctx, "started", None)
        if started is None or request.path.startswith(SOCKETIO_PATH):
            return
        route = request.route.path if request.route else "unmatched"
        metrics = context_of(request).metrics
        metrics.http_requests.labels(request.method, route, str(response.status)).inc()
        metrics.http_latency.labels(request.method, route).observe(time.perf_counter() - started)


def _install_static(app: Sanic) -> None:
    """The dashboard: plain HTML/JS in static/, vendor libraries from static/node_modules."""
    if not STATIC_DIR.exists():
        return
    vendor = {
        "socket.io.min.js": "socket.io-client/dist/socket.io.min.js",
        "chart.umd.min.js": "chart.js/dist/chart.umd.min.js",
    }
    for public, rel in vendor.items():
        path = STATIC_DIR / "node_modules" / rel
        if path.exists():
            app.static(f"/vendor/{public}", path, name=f"vendor_{public.replace('.', '_')}")

    @app.get("/")
    async def _index(request: Request) -> HTTPResponse:
        return await file(STATIC_DIR / "index.html")

    # Each page and asset folder is its own route: a catch-all would shadow /v1/socket.io/.
    for page in sorted(STATIC_DIR.glob("*.html")):
        app.static(f"/{page.name}", page, name=f"page_{page.stem.replace('-', '_')}")
    for folder in ("js", "css", "img"):
        if (STATIC_DIR / folder).is_dir():
            app.static(f"/{folder}", STATIC_DIR / folder, name=f"assets_{folder}")
    # Pages link /img/icon.svg; browsers and crawlers still ask for /favicon.ico by convention.
    icon = STATIC_DIR / "img" / "favicon.ico"
    if icon.exists():
        app.static("/favicon.ico", icon, name="favicon", content_type="image/x-icon")
