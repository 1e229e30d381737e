"""Usage against a real server: traffic (users, conversations, messages by users, agents and notes,
secret-key calls, webhook deliveries, a teammate) shows in GET /admin/api/usage and equals a recount
from the rows; a redelivered batch of events and a flush retried after its commit count once."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
import pytest
import redis.asyncio as aioredis

from server.dev.embedded import EmbeddedServices
from server.events.store import START, Position, read_after
from server.tenancy.workspaces import NewWorkspace, create_workspace
from server.usage.api_calls import BATCH, COUNTERS, ApiCallMeter
from server.usage.consumer import UsageCounts
from tests.admin_helpers import PASSWORD, call
from tests.conftest import cloned_database, module_server
from tests.inbox_helpers import owner_token, teammate
from tests.support import ServerProcess
from tests.usage_helpers import drive_traffic, month_start, recount
from workers.runtime.consumer_groups import ConsumerGroup


@pytest.fixture(scope="module")
def usage_db(pg_admin_url: str, template_db: str) -> Iterator[str]:
    with cloned_database(pg_admin_url, template_db, f"usage_{os.getpid()}") as url:
        yield url


@pytest.fixture(scope="module")
def usage_server(services: EmbeddedServices, usage_db: str,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with module_server(services, usage_db, tmp_path_factory.mktemp("usage"), redis_db=13, REPLICA_ID="usage-1",
                       USAGE_FLUSH_INTERVAL="0.2", WEBHOOKS_ALLOW_PRIVATE="true",
                       WEBHOOK_RETRY_SCALE="100") as server:
        yield server


@pytest.fixture
async def usage_pool(usage_db: str) -> Any:
    pool = await asyncpg.create_pool(usage_db, min_size=1, max_size=4)
    yield pool
    await pool.close()


async def _new_workspace(pool: asyncpg.Pool) -> NewWorkspace:
    n = uuid.uuid4().hex[:8]
    return await create_workspace(pool, app_name=f"Usage {n}", email=f"usage-{n}@acme.test", password=PASSWORD,
                                  owner_name="Olive Owner")


async def _until(check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.2)


def _nonzero(daily: list[int], days: list[str]) -> dict[str, int]:
    return {d: n for d, n in zip(days, daily, strict=True) if n}


async def test_usage_matches_the_traffic_and_a_recount(usage_server: ServerProcess, usage_pool: asyncpg.Pool) -> None:
    ws = await _new_workspace(usage_pool)
    owner = owner_token(usage_server, ws)
    done = await drive_traffic(usage_server, ws, owner)
    month = month_start()

    async def settled() -> Any:
        status, usage = call(usage_server, "GET", f"/admin/api/usage?month={month:%Y-%m}", owner)
        assert status == 200, usage
        again = await recount(usage_pool, ws.app_id, month)
        ok = (usage["conversations"]["total"] == done["conversations"]
              and usage["messages"]["total"] == sum(done["messages"].values())
              and usage["api_calls"]["total"] == done["api_calls"]
              and usage["webhook_deliveries"]["total"] == again["totals"].get("webhook_deliveries", 0) > 0)
        return (usage, again) if ok else None

    found = await _until(settled)
    assert found, call(usage_server, "GET", "/admin/api/usage", owner)
    usage, again = found
    days = usage["days"]
    assert usage["month"] == f"{month:%Y-%m}" and days[0] == month.isoformat() and usage["timezone"] == "UTC"
    # What the test did.
    assert usage["seats"]["total"] == done["seats"] and usage["seats"]["pending_invites"] == done["pending_invites"]
    today = datetime.now(UTC).date().isoformat()
    assert usage["seats"]["daily"][days.index(today)] == done["seats"]
    assert all(n is None for n in usage["seats"]["daily"][days.index(today) + 1:])
    assert usage["active_users"]["total"] == done["active_users"]
    assert {k: s["total"] for k, s in usage["messages"]["by_sender"].items()} == done["messages"]
    assert usage["broadcast_recipients"]["total"] == 0 and usage["workflow_runs"]["total"] == 0
    # A recount from the rows, day by day.
    assert _nonzero(usage["conversations"]["daily"], days) == again["daily"]["conversations"]
    for kind, series in usage["messages"]["by_sender"].items():
        assert _nonzero(series["daily"], days) == again["daily"].get(f"messages.{kind}", {}), kind
    assert _nonzero(usage["webhook_deliveries"]["daily"], days) == again["daily"]["webhook_deliveries"]
    assert usage["active_users"]["total"] == again["active_users"]
    assert _nonzero(usage["api_calls"]["daily"], days) == {today: done["api_calls"]}
    for series in (usage["conversations"], usage["active_users"], usage["api_calls"], usage["messages"]):
        assert sum(series["daily"]) == series["total"]


async def test_the_usage_route_refuses_bad_months_and_roles_without_usage_read(
        usage_server: ServerProcess, usage_pool: asyncpg.Pool) -> None:
    ws = await _new_workspace(usage_pool)
    owner = owner_token(usage_server, ws)
    for bad in ("2024-13", "2024-1", "24-01", "1999-12", "2024-01-01", "x" * 300, "2024%2D00"):
        status, body = call(usage_server, "GET", f"/admin/api/usage?month={bad}", owner)
        assert status == 422, (bad, body)
        assert "month" in body["error"]["message"] and body["error"]["details"]["path"] == "?month", body
    status, old = call(usage_server, "GET", "/admin/api/usage?month=2001-02", owner)
    assert status == 200 and len(old["days"]) == 28 and old["seats"]["daily"] == [0] * 28
    assert old["messages"]["total"] == 0 and old["active_users"]["daily"] == [0] * 28
    status, future = call(usage_server, "GET", "/admin/api/usage?month=2999-12", owner)
    assert status == 200 and future["seats"]["daily"] == [None] * 31 and future["seats"]["total"] == 0
    status, current = call(usage_server, "GET", "/admin/api/usage", owner)
    assert status == 200 and current["month"] == f"{month_start():%Y-%m}"
    agent = teammate(usage_server, owner, "agent")
    status, body = call(usage_server, "GET", "/admin/api/usage", agent["access_token"])
    assert status == 403 and body["error"]["details"]["permission"] == "usage.read"
    status, _ = call(usage_server, "GET", "/admin/api/usage", "not-a-token")
    assert status == 401


async def test_a_redelivered_batch_adds_nothing_twice(workspace: NewWorkspace, db: asyncpg.Pool,
                                                      redis_url: str) -> None:
    """Replay the same stream entries to the usage group, and entries with a gap before them: every
    conversation and message is counted once, and a user's message marks them active once."""
    user = await db.fetchval("INSERT INTO end_users (app_id, external_id) VALUES ($1, 'r1') RETURNING id",
                             workspace.app_id)
    conv = uuid.uuid4()
    msg = {"sender_kind": "user", "sender_id": str(user), "is_note": False}
    async with db.acquire() as conn, conn.transaction():
        await conn.execute("INSERT INTO event_rows (type, app_id, data) VALUES ('conversation.created', $1, $2)",
                           workspace.app_id, {"conversation": {"id": str(conv)}})
        for data in ({**msg}, {**msg}, {**msg, "sender_kind": "admin", "sender_id": None},
                     {**msg, "sender_kind": "admin", "is_note": True}, {**msg, "sender_kind": "bot"}):
            await conn.execute("INSERT INTO event_rows (type, app_id, data) VALUES ('message.created', $1, $2)",
                               workspace.app_id, {"message": data})
    await db.execute("DELETE FROM usage_active_users WHERE app_id = $1", workspace.app_id)  # only the events
    redis = aioredis.from_url(redis_url)
    group = ConsumerGroup(db, redis, UsageCounts(), replica_id="r1")
    await db.execute("INSERT INTO event_consumers (name, tx, seq) VALUES ('usage', '0', 0)")
    events = await read_after(db, START, 1000)
    entries = []
    prev = START
    for e in events:
        entries.append((b"0-0", {b"prev": str(prev).encode(), b"e": msgspec.json.encode(e)}))
        prev = Position.parse(e.position)
    assert await group.handle(entries[-1:]) == len(events)  # a gap: the rest comes from Postgres
    assert await group.handle(entries) == 0  # everything again: nothing twice
    assert await group.handle(entries[2:]) == 0
    assert await group.catch_up() == 0
    counts = {r["metric"]: r["count"] for r in await db.fetch(
        "SELECT metric, sum(count)::int AS count FROM usage_daily WHERE app_id = $1 GROUP BY 1", workspace.app_id)}
    assert counts == {"conversations": 1, "messages.user": 2, "messages.admin": 1, "messages.note": 1,
                      "messages.bot": 1}
    assert await db.fetchval("SELECT count(*) FROM usage_active_users WHERE app_id = $1", workspace.app_id) == 1
    await redis.aclose()


