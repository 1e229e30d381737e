"""Postgres or Redis out of reach (stopped, then started again): REST answers a 503 `storage` with
Retry-After and socket events an error ack of the same, never a 500; once it is back the same
requests succeed again on the same replica, without a restart."""

from __future__ import annotations

import asyncio
import os
import urllib.request
from pathlib import Path
from typing import Any

import asyncpg

from loadtests.sdk_client import ReplyHQClient
from server.dev.embedded import EmbeddedPostgres, EmbeddedRedis
from server.platform.db.migrate import migrate
from server.tenancy.workspaces import create_workspace
from tests.admin_helpers import PASSWORD
from tests.support import http


def _retry_after(url: str, headers: dict[str, str]) -> tuple[int, str | None]:
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers.get("retry-after")
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("retry-after")


async def test_postgres_away_is_a_503_to_retry_and_its_return_serves_again(start_server, tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o755)  # the unprivileged Postgres user must reach its data dir
    pg = EmbeddedPostgres(tmp_path / "postgres")
    url = await asyncio.to_thread(pg.start)
    try:
        await migrate(url)
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
        ws = await create_workspace(pool, app_name="Outage", email="owner@outage.test", password=PASSWORD,
                                    owner_name="Olive Owner")
        await pool.close()
        srv = start_server(DATABASE_URL=url)
        status, body = http("POST", srv.url + "/admin/auth/login", {"email": ws.email, "password": PASSWORD})
        assert status == 200, body
        admin = {"Authorization": f"Bearer {body['access_token']}"}
        sdk = {"X-API-Key": ws.publishable_key, "X-User-Id": "ada"}
        client = ReplyHQClient(srv.url, ws.publishable_key, user_id="ada")
        await client.connect()
        try:
            created = await client.create_conversation(subject="before", body="hello")
            reads: list[tuple[str, dict[str, str]]] = [
                ("/admin/api/conversations", admin), ("/v1/conversations", sdk),
                (f"/v1/conversations/{created['conversation']['id']}/messages", sdk)]
            for path, headers in reads:  # both keys are now checked and cached by the replica
                assert http("GET", srv.url + path, headers=headers)[0] == 200

            port = pg.port
            await asyncio.to_thread(pg.stop)  # every pooled connection dies here
            for path, headers in reads:
                status, body = http("GET", srv.url + path, headers=headers)
                assert status == 503, (path, status, body)
                assert body["error"]["code"] in ("storage", "unavailable"), body
                assert _retry_after(srv.url + path, headers) == (503, "1")
            ack: dict[str, Any] = await client._call_once("sync", {})
            assert ack["ok"] is False and ack["status"] == 503 and ack["error"]["code"] == "storage", ack
            with_body = http("POST", srv.url + "/v1/conversations",
                             {"subject": "during", "message": {"client_id": "during-1", "body": "anyone?"}},
                             headers=sdk)
            assert with_body[0] == 503, with_body

            pg.port = port
            await asyncio.to_thread(pg.start)
            deadline = asyncio.get_running_loop().time() + 20
            for path, headers in reads:  # the same replica serves again: its dead connections are replaced
                while (status := http("GET", srv.url + path, headers=headers)[0]) != 200:
                    assert status == 503 and asyncio.get_running_loop().time() < deadline, (path, status)
                    await asyncio.sleep(0.2)
            assert (await client.call("sync", {}))["ok"] is True
            # What was refused during the outage was not half-written: a retry with the same client_id
            # stores it once.
            status, retried = http("POST", srv.url + "/v1/conversations",
                                   {"subject": "during", "message": {"client_id": "during-1", "body": "anyone?"}},
                                   headers=sdk)
            assert status == 201, retried
            conn = await asyncpg.connect(url)
            try:
                assert await conn.fetchval("SELECT count(*) FROM messages WHERE client_id = 'during-1'") == 1
            finally:
                await conn.close()
        finally:
            await client.close()
        assert srv.log_path is not None
        assert "unhandled error" not in srv.log_path.read_text(errors="replace")  # no request met a 500
    finally:
        pg.stop()


async def test_redis_away_is_never_a_500_and_its_return_serves_again(start_server, workspace, tmp_path: Path) -> None:
    redis = EmbeddedRedis(tmp_path / "redis")
    redis.start()
    try:
        srv = start_server(REDIS_URL=redis.url)
        status, body = http("POST", srv.url + "/admin/auth/login", {"email": workspace.email, "password": PASSWORD})
        assert status == 200, body
        admin = {"Authorization": f"Bearer {body['access_token']}"}
        sdk = {"X-API-Key": workspace.publishable_key, "X-User-Id": "ada"}
        client = ReplyHQClient(srv.url, workspace.publishable_key, user_id="ada")
        await client.connect()
        try:
            created = await client.create_conversation(subject="before", body="hello")
            reads: list[tuple[str, dict[str, str]]] = [
                ("/admin/api/conversations", admin), ("/v1/conversations", sdk),
                (f"/v1/conversations/{created['conversation']['id']}/messages", sdk)]
            for path, headers in reads:
                assert http("GET", srv.url + path, headers=headers)[0] == 200

            port = redis.port
            redis.stop()
            for path, headers in reads:  # reads may still be served from Postgres; if not, a 503 to retry
                status, body = http("GET", srv.url + path, headers=headers)
                assert status in (200, 503), (path, status, body)
            sent = http("POST", srv.url + "/v1/conversations",
                        {"subject": "during", "message": {"client_id": "during-1", "body": "anyone?"}}, headers=sdk)
            assert sent[0] in (201, 503), sent

            redis.port = port
            redis.start()
            deadline = asyncio.get_running_loop().time() + 20
            for path, headers in reads:
                while (status := http("GET", srv.url + path, headers=headers)[0]) != 200:
                    assert status == 503 and asyncio.get_running_loop().time() < deadline, (path, status)
                    await asyncio.sleep(0.2)
            while (resent := http("POST", srv.url + "/v1/conversations",
                                  {"subject": "during", "message": {"client_id": "during-1", "body": "anyone?"}},
                                  headers=sdk))[0] == 503:
                assert asyncio.get_running_loop().time() < deadline, resent
                await asyncio.sleep(0.2)
            assert resent[0] in (200, 201), resent
        finally:
            await client.close()
        assert srv.log_path is not None
        assert "unhandled error" not in srv.log_path.read_text(errors="replace")  # no request met a 500
    finally:
        redis.stop()
