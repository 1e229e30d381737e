"""Socket.IO fuzz pass: every event handler of /client and /admin (found on the namespace classes, so a
new event is covered without editing this file) gets malformed payloads (wrong types, missing and
unknown fields, null, huge strings, lone UTF-16 surrogates, NUL, deep nesting, arrays, numbers, extra
arguments) and malformed packets, and each is answered with a 4xx error ack within a second, the socket
staying usable; malformed handshakes of both namespaces get a connect_error (422) within a second.

The frames are written by hand on a raw Engine.IO websocket: a Socket.IO client would refuse to send
most of these (a lone surrogate escaped in JSON text, 3,000 levels of nesting, a reserved name)."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
from typing import Any
from urllib.parse import urlparse

import websockets

from server.realtime.admin_ns import AdminNamespace
from server.realtime.client_ns import ClientNamespace
from server.tenancy.workspaces import NewWorkspace
from tests.inbox_helpers import owner_token
from tests.support import ServerProcess

ANSWER_WITHIN_S = 1.0
DEEP_ARRAY = "[" * 1500 + "]" * 1500
DEEP_OBJECT = '{"a":' * 3000 + "1" + "}" * 3000
HUGE = "x" * 200_000  # over every field's limit, under the 1 MB frame limit
# Payloads no event takes (raw JSON text: lone surrogates stay escaped, as a JavaScript client sends them).
REFUSED_PAYLOADS = [
    "42", "-1", "4.2", "1e400", "true", "false", '""', '"not-a-conversation"', r'"\ud800"', r'"a\udc00b"',
    "[]", '[1, "two", null]', '["x", {"conversation_id": "y"}]', '{"unknown_field": 1}', '{"conversation_id": 5}',
    '{"conversation_id": null}', '{"conversation_id": []}', '{"conversation_id": {}}',
    r'{"conversation_id": "\ud800"}', r'{"conversation_id": "a\u0000b"}', r'{"body": "\ud800x", "client_id": 1}',
    '{"seq": "1", "cursor": [], "limit": -5}', json.dumps(HUGE),
    json.dumps({"conversation_id": HUGE, "client_id": HUGE, "body": HUGE}), DEEP_ARRAY, DEEP_OBJECT,
    '{"conversation_id": ' + DEEP_OBJECT + "}", '{"conversation_id": "c", "body": ' + DEEP_ARRAY + "}",
]
# Whole event packets (after the ack id) that are no event at all, or a reserved one.
REFUSED_PACKETS = ["{}", "[]", "[42]", "[null]", '"message:send"', r'["\ud800"]', "[" + DEEP_ARRAY + "]", "{bad json",
                   '["connect", {}]', '["disconnect"]', '["connect_error", {}]', "[" + json.dumps(HUGE) + "]", ""]


def events_of(namespace: type) -> list[str]:
    """The events a namespace class handles (`on_a_b` answers `a:b`; connect and disconnect are no events)."""
    return sorted(name[3:].replace("_", ":") for name, fn in inspect.getmembers(namespace, inspect.iscoroutinefunction)
                  if name.startswith("on_") and name not in ("on_connect", "on_disconnect"))


class RawSocket:
    """One websocket speaking Engine.IO v4 / Socket.IO v5 text frames written by hand."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self._ids = itertools.count(1)

    @classmethod
    async def open(cls, server: ServerProcess) -> RawSocket:
        url = urlparse(server.url)
        ws = await websockets.connect(f"ws://{url.hostname}:{url.port}/v1/socket.io/?EIO=4&transport=websocket",
                                      max_size=None)
        opened = await ws.recv()
        assert isinstance(opened, str) and opened.startswith("0"), opened  # Engine.IO open
        return cls(ws)

    async def close(self) -> None:
        await self.ws.close()

    async def _next(self, prefix: str) -> str:
        """The next Socket.IO packet starting with `prefix` (pings answered, other packets skipped)."""
        while True:
            frame = await self.ws.recv()
            if frame == "2":
                await self.ws.send("3")
            elif isinstance(frame, str) and frame.startswith("4" + prefix):
                return frame[1 + len(prefix):]

    async def _answer(self, sent: str, prefix: str) -> str:
        await self.ws.send(sent)
        try:
            return await asyncio.wait_for(self._next(prefix), ANSWER_WITHIN_S)
        except TimeoutError:
            raise AssertionError(f"no answer within {ANSWER_WITHIN_S} s to {sent[:100]!r}") from None

    async def handshake(self, ns: str, auth: str) -> tuple[str, Any]:
        """("connect", data) or ("connect_error", data), within ANSWER_WITHIN_S."""
        reply = await self._answer(f"40{ns},{auth}", "")
        kind = {"0": "connect", "4": "connect_error"}[reply[0]]
        assert reply.startswith(f"{reply[0]}{ns},"), reply
        return kind, json.loads(reply[len(ns) + 2:])

    async def call(self, ns: str, packet: str) -> Any:
        """Send an event packet (the JSON text after the ack id) and return its ack, within ANSWER_WITHIN_S."""
        ack_id = next(self._ids)
        reply = await self._answer(f"42{ns},{ack_id}{packet}", f"3{ns},{ack_id}[")
        args = json.loads("[" + reply)
        assert len(args) == 1, args
        return args[0]


