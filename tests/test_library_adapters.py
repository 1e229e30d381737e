"""The library internals ReplyHQ's adapters rely on, checked against the installed libraries.

Each adapter module (server/realtime/transport/engineio_adapter.py and socketio_adapter.py,
server/http/sanic_adapter.py, server/platform/redis/redis_internals.py) is the only place that
reaches into its library; every test here names the internal it checks, so an upgrade that moves
one fails here, by name, rather than as a hang or a leak under load. No server, database or Redis
is started: these run in well under a second.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
import textwrap
import tomllib
import uuid
from importlib.metadata import version
from pathlib import Path
from typing import Any

import bidict
import engineio
import pytest
import redis.asyncio as aioredis
import socketio
from engineio import async_socket
from engineio.async_drivers import sanic as eio_sanic_driver
from packaging.requirements import Requirement
from redis.asyncio.connection import Connection as RedisConnection
from redis.connection import PythonRespSerializer
from sanic import Sanic
from sanic.http import http1
from sanic.server.protocols.http_protocol import HttpProtocol
from socketio import packet as sio_packet
from socketio.async_pubsub_manager import AsyncPubSubManager

from server.http import sanic_adapter
from server.platform.redis import redis_internals
from server.realtime.transport import engineio_adapter, socketio_adapter

ROOT = Path(__file__).resolve().parent.parent


def _source(obj: Any) -> str:
    return textwrap.dedent(inspect.getsource(obj))


def _params(func: Any) -> list[str]:
    return list(inspect.signature(func).parameters)


# ---- the pins: the installed versions are the tested ones ------------------------------------

PINNED = ("python-engineio", "python-socketio", "bidict", "sanic", "redis")


@pytest.mark.parametrize("dist", PINNED)
def test_installed_version_is_within_the_pin(dist: str) -> None:
    """pyproject.toml pins every library an adapter reaches into; these tests ran on what is installed."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    reqs = {Requirement(d).name: Requirement(d) for d in deps}
    assert dist in reqs, f"{dist} is not pinned in pyproject.toml"
    spec = reqs[dist].specifier
    assert any(s.operator == "<" for s in spec), f"{dist} needs an upper bound: {spec}"
    assert spec.contains(version(dist)), f"{dist} {version(dist)} is outside the tested range {spec}"


# ---- python-engineio ---------------------------------------------------------------------------

def _eio_server(cls: type[engineio.AsyncServer] = engineio.AsyncServer, **kwargs: Any) -> engineio.AsyncServer:
    return cls(async_mode="sanic", monitor_clients=False, **kwargs)


def test_engineio_driver_table_entries() -> None:
    """`server._async` holds the sanic mode's "websocket", "create_route" and "translate_request"."""
    server = _eio_server()
    table = server._async
    assert isinstance(table, dict)
    for key in ("websocket", "create_route", "translate_request"):
        assert key in table, key
    assert _params(table["create_route"]) == ["app", "engineio_server", "engineio_endpoint"]
    assert _params(table["translate_request"]) == ["request"]


def test_engineio_install_transport_edits_a_copy() -> None:
    server, other = _eio_server(), _eio_server()
    shared = dict(other._async)

    def websocket(handler: Any, srv: Any) -> Any:
        return None

    def create_route(app: Any, srv: Any, endpoint: str) -> None:
        return None

    engineio_adapter.install_transport(server, websocket=websocket, create_route=create_route,
                                       wrap_translate_request=lambda translate: translate)
    assert server._async["websocket"] is websocket and server._async["create_route"] is create_route
    assert other._async == shared  # another server of the mode is untouched


def test_engineio_attach_calls_create_route() -> None:
    """`attach` registers the route through `_async["create_route"](app, server, endpoint)`."""
    assert "self._async['create_route'](app, self," in _source(engineio.AsyncServer.attach)


def test_engineio_upgrade_calls_websocket_driver_with_the_socket_handler() -> None:
    """A websocket upgrade calls `_async["websocket"](sock._websocket_handler, server)`, then awaits
    the result with the environ: what SanicWebSocketDriver and SocketBase.run_websocket rely on."""
    server = _eio_server()
    calls: list[Any] = []

    class Driver:
        def __init__(self, handler: Any, srv: Any) -> None:
            calls.append((handler, srv))

        async def __call__(self, environ: dict[str, Any]) -> str:
            calls.append(environ)
            return "driven"

    class Sock(engineio_adapter.SocketBase):
        async def run_websocket(self, ws: Any) -> None:
            calls.append(("ran", ws))

    engineio_adapter.install_transport(server, websocket=Driver, create_route=lambda *a: None,
                                       wrap_translate_request=lambda translate: translate)
    sock = Sock(server, "sid1")
    environ = {"REQUEST_METHOD": "GET"}
    assert asyncio.run(sock._upgrade_websocket(environ)) == "driven"
    (handler, srv), seen = calls[0], calls[1]
    assert srv is server and seen is environ
    asyncio.run(handler("ws"))  # the handler given to the driver is the socket's run_websocket
    assert calls[-1] == ("ran", "ws")