async def test_a_flush_retried_after_its_commit_adds_nothing_twice(workspace: NewWorkspace, db: asyncpg.Pool,
                                                                   redis_url: str) -> None:
    """The Redis counters reach usage_daily once: a flusher that committed and died before deleting
    its batch leaves it to the next flush, which finds the batch id already added and only deletes it."""
    redis = aioredis.from_url(redis_url)
    meter = ApiCallMeter(db, redis, writer=None)  # type: ignore[arg-type]
    today = datetime.now(UTC).date()
    field = f"{workspace.app_id}|{today}"

    async def added() -> int:
        return int(await db.fetchval("SELECT coalesce(sum(count), 0) FROM usage_daily WHERE app_id = $1 "
                                     "AND metric = 'api_calls.secret'", workspace.app_id))

    await redis.hincrby(COUNTERS, field, 5)
    assert await meter.flush() == 5 and await added() == 5
    assert not await redis.exists(BATCH) and await meter.flush() == 0
    # The replica died after its commit, before deleting the batch: the batch is still in Redis.
    await redis.hincrby(COUNTERS, field, 3)
    done = meter._done
    meter._done = lambda **kw: asyncio.sleep(0)  # type: ignore[method-assign,assignment,return-value]
    assert await meter.flush() == 3 and await added() == 8
    assert await redis.exists(BATCH)
    meter._done = done  # type: ignore[method-assign]
    await redis.hincrby(COUNTERS, field, 4)  # meanwhile, new calls wait for the next batch
    assert await meter.flush() == 3 and await added() == 8  # the same batch again: nothing added
    assert not await redis.exists(BATCH)
    assert await meter.flush() == 4 and await added() == 12
    await redis.aclose()


