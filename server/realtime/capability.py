"""Realtime: the Socket.IO server with the /client and /admin namespaces, fan-out and presence."""

from __future__ import annotations

import asyncio
import contextlib
import signal

from redis.exceptions import RedisError
from sanic import Sanic

from server.context import AppContext
from server.realtime.admin_ns import AdminNamespace
from server.realtime.client_ns import ClientNamespace
from server.realtime.fanout import Fanout
from server.realtime.manager import JsonPacket, ReplicaFanoutManager
from server.realtime.online import OnlineSessions
from server.realtime.presence import Presence
from server.realtime.transport.admission import Admission
from server.realtime.transport.socket_server import SocketServer
from server.tenancy.key_checks import KeyChange

SOCKETIO_PATH = "/v1/socket.io"


def setup(app: Sanic, ctx: AppContext) -> None:
    """The socket server and its fan-out; start it before the capabilities (they emit through it)."""
    settings, metrics = ctx.settings, ctx.metrics
    ctx.admission = admission = Admission(settings.connect_concurrency, on_wait=metrics.handshake_waits.inc)
    metrics.handshakes.labels("active").set_function(lambda: admission.active)
    metrics.handshakes.labels("waiting").set_function(lambda: admission.waiting)
    manager = ReplicaFanoutManager(settings.redis_url or "", channel=settings.socketio_channel)
    sio = SocketServer(async_mode="sanic", client_manager=manager, serializer=JsonPacket,
                       cors_allowed_origins="*",
                       ping_interval=settings.socketio_ping_interval,
                       ping_timeout=settings.socketio_ping_timeout, max_http_buffer_size=1_000_000,
                       sid_prefix=settings.socketio_sid_prefix)
    sio.attach(app, socketio_path=SOCKETIO_PATH)
    sio.register_namespace(ClientNamespace(ctx))
    admin_ns = AdminNamespace(ctx)
    sio.register_namespace(admin_ns)
    ctx.sio = sio

    async def start_fanout() -> None:
        # Fan-out publishes and the actor host's traffic share one pipeline per tick.
        manager.use_writer(ctx.redis_writer)
        sio.start_manager()  # subscribed to other replicas' emits before the first socket connects
        sio.eio.pinger.start()
        ctx.fanout = Fanout(sio, metrics, redis=ctx.redis, replica_id=settings.replica_id)
        ctx.online = OnlineSessions(ctx.redis)

    async def stop_fanout() -> None:
        await sio.eio.pinger.stop()

    ctx.lifecycle.add("fan-out", start_fanout, stop_fanout)

    @app.before_server_stop
    async def _drain(app: Sanic) -> None:
        # Sanic has put SIGTERM back to its default by now: a second SIGTERM (or a late
        # redelivery of the first) would kill the process mid-shutdown with exit status -15.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        admission.close()  # connections still waiting to start their handshake go elsewhere now
        # Websockets are not Sanic's connections once accepted: close them here, while the
        # actors, the pool and Redis still serve their disconnect handlers.
        await sio.eio.close_websockets(1001)


def setup_presence(app: Sanic, ctx: AppContext) -> None:
    """Presence starts after the capabilities: it needs the actor host's first heartbeat."""
    settings, sio = ctx.settings, ctx.sio
    admin_ns: AdminNamespace = sio.namespace_handlers["/admin"]
    client_ns: ClientNamespace = sio.namespace_handlers["/client"]
    manager: ReplicaFanoutManager = sio.manager

    async def key_changed(change: KeyChange) -> None:
        await client_ns.key_changed(change)
        if change.ended:
            await admin_ns.recheck()  # legacy secret-key /admin sessions of the key end too

    async def start() -> None:
        ctx.spawn(manager.watch_peers(ctx.redis), "fanout-peers")
        leases = ctx.conversation_actors.leases
        if leases.live_replicas > 1:
            # Serve only once every other replica has seen this one join (they refresh the
            # membership each tick): until then they would not publish emits for our sockets.
            await asyncio.sleep(leases.tick_s * 2.5)
        # After the first heartbeat (the actor host's leases), before the first socket.
        ctx.presence = Presence(ctx.redis, sio, settings.replica_id)
        await ctx.presence.start()
        ctx.spawn(ctx.presence.run_reaper(), "presence-reaper")
        ctx.spawn(admin_ns.run_rechecks(settings.admin_socket_recheck_interval), "admin-socket-rechecks")
        ctx.key_changes.listen(key_changed)
        ctx.spawn(client_ns.run_key_checks(), "client-key-checks")

    async def stop() -> None:
        if getattr(ctx, "presence", None) is not None:
            with contextlib.suppress(RedisError, OSError):
                await ctx.presence.stop()  # sockets not yet unlisted go offline while the writer runs

    ctx.lifecycle.add("presence", start, stop)
