"""An /admin socket stops receiving the app's events once its session is signed out or its
admin removed: the server sends `session:ended` and disconnects it. Other sessions stay."""

from __future__ import annotations

import asyncio

from tests.admin_helpers import PASSWORD, call
from tests.inbox_helpers import teammate
from tests.sockets import Socket, admin_socket, sdk_socket
from tests.support import ServerProcess, http


def _sign_in(server: ServerProcess, email: str) -> dict:  # type: ignore[type-arg]
    status, body = http("POST", server.url + "/admin/auth/login", {"email": email, "password": PASSWORD})
    assert status == 200, body
    return dict(body)


async def _ended(rec: Socket, code: str) -> None:
    ended = await rec.wait_for("session:ended", timeout=10)
    assert ended["error"]["code"] == code
    for _ in range(100):
        if not rec.connected:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the socket was not disconnected")


async def test_signing_out_ends_that_sessions_socket_and_no_other(start_server, workspace) -> None:
    server = start_server(ADMIN_SOCKET_RECHECK_INTERVAL="0.3")
    laptop, phone = _sign_in(server, workspace.email), _sign_in(server, workspace.email)
    async with admin_socket(server, laptop["access_token"]) as on_laptop, \
            admin_socket(server, phone["access_token"]) as on_phone:
        status, _ = http("POST", server.url + "/admin/auth/logout", {"refresh_token": laptop["refresh_token"]})
        assert status in (200, 204)
        await _ended(on_laptop, "session_revoked")

        async with sdk_socket(server, workspace.publishable_key, "ann"):  # an event for the app's agents
            await on_phone.wait_for("presence", lambda d: d["online"])
            await asyncio.sleep(0.3)
        assert on_laptop.named("presence") == []  # nothing after the sign-out
        assert on_phone.connected and on_phone.named("session:ended") == []


async def test_removing_a_teammate_ends_their_socket(start_server, workspace) -> None:
    server = start_server(ADMIN_SOCKET_RECHECK_INTERVAL="0.3")
    owner = _sign_in(server, workspace.email)
    agent = teammate(server, owner["access_token"], "agent")
    async with admin_socket(server, agent["access_token"]) as sock:
        status, _ = call(server, "DELETE", f"/admin/api/team/{agent['admin']['id']}", owner["access_token"])
        assert status in (200, 204)
        await _ended(sock, "admin_disabled")