async def test_a_group_that_loses_postgres_forgets_which_active_users_it_stored(
        workspace: NewWorkspace, db: asyncpg.Pool, redis_url: str) -> None:
    """A group commits asynchronously: a crash of Postgres may lose the usage group's last
    transaction, its checkpoint with it, and the events are applied again. The group
    lost its connection too, so the consumer forgets the users it remembered as stored and marks
    them active again (remembering them, it would skip them and undercount)."""
    user = await db.fetchval("INSERT INTO end_users (app_id, external_id) VALUES ($1, 'lost') RETURNING id",
                             workspace.app_id)
    await db.execute("INSERT INTO event_rows (type, app_id, data) VALUES ('message.created', $1, $2)",
                     workspace.app_id, {"message": {"sender_kind": "user", "sender_id": str(user), "is_note": False}})
    await db.execute("DELETE FROM usage_active_users WHERE app_id = $1", workspace.app_id)
    await db.execute("INSERT INTO event_consumers (name, tx, seq) VALUES ('usage', '0', 0)")
    redis = aioredis.from_url(redis_url)
    group = ConsumerGroup(db, redis, UsageCounts(), replica_id="r1", idle_catch_up_s=0.2)

    async def stored() -> tuple[int, int]:
        active = await db.fetchval("SELECT count(*) FROM usage_active_users WHERE app_id = $1", workspace.app_id)
        messages = await db.fetchval("SELECT coalesce(sum(count), 0) FROM usage_daily WHERE app_id = $1 "
                                     "AND metric = 'messages.user'", workspace.app_id)
        return int(active), int(messages)

    async def until(want: tuple[int, int]) -> None:
        for _ in range(200):
            if await stored() == want:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"usage is {await stored()}, not {want}")

    await group.start()
    try:
        await until((1, 1))
        # The crash: the group's transaction is gone, effect and checkpoint together ...
        async with db.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM usage_active_users WHERE app_id = $1", workspace.app_id)
            await conn.execute("DELETE FROM usage_daily WHERE app_id = $1", workspace.app_id)
            await conn.execute("UPDATE event_consumers SET tx = '0', seq = 0 WHERE name = 'usage'")
        # ... and so is the connection it held (the group's own, read from it to end that one only).
        held = group._conn
        assert held is not None
        await db.execute("SELECT pg_terminate_backend($1)", held.get_server_pid())
        await until((1, 1))
    finally:
        await group.stop()
        await redis.aclose()