def _is_error_ack(ack: Any) -> bool:
    return (isinstance(ack, dict) and ack.get("ok") is False and isinstance(ack.get("status"), int)
            and 400 <= ack["status"] < 500 and set(ack) == {"ok", "status", "error"}
            and isinstance(ack["error"].get("code"), str) and isinstance(ack["error"].get("message"), str)
            and "details" in ack["error"])


async def _fuzz(sock: RawSocket, ns: str, events: list[str]) -> int:
    """Every malformed payload and packet to every event; returns how many were answered."""
    answered = 0
    for event in events:
        name = json.dumps(event)
        for payload in REFUSED_PAYLOADS:
            ack = await sock.call(ns, f"[{name},{payload}]")
            assert _is_error_ack(ack), (ns, event, payload[:80], ack)
            answered += 1
        for packet in (f"[{name},{{}},{{}}]", f"[{name},null,1]"):  # the payload spread over arguments
            ack = await sock.call(ns, packet)
            assert _is_error_ack(ack) and ack["status"] == 422, (ns, event, packet, ack)
            answered += 1
        for packet in (f"[{name}]", f"[{name},null]", f"[{name},{{}}]"):  # no payload: taken or refused, answered
            ack = await sock.call(ns, packet)
            assert (isinstance(ack, dict) and ack.get("ok") is True) or _is_error_ack(ack), (ns, event, packet, ack)
            answered += 1
    for packet in REFUSED_PACKETS:
        ack = await sock.call(ns, packet)
        assert _is_error_ack(ack), (ns, packet[:80], ack)
        answered += 1
    return answered


async def test_every_event_answers_malformed_input_with_an_error_ack_and_the_socket_stays_usable(
        server: ServerProcess, workspace: NewWorkspace) -> None:
    client_events, admin_events = events_of(ClientNamespace), events_of(AdminNamespace)
    # the discovery finds the documented events (and whatever is added later)
    assert {"message:send", "conversation:create", "message:delivered", "message:read", "typing:start",
            "typing:stop", "sync"} <= set(client_events)
    assert {"me", "conversation:join", "conversation:leave", "typing:start", "typing:stop", "sessions:list",
            "message:send", "message:read"} <= set(admin_events)
    token = owner_token(server, workspace)
    user = await RawSocket.open(server)
    agent = await RawSocket.open(server)
    try:
        kind, _ = await user.handshake("/client", json.dumps({"api_key": workspace.publishable_key, "user_id": "ann"}))
        assert kind == "connect"
        kind, _ = await agent.handshake("/admin", json.dumps({"admin_token": token}))
        assert kind == "connect"
        answered = await _fuzz(user, "/client", client_events)
        answered += await _fuzz(agent, "/admin", admin_events)
        assert answered > 400
        # both sockets still work: the user syncs, the agent sees who it is and the user's live session
        ack = await user.call("/client", '["sync",{}]')
        assert ack["ok"] is True, ack
        ack = await agent.call("/admin", '["me"]')
        assert ack["ok"] is True and ack["role"] == "owner", ack
        ack = await agent.call("/admin", '["sessions:list"]')
        assert [s["external_user_id"] for s in ack["sessions"]] == ["ann"], ack
    finally:
        await user.close()
        await agent.close()
    assert server.log_path is not None
    assert "Traceback" not in server.log_path.read_text(errors="replace")  # nothing was an unexpected error


async def test_malformed_handshakes_get_a_connect_error_and_the_connection_can_still_connect(
        server: ServerProcess, workspace: NewWorkspace) -> None:
    key = json.dumps(workspace.publishable_key)
    client_auths = [
        f'{{"api_key": {key}, "user_id": "\\ud800"}}', f'{{"api_key": {key}, "anonymous_id": "\\ud800x"}}',
        f'{{"api_key": {key}, "user_id": "u", "device": {{"model": "\\ud800"}}}}',
        f'{{"api_key": {key}, "user_id": "u", "device": {DEEP_OBJECT}}}', '{"api_key": "\\udc00", "user_id": "u"}',
        DEEP_ARRAY, '{"api_key": ' + key + ', "user_id": "u"', r'"\ud800"']
    admin_auths = [r'{"admin_token": "\ud800"}', '{"admin_token": ' + DEEP_OBJECT + "}", DEEP_OBJECT, "{bad"]
    sock = await RawSocket.open(server)
    try:
        for ns, auths in (("/client", client_auths), ("/admin", admin_auths)):
            for auth in auths:
                kind, refused = await sock.handshake(ns, auth)
                assert kind == "connect_error", (ns, auth[:80], refused)
                assert refused["data"]["error"]["code"] == "validation_error", refused
                assert refused["data"]["error"]["details"]["path"] == "$", refused
        # the same connection then connects with a good handshake
        kind, _ = await sock.handshake("/client", json.dumps({"api_key": workspace.publishable_key, "user_id": "u"}))
        assert kind == "connect"
        assert (await sock.call("/client", '["sync"]'))["ok"] is True
    finally:
        await sock.close()
