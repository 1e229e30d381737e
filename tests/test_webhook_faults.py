"""Webhooks through faults, with two real server processes, their own Postgres and Redis, and a
receiver checking every signature: SIGKILL the replica doing most of the dispatching, restart
Redis, restart Postgres, all mid-stream. Every message's event reaches the receiver, verified, and
a repeat is only ever a retry of the same webhook-id."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import defaultdict
from pathlib import Path

import asyncpg

from loadtests.sdk_client import ReplyHQClient
from server.dev.embedded import EmbeddedPostgres, EmbeddedRedis
from server.platform.db.migrate import migrate
from server.tenancy.workspaces import create_workspace
from tests.admin_helpers import PASSWORD, call, login
from tests.webhook_helpers import FAST_ENV, Receiver

TOTAL = 60


async def test_every_event_is_delivered_through_a_killed_replica_and_restarts(start_server, tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o755)  # the unprivileged Postgres user must reach its data dir
    pg = EmbeddedPostgres(tmp_path / "postgres")
    redis = EmbeddedRedis(tmp_path / "redis")
    url = await asyncio.to_thread(pg.start)
    redis.start()
    receiver = await Receiver().start()
    receiver.behave["/hook"] = lambda n: (200, {}, 0.2)  # slow enough that attempts are in flight at the kill
    try:
        await migrate(url)
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
        ws = await create_workspace(pool, app_name="Faults", email="owner@faults.test", password=PASSWORD,
                                    owner_name="Olive Owner")
        await pool.close()
        env = {**FAST_ENV, "DATABASE_URL": url, "REDIS_URL": redis.url}
        dispatcher = start_server(**env)  # does most of the sending: the other keeps one attempt in flight
        survivor = start_server(**env, WEBHOOK_CONCURRENCY="1")
        token = (await asyncio.to_thread(login, survivor, ws.email))[1]["access_token"]
        status, created = await asyncio.to_thread(call, survivor, "POST", "/admin/webhooks", token,
                                                  {"url": receiver.url("/hook"), "event_types": ["message.created"]})
        assert status == 201, created
        receiver.secrets["/hook"] = [created["secret"]]

        async def restart_redis() -> None:
            port = redis.port
            redis.stop()
            await asyncio.sleep(0.5)
            redis.port = port
            redis.start()

        async def restart_postgres() -> None:
            port = pg.port
            await asyncio.to_thread(pg.stop)
            await asyncio.sleep(1)
            pg.port = port
            await asyncio.to_thread(pg.start)

        async def kill_dispatcher() -> None:
            for _ in range(100):  # once deliveries are flowing
                if receiver.received:
                    break
                await asyncio.sleep(0.05)
            dispatcher.stop(signal.SIGKILL)

        sender = ReplyHQClient(survivor.url, ws.publishable_key, user_id="steady")
        await sender.connect()
        restarting: list[asyncio.Task[None]] = []
        try:
            conv = (await sender.create_conversation(subject="hooks"))["conversation"]
            sent = []
            for i in range(TOTAL):
                if i == TOTAL // 4:
                    await kill_dispatcher()
                elif i == TOTAL // 2:
                    await restart_redis()
                elif i == 3 * TOTAL // 4:
                    restarting.append(asyncio.create_task(restart_postgres()))  # sends go on meanwhile
                    await asyncio.sleep(0.2)
                sent.append((await sender.send(conv["id"], f"m{i}", client_id=f"c-{i}"))["id"])
            await asyncio.gather(*restarting)
        finally:
            await sender.close()

        ids_of: dict[str, set[str]] = defaultdict(set)

        def delivered() -> bool:
            for r in receiver.on("/hook"):
                if r.verified is not None:
                    ids_of[r.verified["data"]["message"]["id"]].add(r.headers["webhook-id"])
            return set(sent) <= set(ids_of)

        deadline = time.monotonic() + 60
        while not delivered():
            assert time.monotonic() < deadline, f"{len(set(sent) - set(ids_of))} of {TOTAL} never delivered"
            await asyncio.sleep(0.2)
        assert all(r.verified is not None for r in receiver.on("/hook"))  # every request was signed right
        assert all(len(ids) == 1 for ids in ids_of.values()), "a repeat with another webhook-id"
        assert set(ids_of) == set(sent)
        # What the killed replica sent but never recorded is sent again once its lease ends.
        conn = await asyncpg.connect(url)
        try:
            while True:
                rows = await conn.fetch("SELECT status, count(*) AS n FROM webhook_deliveries GROUP BY status")
                if {r["status"]: r["n"] for r in rows} == {"delivered": TOTAL}:
                    break
                assert time.monotonic() < deadline, [dict(r) for r in rows]
                await asyncio.sleep(0.2)
        finally:
            await conn.close()
        delivered()
        assert all(len(ids) == 1 for ids in ids_of.values()), "a repeat with another webhook-id"
    finally:
        await receiver.stop()
        redis.stop()
        pg.stop()
