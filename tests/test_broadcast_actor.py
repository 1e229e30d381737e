"""The per-broadcast actor on real servers: a send reaches every online SDK client once, personalised,
and everybody else in /v1/sync; the rate holds; pause, resume and cancel act within a batch; and a
run survives its owner being SIGKILLed, Redis restarting and Postgres restarting mid-send, sending
nobody anything twice."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg

from loadtests.sdk_client import ReplyHQClient
from server.broadcasts import click_tokens
from server.dev.embedded import EmbeddedRedis
from server.platform.db.pool import init_connection
from server.tenancy.workspaces import NewWorkspace
from tests.admin_helpers import call
from tests.broadcast_helpers import (
    act,
    admin_token,
    assert_counters_match_recount,
    create_broadcast,
    new_broadcast,
    next_run,
    owner_of,
    run_row,
    seed_users,
    send_now,
    wait_run,
)
from tests.conftest import TEST_JWT_SECRET
from tests.own_postgres import own_postgres
from tests.sockets import admin_socket
from tests.support import ServerProcess


class Device:
    """An SDK client that keeps every broadcast:message it receives live."""

    def __init__(self, url: str, key: str, user_id: str) -> None:
        self.client = ReplyHQClient(url, key, user_id=user_id)
        self.live: list[dict[str, Any]] = []
        self.client.on("broadcast:message", self.live.append)

    async def __aenter__(self) -> Device:
        await self.client.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.close()

    async def pending(self) -> list[dict[str, Any]]:
        status, page = await self.client.rest("GET", "/v1/sync")
        assert status == 200, page
        return list(page["broadcasts"])


async def _usage_recipients(db: asyncpg.Pool, app_id: uuid.UUID, expected: int, timeout: float = 20) -> None:
    """The usage consumer counts broadcast_recipients from the batches' counts."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        got = await db.fetchval("""SELECT coalesce(sum(count), 0) FROM usage_daily
                                   WHERE app_id = $1 AND metric = 'broadcast_recipients'""", app_id)
        if got == expected:
            return
        assert asyncio.get_running_loop().time() < deadline, (got, expected)
        await asyncio.sleep(0.2)


async def test_a_send_reaches_each_online_client_once_personalised_and_the_others_in_sync(
        start_server, workspace: NewWorkspace, db: asyncpg.Pool) -> None:
    server = start_server()
    users = await seed_users(db, workspace.app_id, 300)
    by_external = {ext: (uid, name) for uid, ext, name in users}
    token = admin_token(server, workspace.email)
    online = ["u-1", "u-2", "u-3", "u-4"]  # u-3 has no name: the fallback
    devices = [Device(server.url, workspace.publishable_key, ext) for ext in online]
    second = Device(server.url, workspace.publishable_key, "u-1")  # the same user's other device
    async with admin_socket(server, token) as admin:
        for d in [*devices, second]:
            await d.__aenter__()
        try:
            bid = new_broadcast(server, token, rate=1000)
            run_id = await send_now(server, token, db, bid)
            done = await wait_run(db, run_id, status=("completed",))
            await asyncio.sleep(0.5)  # anything sent twice would arrive by now
            for ext, d in zip(online, devices, strict=True):
                assert len(d.live) == 1, (ext, d.live)
                got = d.live[0]
                name = by_external[ext][1]
                assert got["text"] == f"Hi {name or 'there'}, see what's new"
                assert got["broadcast_id"] == str(bid)
                assert got["sender"] == {"id": str(workspace.admin_id), "name": "Olive Owner"}
                run, ord_ = got["delivery_id"].rsplit(".", 1)
                assert run == str(run_id)
                stored = await db.fetchval("SELECT user_id FROM broadcast_recipients WHERE run_id = $1 AND ord = $2",
                                           run_id, int(ord_))
                assert stored == by_external[ext][0]
                assert got["button"]["label"] == "See what's new"
                token = got["button"]["url"].rsplit("/v1/r/", 1)[1]
                assert got["button"]["url"] == server.url + "/v1/r/" + token  # the redirect, never the stored URL
                assert click_tokens.verify(TEST_JWT_SECRET, token) == got["delivery_id"]
                assert click_tokens.verify(TEST_JWT_SECRET, token[:-2] + "xx") is None
            assert [m["delivery_id"] for m in second.live] == [devices[0].live[0]["delivery_id"]]

            # Offline users find it in sync (sent, not yet delivered), personalised the same way.
            async with Device(server.url, workspace.publishable_key, "u-10") as late:
                pending = await late.pending()
                assert late.live == []
            assert len(pending) == 1 and pending[0]["text"] == "Hi Name 10, see what's new"
            assert pending[0]["broadcast_id"] == str(bid) and pending[0]["delivery_id"].startswith(str(run_id))

            progress = [p for p in admin.named("broadcast:progress") if p["run_id"] == str(run_id)]
            assert progress and progress[-1] == {"broadcast_id": str(bid), "run_id": str(run_id), "targeted": 300,
                                                 "sent": 300, "status": "completed"}
        finally:
            for d in [*devices, second]:
                await d.__aexit__()
    assert done["broadcast_status"] == "completed"
    assert await assert_counters_match_recount(db, run_id) == {"targeted": 300, "sent": 300}
    kinds = Counter(r["type"] for r in await db.fetch(
        "SELECT type FROM domain_events WHERE type LIKE 'broadcast.%' AND data::text LIKE '%' || $1 || '%'",
        str(run_id)))
    assert kinds["broadcast.run_started"] == 1 and kinds["broadcast.messages_sent"] >= 1
    completed = await db.fetchval("""SELECT data FROM domain_events WHERE type = 'broadcast.run_completed'
                                     AND app_id = $1""", workspace.app_id)
    assert completed["broadcast"]["id"] == str(bid) and completed["broadcast"]["stats"]["sent"] == 300
    await _usage_recipients(db, workspace.app_id, 300)


async def test_the_rate_holds_pause_stops_and_resume_finishes_and_cancel_stops(
        start_server, workspace: NewWorkspace, db: asyncpg.Pool) -> None:
    server = start_server()
    token = admin_token(server, workspace.email)
    await seed_users(db, workspace.app_id, 240)
    rate = 40  # a batch of 8 every 0.2 s
    bid = new_broadcast(server, token, rate=rate)
    run_id = await send_now(server, token, db, bid)
    await wait_run(db, run_id, sent_at_least=40)
    assert await act(server, token, bid, "pause") == "paused"
    paused = await run_row(db, run_id)
    assert paused["status"] == "paused"
    assert paused["broadcast_status"] == "paused" and paused["sent"] < 240
    await asyncio.sleep(1.0)  # a paused broadcast sends nothing more
    assert (await run_row(db, run_id))["sent"] == paused["sent"]
    assert await act(server, token, bid, "resume") == "sending"
    done = await wait_run(db, run_id, status=("completed",))
    assert done["broadcast_status"] == "completed"
    assert await assert_counters_match_recount(db, run_id) == {"targeted": 240, "sent": 240}
    # The rate: in no second were more sent than the rate plus a batch saved up at the start and
    # at the resume (slower is fine: a busy machine only spreads them out).
    sent_at = [r["sent_at"].timestamp() for r in await db.fetch(
        "SELECT sent_at FROM broadcast_recipients WHERE run_id = $1 ORDER BY sent_at", run_id)]
    busiest = max(sum(1 for t in sent_at[i:] if t - start < 1.0) for i, start in enumerate(sent_at))
    assert busiest <= rate + 2 * 8, busiest

    bid2 = new_broadcast(server, token, rate=rate)
    run2 = await send_now(server, token, db, bid2)
    await wait_run(db, run2, sent_at_least=16)
    assert await act(server, token, bid2, "cancel") == "cancelled"
    cancelled = await run_row(db, run2)
    assert cancelled["status"] == "cancelled"
    assert cancelled["broadcast_status"] == "cancelled" and cancelled["sent"] < 240
    await asyncio.sleep(1.0)
    assert (await run_row(db, run2))["sent"] == cancelled["sent"]
    counted = await assert_counters_match_recount(db, run2)
    assert counted == {"targeted": 240, "sent": cancelled["sent"]}
    changes = await db.fetch("""SELECT data ->> 'previous_status' AS previous, data -> 'broadcast' ->> 'status' AS now
                                FROM domain_events WHERE type = 'broadcast.status_changed' ORDER BY seq""")
    assert [(c["previous"], c["now"]) for c in changes] == [
        ("draft", "sending"), ("sending", "paused"), ("paused", "sending"),  # send-now, pause, resume
        ("draft", "sending"), ("sending", "cancelled")]


async def test_a_recurring_broadcast_reaches_each_user_once_and_a_lost_segment_fails_the_run(
        start_server, workspace: NewWorkspace, db: asyncpg.Pool) -> None:
    server = start_server()
    token = admin_token(server, workspace.email)
    await seed_users(db, workspace.app_id, 30)
    recurring = {"kind": "recurring", "cron": "0 9 * * 1", "timezone": "Europe/Paris", "end_at": None,
                 "every_occurrence": False}
    bid, first = await create_broadcast(db, workspace.app_id, workspace.admin_id, schedule=recurring)
    await db.execute("UPDATE broadcasts SET next_run_at = now() + interval '7 days' WHERE id = $1", bid)
    done = await wait_run(db, first, status=("completed",))
    assert done["broadcast_status"] == "scheduled"  # it has a next occurrence
    assert (done["targeted"], done["sent"]) == (30, 30)
    newcomers = await seed_users(db, workspace.app_id, 5, first=30)  # joined since: only they get the next one
    second = await next_run(db, bid)
    done = await wait_run(db, second, status=("completed",))
    assert (done["targeted"], done["sent"]) == (5, 5)
    got = {r["user_id"] for r in await db.fetch("SELECT user_id FROM broadcast_recipients WHERE run_id = $1", second)}
    assert got == {uid for uid, _, _ in newcomers}
    await assert_counters_match_recount(db, second)

    # A segment audience: who is in the segment when the run starts.
    status, segment = await asyncio.to_thread(call, server, "POST", "/admin/api/segments", token, {
        "name": "Named 1x", "filter": {"all": [{"field": "name", "op": "contains", "value": "Name 1"}]}})
    assert status == 201, segment
    named = await db.fetchval("SELECT count(*) FROM end_users WHERE app_id = $1 AND name LIKE '%Name 1%'",
                              workspace.app_id)
    bid3 = new_broadcast(server, token, audience={"segment_id": segment["id"]})
    run3 = await send_now(server, token, db, bid3)
    done = await wait_run(db, run3, status=("completed",))
    assert (done["targeted"], done["sent"]) == (named, named) and named > 0

    # Its segment deleted before the run could read it: the run fails, saying why; nobody is sent anything.
    _, lost = await create_broadcast(db, workspace.app_id, workspace.admin_id,
                                     audience={"segment_id": str(uuid.uuid4())})
    failed = await wait_run(db, lost, status=("failed",))
    assert failed["broadcast_status"] == "failed" and failed["sent"] == 0
    assert "segment" in await db.fetchval("SELECT error FROM broadcast_runs WHERE id = $1", lost)


# ---- faults -------------------------------------------------------------------------------------------
FAULT_USERS = 50_000
WATCHERS = 12  # connected SDK clients that must each see the message once


async def _send_through_fault(db_url: str, app_id: uuid.UUID, email: str, watch_on: ServerProcess,
                              key: str, fault, *, users: int, rate: int,  # type: ignore[no-untyped-def]
                              broadcast_id: uuid.UUID | None = None) -> None:
    """Seed `users`, connect WATCHERS clients to `watch_on`, send to all, run `fault` a fifth of the way
    in; then: the run finishes, everyone has exactly one recipient row in state >= sent, every
    watcher saw the message at most once live (and has it, live or in sync), counters match."""
    db = await asyncpg.create_pool(db_url, min_size=1, max_size=3, init=init_connection)
    try:
        await seed_users(db, app_id, users, named=False)
        watchers = [Device(watch_on.url, key, f"u-{i * 997 % users}") for i in range(WATCHERS)]
        for w in watchers:
            await w.__aenter__()
        try:
            token = admin_token(watch_on, email)
            bid = broadcast_id or new_broadcast(watch_on, token, rate=rate)
            run_id = await send_now(watch_on, token, db, bid)
            before = await wait_run(db, run_id, sent_at_least=users // 5)
            assert before["sent"] < users  # the fault hits mid-send
            await fault()
            done = await wait_run(db, run_id, status=("completed",), timeout=120)
            assert done["broadcast_status"] == "completed"
            await asyncio.sleep(0.5)
            for w in watchers:
                ids = [m["delivery_id"] for m in w.live if m["delivery_id"].startswith(str(run_id))]
                assert len(ids) == len(set(ids)) <= 1, ids  # never twice
                if not ids:  # its batch committed as the fault hit, before it was emitted: in sync
                    assert [p["delivery_id"] for p in await w.pending()
                            if p["delivery_id"].startswith(str(run_id))], w.client.user_id
        finally:
            for w in watchers:
                await w.__aexit__()
        rows = await db.fetchrow(
            """SELECT count(*) AS n, count(DISTINCT user_id) AS users, min(state) AS lo, max(state) AS hi
               FROM broadcast_recipients WHERE run_id = $1""", run_id)
        assert (rows["n"], rows["users"], rows["lo"], rows["hi"]) == (users, users, 1, 1)
        assert await assert_counters_match_recount(db, run_id) == {"targeted": users, "sent": users}
    finally:
        await db.close()


async def test_killing_the_owner_mid_send_finishes_the_run_sending_nobody_twice(
        start_server, workspace: NewWorkspace, db_url: str, redis_url: str) -> None:
    replicas = {name: start_server(BROADCAST_MAX_RATE="10000") for name in ("replica-1", "replica-2", "replica-3")}
    await asyncio.sleep(1.5)  # leases settle: each replica owns a third of the partitions
    broadcast_id = new_broadcast(replicas["replica-1"], admin_token(replicas["replica-1"], workspace.email),
                                 rate=10_000)
    owner = await owner_of(redis_url, broadcast_id)
    assert owner in replicas
    survivor = next(srv for name, srv in replicas.items() if name != owner)

    async def kill_owner() -> None:
        replicas[owner].stop(signal.SIGKILL)

    await _send_through_fault(db_url, workspace.app_id, workspace.email, survivor, workspace.publishable_key,
                              kill_owner, users=FAULT_USERS, rate=10_000, broadcast_id=broadcast_id)
    assert await owner_of(redis_url, broadcast_id) not in (None, owner)


async def test_redis_restarting_mid_send_finishes_the_run_sending_nobody_twice(
        start_server, workspace: NewWorkspace, db_url: str, tmp_path: Path) -> None:
    redis = EmbeddedRedis(tmp_path / "redis")
    redis.start()
    try:
        srv = start_server(REDIS_URL=redis.url, BROADCAST_MAX_RATE="10000")

        async def restart_redis() -> None:
            port = redis.port
            redis.stop()
            await asyncio.sleep(0.5)
            redis.port = port
            redis.start()

        await _send_through_fault(db_url, workspace.app_id, workspace.email, srv, workspace.publishable_key,
                                  restart_redis, users=20_000, rate=5_000)
    finally:
        redis.stop()


async def test_postgres_restarting_mid_send_finishes_the_run_sending_nobody_twice(
        start_server, tmp_path: Path) -> None:
    async with own_postgres(tmp_path, "Restart") as own:
        srv = start_server(DATABASE_URL=own.url, BROADCAST_MAX_RATE="10000")
        ws = own.workspace
        # every pooled connection dies in the restart, some mid-batch
        await _send_through_fault(own.url, ws.app_id, ws.email, srv, ws.publishable_key, own.restart,
                                  users=20_000, rate=5_000)
