"""Broadcasts, the SDK side, against a real server: receipts over REST and the /client socket (state
only moves forward), a reply that starts exactly one conversation linked to the delivery, the signed
click redirect, tenancy, and the broadcast-stats consumer group's counters equal to a recount of
broadcast_recipients after a burst of concurrent acks, with a redelivery adding nothing.

The broadcast, its run and its recipients (already sent) are inserted in SQL: these tests do not
depend on the broadcast actor."""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import aiohttp
import asyncpg
import msgspec
import pytest
import redis.asyncio as aioredis

from loadtests.sdk_client.client import ReplyHQClient, ReplyHQError
from server.broadcasts import click_tokens
from server.broadcasts.stats_consumer import BroadcastStats
from server.dev.embedded import EmbeddedServices
from server.events.store import START, Position, read_after
from server.platform.db.pool import init_connection
from server.tenancy.workspaces import NewWorkspace, create_workspace
from tests.admin_helpers import PASSWORD, call
from tests.conftest import TEST_JWT_SECRET, cloned_database, module_server
from tests.inbox_helpers import owner_token
from tests.support import ServerProcess
from workers.runtime.consumer_groups import ConsumerGroup

REDIS_DB = 12
BUTTON_URL = "https://example.com/new?from=broadcast&x=1"
COUNTERS = ("delivered", "read", "replied", "clicked", "failed")
RECOUNT = """
SELECT count(*) FILTER (WHERE state IN (2, 3)) AS delivered, count(*) FILTER (WHERE state = 3) AS read,
       count(replied_at) AS replied, count(clicked_at) AS clicked, count(*) FILTER (WHERE state = 4) AS failed
FROM broadcast_recipients WHERE run_id = $1
"""


@pytest.fixture(scope="module")
def bsdk_db(pg_admin_url: str, template_db: str) -> Iterator[str]:
    with cloned_database(pg_admin_url, template_db, f"bsdk_{os.getpid()}") as url:
        yield url


