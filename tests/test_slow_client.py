"""Clients that stop keeping up: one that stops reading is cut off once 8 MB wait for it, and the
user's other devices keep getting every message meanwhile (one slow phone never holds a
replica's memory or the others' messages hostage); one that stops answering the Engine.IO pings
is dropped after the ping timeout, while a live one stays. These clients speak raw websocket
frames (the `websockets` sans-I/O protocol) so that they can really stop."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable
from urllib.parse import urlparse

from websockets.client import ClientProtocol
from websockets.uri import parse_uri

from loadtests.sdk_client import ReplyHQClient
from tests.sockets import open_socket
from tests.support import ServerProcess

BODY = "x" * 15_000  # just under MAX_MESSAGE_BYTES: about 15 KB per message:new


def _raw_client(server: ServerProcess, api_key: str, user_id: str) -> socket.socket:
    """A connected /client socket (Engine.IO open and Socket.IO connect done) that reads nothing more."""
    url = urlparse(server.url)
    proto = ClientProtocol(parse_uri(f"ws://{url.hostname}:{url.port}/v1/socket.io/?EIO=4&transport=websocket"))
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # little for the kernel to absorb
    sock.connect((url.hostname, url.port))
    sock.settimeout(10)

    def send_all() -> None:
        for chunk in proto.data_to_send():
            sock.sendall(chunk)

    def next_text() -> str:
        while True:
            for event in proto.events_received():
                if getattr(event, "data", None) is not None and event.opcode.name == "TEXT":
                    return bytes(event.data).decode()
            proto.receive_data(sock.recv(65536))

    proto.send_request(proto.connect())
    send_all()
    assert next_text().startswith("0")  # Engine.IO open
    proto.send_text(("40/client," + json.dumps({"api_key": api_key, "user_id": user_id})).encode())
    send_all()
    assert next_text().startswith("40/client,")  # Socket.IO connected
    return sock


def _cut_off(sock: socket.socket, timeout: float) -> bool:
    """Whether the server closed the connection: read until EOF or a reset (or the timeout)."""
    deadline = time.monotonic() + timeout
    sock.settimeout(0.5)
    while time.monotonic() < deadline:
        try:
            if not sock.recv(1 << 20):
                return True
        except ConnectionResetError:
            return True
        except TimeoutError:
            continue
    return False


async def test_a_client_that_stops_reading_is_cut_off_and_slows_nobody(server: ServerProcess, workspace) -> None:
    slow = await asyncio.to_thread(_raw_client, server, workspace.publishable_key, "ann")
    sender = ReplyHQClient(server.url, workspace.publishable_key, "ann")
    laptop = ReplyHQClient(server.url, workspace.publishable_key, "ann")
    await sender.connect()
    await laptop.connect()
    try:
        conv = (await sender.create_conversation(subject="big"))["conversation"]["id"]
        sent = 1_000  # about 15 MB for the slow socket: past 8 MB plus what the kernels buffer
        for i in range(sent):
            await sender.send(conv, BODY, client_id=f"big-{i}")
        seqs = []
        while len(seqs) < sent:
            _, msg = await laptop.receive("message:new", timeout=10)
            seqs.append(msg["seq"])
        assert seqs == list(range(1, sent + 1))  # the other device got all of it, in order
        assert await asyncio.to_thread(_cut_off, slow, 10), "the non-reading client was never cut off"
        assert "websocket client too slow" in server.log()
    finally:
        slow.close()
        await sender.close()
        await laptop.close()


async def test_a_client_that_stops_answering_pings_is_dropped_and_a_live_one_stays(
        start_server: Callable[..., ServerProcess], workspace) -> None:
    server = start_server(SOCKETIO_PING_INTERVAL="1", SOCKETIO_PING_TIMEOUT="1")
    mute = await asyncio.to_thread(_raw_client, server, workspace.publishable_key, "ann")  # never pongs
    try:
        async with open_socket(server.url, "/client", transports=["websocket"],  # pongs, as every Socket.IO client does
                               auth={"api_key": workspace.publishable_key, "user_id": "bea"}) as live:
            # Dropped: a CLOSE after 1 + 1 s, then the connection once the closing handshake is not
            # answered (5 s).
            assert await asyncio.to_thread(_cut_off, mute, 15), "a client that never answered a ping is still connected"
            await asyncio.sleep(3)  # more ping rounds
            assert live.connected
    finally:
        mute.close()
