"""App factory: builds the Sanic app from settings; listeners own every async resource."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
import uuid
from pathlib import Path

from redis.exceptions import RedisError
from sanic import Request, Sanic
from sanic.response import HTTPResponse, file

from actors.conversation import ConversationHandler
from actors.runtime.host import ActorHost
from server.analytics import routes as admin_dashboard
from server.auth import routes as admin_auth
from server.auth import team_routes as admin_team
from server.conversations import admin_routes as admin_conversations
from server.conversations import sdk_routes as sdk_conversations
from server.conversations import sync_routes as sdk_sync
from server.conversations.service import MessagingService
from server.errors import install_error_handlers
from server.events import routes as event_routes
from server.events.counts import EventCounts
from server.http import docs, operations, sdk_limits
from server.http.payloads import dumps
from server.http.sdk_limits import SdkLimits
from server.platform.db.pool import create_pool
from server.platform.logging_setup import request_id_var
from server.platform.metrics import Metrics
from server.platform.rate_limits import WindowCounters
from server.platform.redis import client as redis_client
from server.platform.redis.writer import RedisWriter
from server.realtime.admin_ns import AdminNamespace
from server.realtime.client_ns import ClientNamespace
from server.realtime.fanout import Fanout
from server.realtime.manager import JsonPacket, ReplicaFanoutManager
from server.realtime.presence import Presence
from server.realtime.transport.admission import Admission
from server.realtime.transport.socket_server import SocketServer
from server.settings import Settings
from server.tenancy import account_routes as admin_account
from server.tenancy import api_key_routes as admin_api_keys
from server.tenancy.key_usage import KeyUsage
from server.users import admin_routes as admin_users
from server.users import sdk_routes as sdk_users
from server.users.identity import SdkIdentity
from workers.event_relay import EventRelay
from workers.event_retention import EventRetention
from workers.runtime.consumer_groups import ConsumerGroup
from workers.snoozes import SnoozeWorker

log = logging.getLogger("replyhq.app")
ROOT = Path(__file__).resolve().parent.parent
STATIC_DIR = ROOT / "static"
SOCKETIO_PATH = "/v1/socket.io"


def create_app(settings: Settings, name: str = "replyhq") -> Sanic:
    if not settings.database_url or not settings.redis_url:
        raise ValueError("create_app needs database_url and redis_url (the CLI fills them in embedded mode)")
    app = Sanic(name, dumps=dumps, configure_logging=False)
    app.config.GRACEFUL_SHUTDOWN_TIMEOUT = settings.graceful_shutdown_timeout
    app.config.REQUEST_MAX_SIZE = 1_000_000
    app.config.USE_UVLOOP = True
    app.config.FALLBACK_ERROR_FORMAT = "json"
    app.config.KEEP_ALIVE_TIMEOUT = 75
    app.ctx.settings = settings
    app.ctx.metrics = Metrics()
    app.ctx.admission = admission = Admission(settings.connect_concurrency,
                                              on_wait=app.ctx.metrics.handshake_waits.inc)
    app.ctx.metrics.handshakes.labels("active").set_function(lambda: admission.active)
    app.ctx.metrics.handshakes.labels("waiting").set_function(lambda: admission.waiting)

    manager = ReplicaFanoutManager(settings.redis_url, channel=settings.socketio_channel)
    sio = SocketServer(async_mode="sanic", client_manager=manager, serializer=JsonPacket,
                           cors_allowed_origins="*",
                           ping_interval=settings.socketio_ping_interval,
                           ping_timeout=settings.socketio_ping_timeout, max_http_buffer_size=1_000_000,
                           sid_prefix=settings.socketio_sid_prefix)
    sio.attach(app, socketio_path=SOCKETIO_PATH)
    sio.register_namespace(ClientNamespace(app.ctx))
    admin_ns = AdminNamespace(app.ctx)
    sio.register_namespace(admin_ns)
    app.ctx.sio = sio

    install_error_handlers(app)
    _install_middleware(app)
    app.blueprint(operations.bp)
    for sdk_bp in (sdk_users.bp, sdk_conversations.bp, sdk_sync.bp, docs.bp):
        app.blueprint(sdk_bp)
    for admin_bp in (admin_auth.bp, admin_team.bp, admin_api_keys.bp, admin_account.bp):
        app.blueprint(admin_bp)
    for inbox_bp in (admin_conversations.bp, admin_users.bp, admin_dashboard.bp, event_routes.bp):
        app.blueprint(inbox_bp)
    _install_static(app)

    @app.before_server_start
    async def _open_resources(app: Sanic) -> None:
        app.ctx.pool = await create_pool(settings, settings.database_url or "")
        app.ctx.redis = redis_client.connect(settings.redis_url or "")
        app.ctx.tasks = set()
        # Fan-out publishes and the actor host's traffic share one pipeline per tick.
        app.ctx.redis_writer = RedisWriter(app.ctx.redis, "redis-writer")
        manager.use_writer(app.ctx.redis_writer)
        if not sio.manager_initialized:
            # Subscribe to other replicas' emits now, not on the first socket connect
            # (python-socketio's default), so that socket cannot miss what is published meanwhile.
            sio.manager_initialized = True
            manager.initialize()
        sio.eio.pinger.start()
        app.ctx.fanout = Fanout(sio, app.ctx.metrics)
        handler = ConversationHandler(app.ctx.pool, app.ctx.fanout, app.ctx.metrics,
                                      commit_workers=settings.commit_workers,
                                      state_cache_size=settings.conversation_state_cache_size)
        app.ctx.conversation_handler = handler
        await handler.start()
        app.ctx.conversation_actors = ActorHost(app.ctx.redis, handler, replica_id=settings.replica_id,
                                                partitions=settings.actor_partitions, writer=app.ctx.redis_writer,
                                                metrics=app.ctx.metrics)
        await app.ctx.conversation_actors.start()
        leases = app.ctx.conversation_actors.leases
        peers = asyncio.create_task(manager.watch_peers(app.ctx.redis), name="fanout-peers")
        app.ctx.tasks.add(peers)
        if leases.live_replicas > 1:
            # Serve only once every other replica has seen this one join (they refresh the
            # membership each tick): until then they would not publish emits for our sockets.
            await asyncio.sleep(leases.tick_s * 2.5)
        # After the first heartbeat (the actor host's leases), before the first socket.
        app.ctx.presence = Presence(app.ctx.redis, sio, settings.replica_id)
        await app.ctx.presence.start()
        app.ctx.tasks.add(asyncio.create_task(app.ctx.presence.run_reaper(), name="presence-reaper"))
        app.ctx.tasks.add(asyncio.create_task(admin_ns.run_rechecks(settings.admin_socket_recheck_interval),
                                              name="admin-socket-rechecks"))
        counters = WindowCounters(app.ctx.redis)
        app.ctx.tasks.add(asyncio.create_task(counters.run(), name="rate-limit-sync"))
        app.ctx.sdk_limits = SdkLimits(settings, counters)
        app.ctx.key_usage = KeyUsage(app.ctx.pool)
        app.ctx.tasks.add(asyncio.create_task(app.ctx.key_usage.run(), name="key-usage"))
        app.ctx.sdk_identity = SdkIdentity(app.ctx.pool, app.ctx.key_usage)
        app.ctx.messaging = MessagingService(app.ctx.pool, app.ctx.conversation_actors)
        app.ctx.snoozes = SnoozeWorker(app.ctx.pool, app.ctx.redis, app.ctx.messaging,
                                       replica_id=settings.replica_id, interval_s=settings.snooze_check_interval)
        await app.ctx.snoozes.start()
        # Domain events: recorded with each change; one replica relays them to the stream, every
        # replica consumes (workers/event_*.py).
        app.ctx.event_workers = [
            EventRelay(app.ctx.pool, app.ctx.redis, replica_id=settings.replica_id, metrics=app.ctx.metrics,
                       interval_s=settings.event_relay_interval),
            ConsumerGroup(app.ctx.pool, app.ctx.redis, EventCounts(), replica_id=settings.replica_id,
                          metrics=app.ctx.metrics),
            EventRetention(app.ctx.pool, app.ctx.redis, replica_id=settings.replica_id,
                           days=settings.event_retention_days),
        ]
        for worker in app.ctx.event_workers:
            await worker.start()
        # Everything built so far lives as long as the process: keep it out of the cyclic GC's
        # scans, and collect young objects less often. With thousands of sockets the default
        # thresholds spend a large share of CPU re-scanning long-lived objects.
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
        log.info("replica %s serving on %s", settings.replica_id, settings.base_url)

    @app.before_server_stop
    async def _stop_once(app: Sanic) -> None:
        # Sanic has put SIGTERM back to its default by now: a second SIGTERM (or a late
        # redelivery of the first) would kill the process mid-shutdown with exit status -15.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        admission.close()  # connections still waiting to start their handshake go elsewhere now
        # Websockets are not Sanic's connections once accepted: close them here, while the
        # actors, the pool and Redis still serve their disconnect handlers.
        await sio.eio.close_websockets(1001)

    @app.after_server_stop
    async def _close_resources(app: Sanic) -> None:
        await sio.eio.pinger.stop()
        if getattr(app.ctx, "presence", None) is not None:
            with contextlib.suppress(RedisError, OSError):
                await app.ctx.presence.stop()  # sockets not yet unlisted go offline while the writer runs
        for worker in getattr(app.ctx, "event_workers", []):
            await worker.stop()
        if getattr(app.ctx, "snoozes", None) is not None:
            await app.ctx.snoozes.stop()
        if getattr(app.ctx, "conversation_actors", None) is not None:
            await app.ctx.conversation_actors.stop()
        if getattr(app.ctx, "conversation_handler", None) is not None:
            # Its group-commit workers hold pool connections: pool.close() would wait for them forever.
            await app.ctx.conversation_handler.close()
        if getattr(app.ctx, "redis_writer", None) is not None:
            with contextlib.suppress(TimeoutError):
                await app.ctx.redis_writer.close()  # emits of the last batches still reach other replicas
        tasks: set[asyncio.Task[None]] = getattr(app.ctx, "tasks", set())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if getattr(app.ctx, "key_usage", None) is not None:
            await app.ctx.key_usage.flush()  # the uses seen since the last flush
        if getattr(app.ctx, "redis", None) is not None:
            await app.ctx.redis.aclose()
        if getattr(app.ctx, "pool", None) is not None:
            await app.ctx.pool.close()
        log.info("replica %s stopped", settings.replica_id)

    return app


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
        metrics = request.app.ctx.metrics
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
