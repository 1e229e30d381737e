"""Helpers for the admin API tests: sign up, log in, call with a bearer token, a refused /admin socket."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
import socketio

from tests.support import ServerProcess, http

PASSWORD = "correct horse battery"
_n = itertools.count(1)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def signup(server: ServerProcess, email: str | None = None, app_name: str = "Acme") -> dict[str, Any]:
    email = email or f"owner{next(_n)}@acme.test"
    status, body = http("POST", server.url + "/admin/auth/signup",
                        {"email": email, "password": PASSWORD, "name": "Olive Owner", "app_name": app_name})
    assert status == 201, body
    return body


def login(server: ServerProcess, email: str, password: str = PASSWORD) -> tuple[int, Any]:
    return http("POST", server.url + "/admin/auth/login", {"email": email, "password": password})


def call(server: ServerProcess, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
    return http(method, server.url + path, body, headers=bearer(token))


def invite_and_join(server: ServerProcess, owner_token: str, role: str, email: str | None = None) -> dict[str, Any]:
    """A teammate with `role` who accepted the invitation; returns their signed-in session."""
    email = email or f"{role}{next(_n)}@acme.test"
    status, inv = call(server, "POST", "/admin/api/team/invite", owner_token,
                       {"email": email, "role": role, "name": role.title()})
    assert status == 201, inv
    status, session = http("POST", server.url + "/admin/auth/accept-invite",
                           {"token": inv["invite_token"], "password": PASSWORD})
    assert status == 200, session
    return dict(session)


async def refused_admin_handshake(server: ServerProcess, auth: Any) -> dict[str, Any]:
    """The connect_error data of a refused /admin handshake."""
    errors: list[Any] = []
    sio = socketio.AsyncClient(reconnection=False)
    sio.on("connect_error", lambda data: errors.append(data), namespace="/admin")
    with pytest.raises(socketio.exceptions.ConnectionError):
        await sio.connect(server.url, socketio_path="/v1/socket.io", namespaces=["/admin"],
                          transports=["websocket"], auth=auth, wait_timeout=5)
    for _ in range(50):
        if errors:
            break
        await asyncio.sleep(0.02)
    await sio.disconnect()
    assert errors, ("no connect_error", auth)
    return errors[0]  # type: ignore[no-any-return]