def test_engineio_sanic_driver_environ_key() -> None:
    """python-engineio's sanic driver keeps the request under "sanic.request"."""
    assert f"'{engineio_adapter.SANIC_REQUEST_KEY}': request" in _source(eio_sanic_driver.translate_request)
    assert engineio_adapter.sanic_request({engineio_adapter.SANIC_REQUEST_KEY: "req"}) == "req"


def test_engineio_bad_request() -> None:
    response = engineio_adapter.bad_request(_eio_server(), "websocket handshake refused")
    assert response["status"].startswith("400")


def test_engineio_sockets_and_message_handler() -> None:
    server = _eio_server()
    assert engineio_adapter.sockets(server) is server.sockets and server.sockets == {}

    async def on_message(sid: str, data: Any) -> None:
        return None

    assert engineio_adapter.message_handler(server) is None
    server.on("message", on_message)
    assert engineio_adapter.message_handler(server) is on_message
    # Settings DirectSocket and SanicWebSocketDriver read off the server, as its constructor named them.
    configured = _eio_server(ping_interval=7, ping_timeout=3, max_http_buffer_size=1234)
    assert (configured.ping_interval, configured.ping_timeout, configured.max_http_buffer_size) == (7, 3, 1234)
    assert hasattr(configured, "logger")


def test_engineio_socket_state() -> None:
    """DirectSocket keeps its state in AsyncSocket's attributes and overrides these methods."""
    sock = async_socket.AsyncSocket(_eio_server(), "sid1")
    for name in engineio_adapter.SOCKET_STATE:
        assert hasattr(sock, name), name
    for name in ("put", "put_nowait", "get_nowait", "task_done", "empty", "join"):
        assert callable(getattr(sock.queue, name)), name
    engineio_adapter.queue_packet(sock, engineio.packet.Packet(engineio.packet.NOOP))
    assert sock.queue.qsize() == 1
    assert inspect.iscoroutinefunction(async_socket.AsyncSocket.check_ping_timeout)
    assert inspect.iscoroutinefunction(async_socket.AsyncSocket.send)
    assert _params(async_socket.AsyncSocket.close) == ["self", "wait", "abort", "reason"]
    assert not inspect.iscoroutinefunction(async_socket.AsyncSocket.schedule_ping)
    assert _params(async_socket.AsyncSocket._websocket_handler) == ["self", "ws"]
    for name in ("CLIENT_DISCONNECT", "TRANSPORT_CLOSE"):
        assert hasattr(engineio.AsyncServer.reason, name), name


async def test_engineio_connect_event_sees_a_plain_socket_and_the_class_switches() -> None:
    """`_handle_connect` builds a plain AsyncSocket and triggers "connect" before its first ping:
    EngineServerBase switches its class there."""

    class Marked(async_socket.AsyncSocket):
        def schedule_ping(self) -> None:  # no ping task left behind by the test
            return None

    class Server(engineio_adapter.EngineServerBase):
        socket_class = Marked

    server = _eio_server(Server)
    seen: list[type] = []

    async def on_connect(sid: str, environ: dict[str, Any]) -> None:
        seen.append(type(server.sockets[sid]))

    server.on("connect", on_connect)
    await server._handle_connect({"REQUEST_METHOD": "GET", "QUERY_STRING": ""}, "polling")
    (sock,) = server.sockets.values()
    assert type(sock) is Marked and seen == [Marked]


# ---- python-socketio and bidict -----------------------------------------------------------------

def test_socketio_rooms_are_bidicts_with_a_forward_dict() -> None:
    manager = socketio.AsyncManager()
    manager.basic_enter_room("sid1", "/client", "user:1", eio_sid="eio1")
    members = manager.rooms["/client"]["user:1"]
    assert isinstance(members, bidict.bidict)
    fwd = socketio_adapter.room_members(manager, "/client", "user:1")
    assert type(fwd) is dict and fwd == {"sid1": "eio1"}
    assert socketio_adapter.room_members(manager, "/client", "nobody") is None
    assert socketio_adapter.room_members(manager, "/admin", "user:1") is None


