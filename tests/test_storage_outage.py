"""Postgres or Redis out of reach (stopped, then started again): REST answers a 503 `storage` with
Retry-After and socket events an error ack of the same, never a 500; once it is back the same
requests succeed again on the same replica, without a restart."""

from __future__ import annotations

import asyncio
import contextlib
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from loadtests.sdk_client import ReplyHQClient
from server.dev.embedded import EmbeddedRedis
from server.tenancy.workspaces import NewWorkspace
from tests.admin_helpers import PASSWORD
from tests.own_postgres import own_postgres
from tests.support import ServerProcess, http

LATE = {"subject": "during", "message": {"client_id": "during-1", "body": "anyone?"}}


@dataclass
class Session:
    server: ServerProcess
    client: ReplyHQClient  # the SDK user's socket
    sdk: dict[str, str]  # the SDK user's REST headers
    reads: list[tuple[str, dict[str, str]]]  # an admin's and the SDK user's reads, each served once


@contextlib.asynccontextmanager
async def _session(server: ServerProcess, ws: NewWorkspace) -> AsyncIterator[Session]:
    status, body = http("POST", server.url + "/admin/auth/login", {"email": ws.email, "password": PASSWORD})
    assert status == 200, body
    admin = {"Authorization": f"Bearer {body['access_token']}"}
    sdk = {"X-API-Key": ws.publishable_key, "X-User-Id": "ada"}
    client = ReplyHQClient(server.url, ws.publishable_key, user_id="ada")
    await client.connect()
    try:
        created = await client.create_conversation(subject="before", body="hello")
        reads = [("/admin/api/conversations", admin), ("/v1/conversations", sdk),
                 (f"/v1/conversations/{created['conversation']['id']}/messages", sdk)]
        for path, headers in reads:  # both keys are now checked and cached by the replica
            assert http("GET", server.url + path, headers=headers)[0] == 200
        yield Session(server, client, sdk, reads)
    finally:
        await client.close()
    assert server.log_path is not None
    assert "unhandled error" not in server.log_path.read_text(errors="replace")  # no request met a 500


async def _served_again(s: Session) -> None:
    """Every read answers 200 again within 20 s (a 503 meanwhile), and the refused send, retried with
    its client_id, is stored."""
    deadline = asyncio.get_running_loop().time() + 20
    for path, headers in s.reads:
        while (status := http("GET", s.server.url + path, headers=headers)[0]) != 200:
            assert status == 503 and asyncio.get_running_loop().time() < deadline, (path, status)
            await asyncio.sleep(0.2)
    while (resent := http("POST", s.server.url + "/v1/conversations", LATE, headers=s.sdk))[0] == 503:
        assert asyncio.get_running_loop().time() < deadline, resent
        await asyncio.sleep(0.2)
    assert resent[0] in (200, 201), resent
    assert (await s.client.call("sync", {}))["ok"] is True


def _retry_after(url: str, headers: dict[str, str]) -> tuple[int, str | None]:
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers.get("retry-after")
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("retry-after")


async def test_postgres_away_is_a_503_to_retry_and_its_return_serves_again(start_server, tmp_path: Path) -> None:
    async with own_postgres(tmp_path, "Outage") as own:
        server = start_server(DATABASE_URL=own.url)
        async with _session(server, own.workspace) as s:
            await own.stop()
            for path, headers in s.reads:
                status, body = http("GET", server.url + path, headers=headers)
                assert status == 503, (path, status, body)
                assert body["error"]["code"] in ("storage", "unavailable"), body
                assert _retry_after(server.url + path, headers) == (503, "1")
            ack: dict[str, Any] = await s.client._call_once("sync", {})
            assert ack["ok"] is False and ack["status"] == 503 and ack["error"]["code"] == "storage", ack
            sent = http("POST", server.url + "/v1/conversations", LATE, headers=s.sdk)
            assert sent[0] == 503, sent

            await own.start()
            await _served_again(s)
        conn = await asyncpg.connect(own.url)
        try:  # what was refused was not half-written: the retry stored it once
            assert await conn.fetchval("SELECT count(*) FROM messages WHERE client_id = 'during-1'") == 1
        finally:
            await conn.close()


async def test_redis_away_is_never_a_500_and_its_return_serves_again(start_server, workspace, tmp_path: Path) -> None:
    redis = EmbeddedRedis(tmp_path / "redis")
    redis.start()
    try:
        server = start_server(REDIS_URL=redis.url)
        async with _session(server, workspace) as s:
            redis.stop()
            for path, headers in s.reads:  # reads may still be served from Postgres; if not, a 503 to retry
                status, body = http("GET", server.url + path, headers=headers)
                assert status in (200, 503), (path, status, body)
            sent = http("POST", server.url + "/v1/conversations", LATE, headers=s.sdk)
            assert sent[0] in (201, 503), sent

            redis.start()  # the same port
            await _served_again(s)
    finally:
        redis.stop()