@pytest.fixture(scope="module")
def bsdk_server(services: EmbeddedServices, bsdk_db: str,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with module_server(services, bsdk_db, tmp_path_factory.mktemp("bsdk"), redis_db=REDIS_DB,
                       REPLICA_ID="bsdk-1") as server:
        yield server


@pytest.fixture
async def pool(bsdk_db: str) -> AsyncIterator[asyncpg.Pool]:
    p = await asyncpg.create_pool(bsdk_db, min_size=1, max_size=4, init=init_connection)
    assert p is not None
    yield p
    await p.close()


@pytest.fixture
async def ws(pool: asyncpg.Pool) -> NewWorkspace:
    n = uuid.uuid4().hex[:8]
    return await create_workspace(pool, app_name=f"Bsdk {n}", email=f"bsdk-{n}@acme.test", password=PASSWORD,
                                  owner_name="Olive Owner")


@dataclass
class SentRun:
    broadcast_id: UUID
    run_id: UUID
    deliveries: dict[str, str]  # external user id -> delivery id


async def sent_run(pool: asyncpg.Pool, ws: NewWorkspace, users: list[str], *,
                   button_url: str | None = BUTTON_URL, state: int = 1) -> SentRun:
    """A broadcast with one run whose recipients (the users, made if new) were sent to: the run is
    over (completed), as the actor leaves it; a run left sending would be completed by the actor
    meanwhile, recording its own events."""
    message: dict[str, Any] = {"text": "Spring is here", "sender_admin_id": str(ws.admin_id)}
    if button_url:
        message |= {"button_url": button_url, "button_label": "See what's new"}
    async with pool.acquire() as conn, conn.transaction():
        broadcast_id = await conn.fetchval(
            """INSERT INTO broadcasts (app_id, name, status, message, audience, schedule, rate_per_s)
               VALUES ($1, 'Spring release', 'completed', $2, '{"filter": {"all": []}}', '{"kind": "now"}', 100)
               RETURNING id""", ws.app_id, message)
        run_id = await conn.fetchval(
            """INSERT INTO broadcast_runs (broadcast_id, app_id, scheduled_for, status, snapshot_done, sent_through,
                                           started_at, finished_at)
               VALUES ($1, $2, now(), 'completed', true, $3, now(), now()) RETURNING id""",
            broadcast_id, ws.app_id, len(users))
        deliveries = {}
        for ord_, external_id in enumerate(users, start=1):
            user_id = await conn.fetchval(
                """INSERT INTO end_users (app_id, external_id) VALUES ($1, $2)
                   ON CONFLICT (app_id, external_id) WHERE external_id IS NOT NULL
                   DO UPDATE SET external_id = EXCLUDED.external_id RETURNING id""",
                ws.app_id, external_id)
            await conn.execute(
                """INSERT INTO broadcast_recipients (run_id, ord, user_id, state, sent_at)
                   VALUES ($1, $2, $3, $4::smallint, CASE WHEN $4::smallint > 0 THEN now() END)""",
                run_id, ord_, user_id, state)
            deliveries[external_id] = f"{run_id}.{ord_}"
        await conn.execute(
            """INSERT INTO broadcast_stats (run_id, broadcast_id, app_id, targeted, sent)
               VALUES ($1, $2, $3, $4, $4)""",
            run_id, broadcast_id, ws.app_id, len(users))
    return SentRun(broadcast_id, run_id, deliveries)


def client(server: ServerProcess, ws: NewWorkspace, user: str) -> ReplyHQClient:
    return ReplyHQClient(server.url, ws.publishable_key, user_id=user, ack_timeout=10.0)


async def rest_state(sdk: ReplyHQClient, delivery_id: str, state: str) -> tuple[int, Any]:
    return await sdk.rest("POST", f"/v1/broadcasts/{delivery_id}/{state}")


async def events_of(pool: asyncpg.Pool, run_id: UUID, kind: str) -> list[dict[str, Any]]:
    rows = await pool.fetch("SELECT data FROM domain_events WHERE type = $1 AND data->>'run_id' = $2 ORDER BY seq",
                            f"broadcast.message_{kind}", str(run_id))
    return [r["data"] for r in rows]


async def stats(pool: asyncpg.Pool, run_id: UUID) -> dict[str, int]:
    row = await pool.fetchrow(f"SELECT {', '.join(COUNTERS)} FROM broadcast_stats WHERE run_id = $1", run_id)
    return dict(row)


async def minute_totals(pool: asyncpg.Pool, run_id: UUID) -> dict[str, int]:
    row = await pool.fetchrow(f"SELECT {', '.join(f'sum({c})::bigint AS {c}' for c in COUNTERS)} "
                              "FROM broadcast_stats_minutes WHERE run_id = $1", run_id)
    return {c: row[c] or 0 for c in COUNTERS}


async def recount(pool: asyncpg.Pool, run_id: UUID) -> dict[str, int]:
    return dict(await pool.fetchrow(RECOUNT, run_id))


async def stats_caught_up(pool: asyncpg.Pool, run_id: UUID, timeout: float = 30.0) -> dict[str, int]:
    """The run's counters once the consumer group has applied every event (they equal the recount)."""
    want = await recount(pool, run_id)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        got = await stats(pool, run_id)
        if got == want or loop.time() > deadline:
            assert got == want, (got, want)
            return got
        await asyncio.sleep(0.1)


async def open_click(url: str) -> tuple[int, str | None]:
    async with aiohttp.ClientSession() as http, http.get(url, allow_redirects=False) as resp:
        await resp.read()
        return resp.status, resp.headers.get("Location")


# ---- receipts ---------------------------------------------------------------------------------------

async def test_receipts_move_the_state_forward_only_over_rest_and_the_socket(
        bsdk_server: ServerProcess, pool: asyncpg.Pool, ws: NewWorkspace) -> None:
    run = await sent_run(pool, ws, ["ann", "bob"])
    ann, bob = client(bsdk_server, ws, "ann"), client(bsdk_server, ws, "bob")
    try:
        # Ann over REST: delivered, delivered again, read, then delivered after read.
        d = run.deliveries["ann"]
        assert await rest_state(ann, d, "delivered") == (200, {"delivery_id": d, "state": "delivered"})
        assert await rest_state(ann, d, "delivered") == (200, {"delivery_id": d, "state": "delivered"})
        assert await rest_state(ann, d, "read") == (200, {"delivery_id": d, "state": "read"})
        assert await rest_state(ann, d, "delivered") == (200, {"delivery_id": d, "state": "read"})
        assert await rest_state(ann, d, "read") == (200, {"delivery_id": d, "state": "read"})

        # Bob over the socket: read first (skipping delivered), then a late delivered.
        await bob.connect()
        d = run.deliveries["bob"]
        assert await bob.call("broadcast:read", {"delivery_id": d}) == {"ok": True, "state": "read"}
        assert await bob.mark_broadcast(d, "delivered") == "read"
        assert await bob.mark_broadcast(d, "read") == "read"
    finally:
        await ann.close()
        await bob.close()

    rows = {r["ord"]: r for r in await pool.fetch("SELECT * FROM broadcast_recipients WHERE run_id = $1", run.run_id)}
    assert [rows[n]["state"] for n in (1, 2)] == [3, 3]
    assert all(rows[n]["delivered_at"] and rows[n]["read_at"] for n in (1, 2))  # read implies delivered
    assert rows[1]["delivered_at"] <= rows[1]["read_at"]
    # One event per state change, none for the repeats; each says where it started from.
    assert [e["from_state"] for e in await events_of(pool, run.run_id, "delivered")] == [1]
    read = await events_of(pool, run.run_id, "read")
    assert sorted(e["from_state"] for e in read) == [1, 2]
    assert {e["delivery_id"] for e in read} == set(run.deliveries.values())
    assert all(e["broadcast_id"] == str(run.broadcast_id) for e in read)
    # Bob's read counts him as delivered too: delivered counts who reached at least delivered.
    assert await stats_caught_up(pool, run.run_id) == {"delivered": 2, "read": 2, "replied": 0, "clicked": 0,
                                                       "failed": 0}


async def test_another_users_or_apps_delivery_and_malformed_ids_are_not_found(
        bsdk_server: ServerProcess, pool: asyncpg.Pool, ws: NewWorkspace) -> None:
    run = await sent_run(pool, ws, ["ann", "bob"])
    queued = await sent_run(pool, ws, ["ann"], state=0)  # not sent yet: the user cannot know it
    other_ws = await create_workspace(pool, app_name="Globex", email=f"g-{uuid.uuid4().hex[:8]}@globex.test",
                                      password=PASSWORD, owner_name="Gus")
    bob = client(bsdk_server, ws, "bob")
    ann_elsewhere = client(bsdk_server, other_ws, "ann")  # the same external id in another app
    ann_id = run.deliveries["ann"]
    not_deliveries = [ann_id.split(".")[0], f"{run.run_id}.0", f"{run.run_id}.3", f"{run.run_id}.x",
                      f"{run.run_id}.-1", f"{run.run_id}.99999999999999999999", "nope", f"{uuid.uuid4()}.1",
                      queued.deliveries["ann"]]
    try:
        await bob.connect()
        await ann_elsewhere.connect()
        for sdk in (bob, ann_elsewhere):
            for state in ("delivered", "read"):
                status, body = await rest_state(sdk, ann_id, state)
                assert (status, body["error"]["code"]) == (404, "delivery_not_found")
                with pytest.raises(ReplyHQError) as refused:
                    await sdk.mark_broadcast(ann_id, state)
                assert (refused.value.status, refused.value.code) == (404, "delivery_not_found")
            status, body = await sdk.reply_to_broadcast(ann_id, "me too")
            assert (status, body["error"]["code"]) == (404, "delivery_not_found")
        for bad in not_deliveries:
            status, body = await rest_state(bob, bad, "read")
            assert (status, body["error"]["code"]) == (404, "delivery_not_found"), bad
            with pytest.raises(ReplyHQError) as refused:
                await bob.mark_broadcast(bad, "delivered")
            assert refused.value.status == 404, bad
    finally:
        await bob.close()
        await ann_elsewhere.close()
    # Nothing moved, nothing was recorded.
    assert await pool.fetchval("SELECT count(*) FROM broadcast_recipients WHERE run_id = $1 AND state > 1",
                               run.run_id) == 0
    assert await pool.fetchval("SELECT count(*) FROM conversations WHERE app_id = ANY($1::uuid[])",
                               [ws.app_id, other_ws.app_id]) == 0
    for kind in ("delivered", "read", "replied"):
        assert await events_of(pool, run.run_id, kind) == []


# ---- replies ----------------------------------------------------------------------------------------

async def test_a_reply_starts_one_conversation_linked_to_the_delivery_and_the_inbox_sees_it(
        bsdk_server: ServerProcess, pool: asyncpg.Pool, ws: NewWorkspace) -> None:
    run = await sent_run(pool, ws, ["ann"])
    d = run.deliveries["ann"]
    ann = client(bsdk_server, ws, "ann")
    try:
        # The first reply, and its retries (some concurrent, as after a lost answer): one conversation.
        answers = await asyncio.gather(*(ann.reply_to_broadcast(d, "Tell me more", client_id="r-1")
                                         for _ in range(4)))
        assert sorted(status for status, _ in answers) == [200, 200, 200, 201]
        conversation_ids = {body["conversation"]["id"] for _, body in answers}
        message_ids = {body["message"]["id"] for _, body in answers}
        assert len(conversation_ids) == 1 and len(message_ids) == 1
        _, first = answers[0]
        assert first["delivery_id"] == d
        assert (first["message"]["body"], first["message"]["seq"], first["message"]["sender_kind"]) == (
            "Tell me more", 1, "user")
        conv_id = first["conversation"]["id"]

        status, again = await ann.reply_to_broadcast(d, "Tell me more", client_id="r-1")
        assert status == 200 and again["conversation"]["id"] == conv_id and again["message"]["id"] in message_ids
        # Another reply goes to the same conversation, as its next message.
        status, second = await ann.reply_to_broadcast(d, "And the price?", client_id="r-2")
        assert status == 200 and second["conversation"]["id"] == conv_id and second["message"]["seq"] == 2
        assert second["conversation"]["last_seq"] == 2

        status, mine = await ann.rest("GET", "/v1/conversations")
        assert status == 200 and [c["id"] for c in mine["conversations"]] == [conv_id]
        status, page = await ann.rest("GET", f"/v1/conversations/{conv_id}/messages")
        assert [m["body"] for m in page["messages"]] == ["Tell me more", "And the price?"]
    finally:
        await ann.close()

    row = await pool.fetchrow("SELECT * FROM broadcast_recipients WHERE run_id = $1", run.run_id)
    assert str(row["conversation_id"]) == conv_id and row["replied_at"] is not None
    assert row["state"] == 3 and row["read_at"] is not None  # whoever replied has read it
    replied = await events_of(pool, run.run_id, "replied")
    assert replied == [{"broadcast_id": str(run.broadcast_id), "run_id": str(run.run_id), "delivery_id": d,
                        "conversation_id": conv_id}]
    assert await pool.fetchval("SELECT count(*) FROM domain_events WHERE type = 'conversation.created' "
                               "AND conversation_id = $1", UUID(conv_id)) == 1
    # The agents' inbox shows it like any conversation the user started.
    token = owner_token(bsdk_server, ws)
    status, inbox = call(bsdk_server, "GET", "/admin/api/conversations", token)
    assert status == 200
    found = [c for c in inbox["conversations"] if c["id"] == conv_id]
    assert len(found) == 1 and found[0]["user"]["user_id"] == "ann"
    assert found[0]["last_message_preview"] == "And the price?"
    assert (await stats_caught_up(pool, run.run_id))["replied"] == 1


# ---- the click redirect -------------------------------------------------------------------------------

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

async def test_a_click_redirects_to_the_stored_url_and_is_recorded_once(
        bsdk_server: ServerProcess, pool: asyncpg.Pool, ws: NewWorkspace) -> None:
    run = await sent_run(pool, ws, ["ann", "bob"])
    d = run.deliveries["ann"]
    token = click_tokens.sign(TEST_JWT_SECRET, d)
    link = f"{bsdk_server.url}/v1/r/{token}"
    assert await open_click(link) == (302, BUTTON_URL)
    first = await pool.fetchval("SELECT clicked_at FROM broadcast_recipients WHERE run_id = $1 AND ord = 1",
                                run.run_id)
    assert first is not None
    # Clicked again (and with a URL of its own in the query: never used): the same place, one click.
    assert await open_click(link) == (302, BUTTON_URL)
    assert await open_click(link + "?url=https://evil.example/&next=https://evil.example/") == (302, BUTTON_URL)
    assert await pool.fetchval("SELECT clicked_at FROM broadcast_recipients WHERE run_id = $1 AND ord = 1",
                               run.run_id) == first
    assert [e["delivery_id"] for e in await events_of(pool, run.run_id, "clicked")] == [d]

    body, mac = token.split(".")
    bob_body = click_tokens.sign(TEST_JWT_SECRET, run.deliveries["bob"]).split(".")[0]
    forged = [click_tokens.sign("another-key-" + "y" * 40, d),  # signed with another key
              f"{bob_body}.{mac}",  # Ann's signature on Bob's delivery
              f"{body}.{mac[:-2]}{'AA' if mac[-2:] != 'AA' else 'BB'}",  # a tampered signature
              f"{body}.{mac[:-1]}{_B64[_B64.index(mac[-1]) ^ 1]}",  # another spelling of the same bytes
              f"{body}.{mac[:5]}!{mac[5:]}", f"{body[:3]}*{body[3:]}.{mac}",  # stray characters
              body, "x", f"{body}.{mac}.{mac}", "%00", "a" * 300]
    for bad in forged:
        status, location = await open_click(f"{bsdk_server.url}/v1/r/{bad}")
        assert (status, location) == (404, None), bad
    assert await pool.fetchval("SELECT count(*) FROM broadcast_recipients WHERE run_id = $1 AND clicked_at IS NOT NULL",
                               run.run_id) == 1

    # A message without a button has nothing to redirect to.
    plain = await sent_run(pool, ws, ["ann"], button_url=None)
    assert await open_click(f"{bsdk_server.url}/v1/r/{click_tokens.sign(TEST_JWT_SECRET, plain.deliveries['ann'])}"
                            ) == (404, None)
    assert await events_of(pool, plain.run_id, "clicked") == []
    assert (await stats_caught_up(pool, run.run_id))["clicked"] == 1


# ---- statistics -------------------------------------------------------------------------------------

async def test_counters_equal_a_recount_after_a_burst_of_concurrent_acks_and_a_replay_adds_nothing(
        bsdk_server: ServerProcess, pool: asyncpg.Pool, ws: NewWorkspace) -> None:
    users = [f"u{n}" for n in range(24)]
    run = await sent_run(pool, ws, users)
    rnd = random.Random(16)
    async with AsyncExitStack() as stack:
        clients = {}
        for user in users:
            sdk = client(bsdk_server, ws, user)
            stack.push_async_callback(sdk.close)
            clients[user] = sdk
        await asyncio.gather(*(sdk.connect() for sdk in clients.values()))

        async def act(user: str) -> None:
            """Each device acks the way real ones do: some twice, some read before delivered, over
            the socket and over REST at once; some reply, some click."""
            sdk, d = clients[user], run.deliveries[user]
            steps = rnd.choice([["delivered"], ["read"], ["delivered", "read"], ["read", "delivered"],
                                ["delivered", "delivered", "read", "read"], []])
            calls: list[Any] = []
            for step in steps:
                calls.append(sdk.mark_broadcast(d, step))
                calls.append(rest_state(sdk, d, step))
            if rnd.random() < 0.3:
                calls.append(sdk.reply_to_broadcast(d, "hi", client_id="r"))
                calls.append(sdk.reply_to_broadcast(d, "hi", client_id="r"))
            if rnd.random() < 0.4:
                link = f"{bsdk_server.url}/v1/r/{click_tokens.sign(TEST_JWT_SECRET, d)}"
                calls += [open_click(link), open_click(link)]
            await asyncio.gather(*calls)

        await asyncio.gather(*(act(user) for user in users))

    caught_up = await stats_caught_up(pool, run.run_id)
    assert caught_up["delivered"] > 0 and caught_up["read"] > 0
    assert await minute_totals(pool, run.run_id) == caught_up
    # One event per state change, whatever raced.
    assert len(await events_of(pool, run.run_id, "replied")) == caught_up["replied"]
    assert len(await events_of(pool, run.run_id, "clicked")) == caught_up["clicked"]

    # The whole event log delivered again to the group (as after a crash before the acknowledgement):
    # the checkpoint says it was applied, so nothing is counted twice.
    redis = aioredis.from_url(bsdk_server.env["REDIS_URL"])
    try:
        group = ConsumerGroup(pool, redis, BroadcastStats(), replica_id="replay")
        events = await read_after(pool, START, 100_000)
        entries, prev = [], START
        for e in events:
            entries.append((b"0-0", {b"prev": str(prev).encode(), b"e": msgspec.json.encode(e)}))
            prev = Position.parse(e.position)
        assert await group.handle(entries, ack=False) == 0
        assert await group.handle(entries[len(entries) // 2:], ack=False) == 0
        assert await group.catch_up() == 0
    finally:
        await redis.aclose()
    assert await stats(pool, run.run_id) == await recount(pool, run.run_id) == caught_up
    assert await minute_totals(pool, run.run_id) == caught_up