def test_socketio_pubsub_emit_message_shape() -> None:
    """emit_message builds the dict AsyncPubSubManager.emit publishes (the same keys)."""
    tree = ast.parse(_source(AsyncPubSubManager.emit))
    stock = next(node for node in ast.walk(tree) if isinstance(node, ast.Dict)
                 and any(isinstance(k, ast.Constant) and k.value == "method" for k in node.keys))
    keys = {k.value for k in stock.keys if isinstance(k, ast.Constant)}
    manager = socketio.AsyncRedisManager("redis://localhost:1")
    ours = socketio_adapter.emit_message(manager, "ev", ["x"], "/", "room", None)
    assert set(ours) == keys and ours["host_id"] == manager.host_id and ours["method"] == "emit"
    handler = _source(AsyncPubSubManager._handle_emit)
    for key in ("event", "data", "namespace", "room", "skip_sid", "callback", "binary"):
        assert f"'{key}'" in handler, key


def test_socketio_manager_initialized_flag() -> None:
    calls: list[str] = []

    class Manager(socketio.AsyncManager):
        def initialize(self) -> None:
            calls.append("init")

    sio = socketio.AsyncServer(client_manager=Manager())
    assert sio.manager_initialized is False
    socketio_adapter.start_manager(sio)
    socketio_adapter.start_manager(sio)
    assert calls == ["init"] and sio.manager_initialized is True
    assert "if not self.manager_initialized:" in _source(socketio.AsyncServer._handle_eio_connect)


async def test_socketio_environ_by_eio_sid() -> None:
    sio = socketio.AsyncServer()
    environ = {"REMOTE_ADDR": "1.2.3.4"}
    await sio._handle_eio_connect("eio1", environ)
    assert socketio_adapter.eio_environ(sio, "eio1") is environ
    assert socketio_adapter.eio_environ(sio, "gone") == {}


def test_socketio_engineio_server_class_hook() -> None:
    class Eio(engineio.AsyncServer):
        pass

    class Server(socketio_adapter.SocketServerBase):
        engineio_class = Eio

    assert type(Server().eio) is Eio
    assert _params(socketio.AsyncServer._handle_connect) == ["self", "eio_sid", "namespace", "data"]
    assert "await self._handle_connect(eio_sid, pkt.namespace, pkt.data)" in _source(
        socketio.AsyncServer._handle_eio_message)


def test_socketio_packet_binary_flag_and_serializer() -> None:
    assert sio_packet.Packet.uses_binary_events is True  # the stock class walks for bytes
    walked = sio_packet.Packet(sio_packet.EVENT, ["ev", b"bytes"])
    assert walked.packet_type == sio_packet.BINARY_EVENT
    plain = socketio_adapter.JsonOnlyPacket(sio_packet.EVENT, ["ev", {"a": 1}])
    assert plain.packet_type == sio_packet.EVENT and plain.encode() == '2["ev",{"a":1}]'
    assert socketio.AsyncServer(serializer=socketio_adapter.JsonOnlyPacket).packet_class \
        is socketio_adapter.JsonOnlyPacket
    decoded = socketio_adapter.JsonOnlyPacket(encoded_packet='2/admin,7["ev",1]')
    assert (decoded.packet_type, decoded.namespace, decoded.id, decoded.data) == (
        sio_packet.EVENT, "/admin", 7, ["ev", 1])


def test_socketio_redis_manager_hooks() -> None:
    """`_redis_connect` sets `redis` and `pubsub`; `_listen` is an async generator the pub/sub
    thread iterates; `_publish` takes one message."""
    marker = object()

    class Manager(socketio_adapter.RedisManagerBase):
        def make_pubsub(self, redis: Any) -> Any:
            assert isinstance(redis, aioredis.Redis)
            return marker

    manager = Manager("redis://localhost:1")
    manager._redis_connect()
    assert isinstance(manager.redis, aioredis.Redis) and manager.pubsub is marker
    assert inspect.isasyncgenfunction(socketio.AsyncRedisManager._listen)
    assert "self._listen()" in _source(AsyncPubSubManager._thread)
    assert _params(socketio.AsyncRedisManager._publish) == ["self", "data"]
    assert "await self._publish(message)" in _source(AsyncPubSubManager.emit)
    for name in ("host_id", "channel"):
        assert hasattr(manager, name), name


# ---- Sanic -------------------------------------------------------------------------------------

