"""API keys' "last used" (and from which address): written in the background after a key is used over REST or a socket,
at most once a minute, and shown by GET /admin/api/api-keys."""

from __future__ import annotations

import asyncio
from typing import Any

from loadtests.sdk_client import ReplyHQClient
from server.tenancy.key_usage import FLUSH_INTERVAL_S
from tests.admin_helpers import PASSWORD, call
from tests.support import ServerProcess, http


def _keys(server: ServerProcess, token: str) -> dict[str, dict[str, Any]]:
    status, body = call(server, "GET", "/admin/api/api-keys", token)
    assert status == 200, body
    return {k["prefix"]: k for k in body["api_keys"]}


async def _until_used(server: ServerProcess, token: str, *prefixes: str) -> dict[str, dict[str, Any]]:
    for _ in range(int(FLUSH_INTERVAL_S * 3 / 0.2)):
        keys = _keys(server, token)
        if all(keys[p]["last_used_at"] for p in prefixes):
            return keys
        await asyncio.sleep(0.2)
    raise AssertionError(f"last_used_at never written: {keys}")


async def test_keys_used_over_rest_and_socket_show_when_they_were_last_used(server: ServerProcess,
                                                                           workspace) -> None:
    status, session = http("POST", server.url + "/admin/auth/login",
                           {"email": workspace.email, "password": PASSWORD})
    assert status == 200, session
    token = session["access_token"]
    status, unused = call(server, "POST", "/admin/api/api-keys", token, {"kind": "secret", "name": "spare"})
    assert status == 201, unused
    secret, publishable = workspace.secret_key[:15], workspace.publishable_key[:15]
    assert all(k["last_used_at"] is None for k in _keys(server, token).values())

    status, _ = http("GET", server.url + "/v1/users/me",
                     headers={"x-api-key": workspace.secret_key, "x-user-id": "u-1"})
    assert status == 200
    client = ReplyHQClient(server.url, workspace.publishable_key, "u-2", transports=["websocket"])
    await client.connect()
    try:
        keys = await _until_used(server, token, secret, publishable)
        assert keys[secret]["last_used_ip"] == keys[publishable]["last_used_ip"] == "127.0.0.1"
        assert keys[unused["api_key"]["prefix"]]["last_used_at"] is None  # a key nobody used

        # Used again within the minute: the row is not rewritten.
        await client.create_conversation(body="hello")
        assert http("GET", server.url + "/v1/users/me",
                    headers={"x-api-key": workspace.secret_key, "x-user-id": "u-1"})[0] == 200
        await asyncio.sleep(FLUSH_INTERVAL_S + 1)
        again = _keys(server, token)
        assert again[secret]["last_used_at"] == keys[secret]["last_used_at"]
        assert again[publishable]["last_used_at"] == keys[publishable]["last_used_at"]
    finally:
        await client.close()
