"""Faults with real processes: a partition owner SIGKILLed mid-stream, Redis or Postgres restarting
mid-stream.
No acknowledged message may be lost or duplicated, order must hold, and the SDK's retries with
the same client id complete the rest."""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path

import asyncpg
import redis.asyncio as aioredis

from actors.runtime.partitions import partition_of
from loadtests.sdk_client import ReplyHQClient
from server.dev.embedded import EmbeddedRedis
from server.settings import Settings
from tests.own_postgres import own_postgres
from tests.support import ServerProcess

PARTITIONS = Settings().actor_partitions  # the servers under test run with the default
TOTAL = 120


async def _stream(sender: ReplyHQClient, conversation_id: str, fault_after: int, fault) -> list[dict]:  # type: ignore[no-untyped-def]
    acked = []
    for i in range(TOTAL):
        if i == fault_after:
            await fault()
        acked.append(await sender.send(conversation_id, f"message {i}", client_id=f"c-{i}"))
    return acked


async def _observed(observer: ReplyHQClient, conversation_id: str) -> list[int]:
    seqs: list[int] = []
    while len(seqs) < TOTAL:
        try:
            _, msg = await observer.receive("message:new", timeout=3)
        except TimeoutError:
            await observer.catch_up()  # the SDK's own gap filling, as after any reconnect
            continue
        if msg["conversation_id"] == conversation_id:
            seqs.append(msg["seq"])
    return seqs


async def _assert_stored_exactly_once(db_url: str, conversation_id: str, acked: list[dict]) -> None:
    conn = await asyncpg.connect(db_url)
    rows = await conn.fetch("SELECT seq, client_id FROM messages WHERE conversation_id = $1 ORDER BY seq",
                            uuid.UUID(conversation_id))
    await conn.close()
    assert [r["seq"] for r in rows] == list(range(1, TOTAL + 1))  # gapless, none duplicated
    assert [r["client_id"] for r in rows] == [f"c-{i}" for i in range(TOTAL)]  # in send order
    assert [m["seq"] for m in acked] == list(range(1, TOTAL + 1))  # each ack carries its stored seq


async def test_killing_the_partition_owner_mid_stream_loses_and_duplicates_nothing(
        start_server, workspace, redis_url: str, db_url: str) -> None:
    replicas = {"replica-1": start_server(), "replica-2": start_server()}
    await asyncio.sleep(1.5)  # leases settle: each replica owns half the partitions
    first = ReplyHQClient(replicas["replica-1"].url, workspace.publishable_key, user_id="mover")
    await first.connect()
    conversation_id = (await first.create_conversation(subject="failover"))["conversation"]["id"]
    await first.close()

    r = aioredis.from_url(redis_url)
    owner = (await r.get(f"actors:conversation:lease:{partition_of(conversation_id, PARTITIONS)}")).decode()
    await r.aclose()
    survivor: ServerProcess = next(srv for name, srv in replicas.items() if name != owner)

    async def kill_owner() -> None:
        replicas[owner].stop(signal.SIGKILL)

    await _survives(survivor, workspace.publishable_key, db_url, kill_owner, user_id="mover",
                    conversation_id=conversation_id)


async def _survives(server: ServerProcess, api_key: str, db_url: str, fault, *,  # type: ignore[no-untyped-def]
                    user_id: str = "steady", conversation_id: str | None = None) -> None:
    """Stream TOTAL messages with `fault` a third of the way: every acked message is stored once,
    in order, and the user's other device sees each once, in seq order."""
    sender = ReplyHQClient(server.url, api_key, user_id=user_id)
    observer = ReplyHQClient(server.url, api_key, user_id=user_id)  # the user's second device
    await sender.connect()
    await observer.connect()
    try:
        if conversation_id is None:
            conversation_id = (await sender.create_conversation(subject="fault"))["conversation"]["id"]
        observing = asyncio.create_task(_observed(observer, conversation_id))
        acked = await _stream(sender, conversation_id, TOTAL // 3, fault)
        seqs = await asyncio.wait_for(observing, 30)
    finally:
        await sender.close()
        await observer.close()
    await _assert_stored_exactly_once(db_url, conversation_id, acked)
    assert seqs == list(range(1, TOTAL + 1))
    await assert_events_exactly_once(db_url)


async def assert_events_exactly_once(db_url: str, timeout: float = 20) -> None:
    """Every stored message has exactly one message.created event, and the event-counts consumer,
    once caught up, equals a recount of the events: none missed, none applied twice."""
    conn = await asyncpg.connect(db_url)
    try:
        per_message = await conn.fetch(
            """SELECT m.id, count(e.seq) AS n FROM messages m LEFT JOIN domain_events e
               ON e.type = 'message.created' AND e.message_id = m.id GROUP BY m.id""")
        assert per_message and all(r["n"] == 1 for r in per_message), [dict(r) for r in per_message if r["n"] != 1]
        recount_sql = """SELECT app_id, (occurred_at AT TIME ZONE 'UTC')::date AS day, type, count(*) AS n
                          FROM domain_events GROUP BY 1, 2, 3"""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            recount = {tuple(r.values())[:3]: r["n"] for r in await conn.fetch(recount_sql)}
            counted = {(r["app_id"], r["day"], r["type"]): r["count"]
                       for r in await conn.fetch("SELECT app_id, day, type, count FROM event_counts")}
            if counted == recount:
                return
            assert asyncio.get_running_loop().time() < deadline, {k: (counted.get(k), v) for k, v in recount.items()
                                                                  if counted.get(k) != v}
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def test_redis_restarting_mid_stream_loses_and_duplicates_nothing(start_server, workspace, db_url: str,
                                                                        tmp_path: Path) -> None:
    redis = EmbeddedRedis(tmp_path / "redis")
    redis.start()
    try:
        srv = start_server(REDIS_URL=redis.url)
        await asyncio.sleep(0.5)

        async def restart_redis() -> None:
            port = redis.port
            redis.stop()
            await asyncio.sleep(0.5)
            redis.port = port
            redis.start()

        await _survives(srv, workspace.publishable_key, db_url, restart_redis)
    finally:
        redis.stop()


async def test_postgres_restarting_mid_stream_loses_and_duplicates_nothing(start_server, tmp_path: Path) -> None:
    async with own_postgres(tmp_path, "Restart") as own:
        srv = start_server(DATABASE_URL=own.url)
        restarting: list[asyncio.Task[None]] = []

        async def restart_postgres() -> None:  # while the sends go on: some fail and are retried
            restarting.append(asyncio.create_task(own.restart()))
            await asyncio.sleep(0.2)

        await _survives(srv, own.workspace.publishable_key, own.url, restart_postgres)
        await asyncio.gather(*restarting)