def test_sanic_handler_without_response_is_websocket() -> None:
    """Sanic lets a handler end without a response when it has `is_websocket`."""
    assert 'hasattr(handler, "is_websocket")' in _source(Sanic.handle_request)

    def handler() -> None:
        return None

    sanic_adapter.mark_websocket_handler(handler)
    assert hasattr(handler, "is_websocket")


def test_sanic_protocol_request_handler_and_first_request() -> None:
    """`_setup` (from `__init__`) sets `request_handler`, which the HTTP/1 loop awaits per request."""
    assert "self.request_handler = self.app.handle_request" in _source(HttpProtocol._setup)
    assert "await self.protocol.request_handler(self.request)" in inspect.getsource(http1)
    app = Sanic(f"adapter_probe_{uuid.uuid4().hex}")
    handled: list[Any] = []

    class Proto(sanic_adapter.FirstRequestProtocol):
        __slots__ = ()

        async def first_request(self, request: Any) -> None:
            handled.append(request)

    loop = asyncio.new_event_loop()
    try:
        proto = Proto(loop=loop, app=app)
        assert proto.request_handler == proto._first_request
        loop.run_until_complete(proto.request_handler("first"))
        assert handled == ["first"] and proto.request_handler == app.handle_request
    finally:
        loop.close()


def test_sanic_protocol_connection_attributes() -> None:
    """What take_connection edits: the protocol's slots and `connection_made`'s bookkeeping."""
    slots = {s for cls in HttpProtocol.__mro__ for s in getattr(cls, "__slots__", ())}
    assert {"transport", "connections", "recv_buffer", "request_handler"} <= slots
    made = _source(HttpProtocol.connection_made)
    assert "self.connections.add(self)" in made and "self.recv_buffer = bytearray()" in made
    assert inspect.iscoroutinefunction(HttpProtocol.send) and _params(HttpProtocol.send) == ["self", "data"]

    class Proto:
        def __init__(self) -> None:
            self.transport: Any = "transport"
            self.connections = {self}
            self.recv_buffer = bytearray(b"early")

    proto = Proto()
    assert sanic_adapter.take_connection(proto) == ("transport", b"early")
    assert proto.transport is None and proto.connections == set() and proto.recv_buffer == b""


def test_sanic_request_transport() -> None:
    from sanic.request import Request

    assert "transport" in Request.__slots__


# ---- redis-py ----------------------------------------------------------------------------------

def test_redis_hiredis_packer_matches_python_packer() -> None:
    """`redis.connection.HiredisRespSerializer().pack` writes the bytes redis-py's own packer does."""
    args = ("XADD", "stream", "*", "k", b"\x00v", 12, 1.5)
    python = PythonRespSerializer(6000, RedisConnection(host="localhost").encoder.encode)
    assert b"".join(redis_internals._packer.pack(*args)) == b"".join(python.pack(*args))


def test_redis_connection_class_swap_packs_pipelines_with_hiredis() -> None:
    client = redis_internals.with_hiredis_packing(aioredis.from_url("redis://localhost:1"))
    pool = client.connection_pool
    assert issubclass(pool.connection_class, redis_internals._HiredisPacking)
    assert issubclass(pool.connection_class, RedisConnection)
    conn = pool.connection_class(**pool.connection_kwargs)
    stock = RedisConnection(**pool.connection_kwargs)
    commands = [("SET", "a", "1"), ("XADD", "s", "*", "f", "v")]
    assert b"".join(conn.pack_commands(commands)) == b"".join(stock.pack_commands(commands))
    packed: list[tuple[Any, ...]] = []

    class Counting(pool.connection_class):
        def pack_command(self, *args: Any) -> list[bytes]:
            packed.append(args)
            return super().pack_command(*args)

    Counting(**pool.connection_kwargs).pack_commands(commands)
    assert packed == commands  # pipelines go through pack_command
    assert "connection_class" in _params(aioredis.ConnectionPool)
    assert re.search(r"self\.connection_class\(", _source(aioredis.ConnectionPool.make_connection))


def test_redis_pipeline_command_stack() -> None:
    pipe = aioredis.Redis().pipeline(transaction=False)
    pipe.set("a", 1)
    pipe.set("b", 2)
    pipe.set("c", 3)
    assert len(pipe) == 3
    redis_internals.drop_queued_commands(pipe, 1)
    assert len(pipe) == 1 and pipe.command_stack[0][0] == ("SET", "a", 1)


def test_redis_pubsub_push_handler() -> None:
    """server/platform/redis/pubsub.py passes `push_handler_func` (redis-py 8.1's debug-string bug)."""
    assert "push_handler_func" in _params(aioredis.client.PubSub.__init__)
