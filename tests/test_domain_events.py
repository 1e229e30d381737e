"""Domain events: recorded with the change, read by a position a cursor can trust, relayed to the
stream and applied once by consumer groups, through Redis losing its data."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from loadtests.sdk_client import ReplyHQClient
from server.conversations import commit
from server.events.catalog import EVENT_TYPES, DomainEvent
from server.events.counts import EventCounts
from server.events.store import (
    START,
    Position,
    count_between,
    decode_rows,
    list_for_app,
    read_after,
    read_between,
    read_entries_after,
    referenced_message,
    referenced_sender,
    resolve,
)
from server.tenancy.workspaces import NewWorkspace, create_workspace
from tests.admin_helpers import call
from tests.event_tally import EventTally
from tests.inbox_helpers import identify, owner_token, reply, start_conversation, teammate
from tests.support import ROOT, ServerProcess, http
from workers.runtime.consumer_groups import ConsumerGroup


async def _events(db: asyncpg.Pool, app_id: Any) -> list[dict[str, Any]]:
    """The workspace's events as readers get them (message.created's data is built when read)."""
    found = await list_for_app(db, app_id, types=None, before=None, limit=10_000)
    return [{"type": e.type, "data": json.loads(bytes(e.data)), "conversation_id": e.conversation_id,
             "user_id": e.user_id} for e in reversed(found)]


async def _wait(predicate: Callable[[], Any], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def _counts_match_a_recount(db: asyncpg.Pool) -> bool:
    counted = {(r["app_id"], r["day"], r["type"]): r["count"]
               for r in await db.fetch("SELECT app_id, day, type, count FROM event_counts")}
    recount = {(r["app_id"], r["day"], r["type"]): r["n"] for r in await db.fetch(
        """SELECT app_id, (occurred_at AT TIME ZONE 'UTC')::date AS day, type, count(*) AS n
           FROM domain_events GROUP BY 1, 2, 3""")}
    return counted == recount and bool(recount)


async def test_a_cursor_never_skips_an_event_that_commits_after_a_later_one(db_url: str) -> None:
    """Transaction A starts first but commits last; B commits in between. A serial-number cursor
    would read B and then never see A. Ours reads neither until A is done, then both, in order."""
    a, b, reader = [await asyncpg.connect(db_url) for _ in range(3)]
    insert = ("INSERT INTO event_rows (type, app_id, data) VALUES ($1, $2, '{}'::jsonb) "
              "RETURNING seq")
    app = uuid.uuid4()
    try:
        tx_a = a.transaction()
        await tx_a.start()
        await a.fetchval("SELECT pg_current_xact_id()")  # A holds the older transaction id ...
        async with b.transaction():
            seq_b = await b.fetchval(insert, "user.created", app)
        seq_a = await a.fetchval(insert, "message.created", app)  # ... but the newer number
        assert seq_a > seq_b
        by_serial = await reader.fetch("SELECT seq FROM domain_events WHERE seq > 0 ORDER BY seq")
        assert [r["seq"] for r in by_serial] == [seq_b]  # what a serial cursor would take, skipping A later
        assert await read_after(reader, START, 100) == []  # ours waits for A to finish
        await tx_a.commit()
        events = await read_after(reader, START, 100)
        assert [e.type for e in events] == ["message.created", "user.created"]  # A's transaction is older
        assert await read_after(reader, Position.parse(events[-1].position), 100) == []
    finally:
        for conn in (a, b, reader):
            await conn.close()


async def test_positions_sort_as_numbers_across_a_power_of_ten(db: asyncpg.Pool) -> None:
    """Transaction ids 99 and 100 (long finished): 99 first, as a number, not "100" < "99"."""
    app = uuid.uuid4()
    for tx in (100, 99, 9, 10):
        await db.execute("INSERT INTO event_rows (tx, type, app_id, data) VALUES ($1::xid8, 'user.created', $2, "
                         "'{}')", tx, app)
    events = await read_after(db, START, 100)
    assert [e.position.split(".")[0] for e in events] == ["9", "10", "99", "100"]
    assert [e.position.split(".")[0] for e in await read_after(db, Position.parse(events[1].position), 100)] == [
        "99", "100"]


async def test_every_change_records_exactly_one_event(server: ServerProcess, workspace: NewWorkspace,
                                                      db: asyncpg.Pool) -> None:
    app = workspace.app_id
    token = owner_token(server, workspace)
    identify(server, workspace, "u-1", name="Ada")
    identify(server, workspace, "u-1", name="Ada")  # nothing changed: no event
    identify(server, workspace, "u-1", name="Ada Lovelace")
    conv = start_conversation(server, workspace, "u-1", body="first")
    cid = conv["id"]
    client_id = uuid.uuid4().hex
    for _ in range(2):  # the resend stores nothing and records nothing
        status, _ = http("POST", f"{server.url}/v1/conversations/{cid}/messages",
                         {"client_id": client_id, "body": "second"},
                         headers={"X-API-Key": workspace.publishable_key, "X-User-Id": "u-1"})
        assert status in (200, 201)
    assert reply(server, token, cid, "an answer")[0] == 201
    assert reply(server, token, cid, "a note", kind="notes")[0] == 201
    agent = teammate(server, token, "agent")
    assert call(server, "POST", f"/admin/api/conversations/{cid}/assign", token,
                {"assignee_id": agent["admin"]["id"]})[0] == 200
    assert call(server, "POST", f"/admin/api/conversations/{cid}/tags", token, {"add": ["vip"]})[0] == 200
    assert call(server, "POST", f"/admin/api/conversations/{cid}/status", token, {"status": "closed"})[0] == 200
    assert call(server, "POST", f"/admin/api/conversations/{cid}/read", token, {"seq": 4})[0] == 200
    assert call(server, "POST", f"/admin/api/conversations/{cid}/read", token, {"seq": 4})[0] == 200  # no rise
    status, key = call(server, "POST", "/admin/api/api-keys", token, {"kind": "secret", "name": "crm"})
    assert status == 201
    assert call(server, "DELETE", f"/admin/api/api-keys/{key['api_key']['id']}", token)[0] == 200

    events = await _events(db, app)
    types = [e["type"] for e in events]
    messages = await db.fetchval("SELECT count(*) FROM messages WHERE conversation_id = $1", uuid.UUID(cid))
    assert messages == 4
    assert types.count("message.created") == messages
    assert [e["type"] for e in events if e["type"].startswith("user.")] == ["user.created", "user.updated"]
    user_updated = next(e for e in events if e["type"] == "user.updated")
    assert user_updated["data"]["changes"] == ["name"] and user_updated["data"]["user"]["name"] == "Ada Lovelace"
    conv_types = [t for t in types if t.startswith("conversation.")]
    assert conv_types == ["conversation.created", "conversation.assigned", "conversation.updated",
                          "conversation.status_changed"]
    closed = next(e for e in events if e["type"] == "conversation.status_changed")
    assert closed["data"]["previous_status"] == "open" and closed["data"]["conversation"]["status"] == "closed"
    assert types.count("receipt.updated") == 1
    assert types.count("api_key.created") == 3 and types.count("api_key.revoked") == 1  # 2 at sign-up
    assert types.count("team.member_invited") == 1 and types.count("team.member_joined") == 1
    assert set(types) <= set(EVENT_TYPES)
    bodies = [e["data"]["message"]["body"] for e in events if e["type"] == "message.created"]
    assert bodies == ["first", "second", "an answer", "a note"]


async def test_a_message_event_carries_the_message_as_the_api_shows_it(server: ServerProcess,
                                                                       workspace: NewWorkspace,
                                                                       db: asyncpg.Pool) -> None:
    """message.created stores a reference, and every reader (the relay's, a consumer's catch-up, the
    events route) builds its data from the stored message: field for field what the REST API shows,
    attachments, escapes and the time's format too."""
    client = ReplyHQClient(server.url, workspace.publishable_key, user_id="exact")
    await client.connect()
    try:
        conv = (await client.create_conversation(subject="exact"))["conversation"]
        await client.send(conv["id"], 'quote " backslash \\ tab \t newline \n é 👋 \u2028',
                          attachments=[{"url": "https://files.example/a.png", "name": "a \"b\"", "size": 0},
                                       {"url": "https://files.example/b"}])
        await client.send(conv["id"], "plain")
    finally:
        await client.close()
    token = owner_token(server, workspace)
    status, detail = call(server, "GET", f"/admin/api/conversations/{conv['id']}", token)
    assert status == 200
    shown = sorted(detail["messages"], key=lambda m: m["seq"])
    assert len(shown) == 2
    stored = await db.fetch("SELECT data, message_id, sender_kind, is_note FROM domain_events WHERE app_id = $1 AND "
                            "type = 'message.created'", workspace.app_id)
    assert [r["data"] for r in stored] == [None, None]  # a reference, not a copy
    assert {str(r["message_id"]) for r in stored} == {m["id"] for m in shown}
    assert {(r["sender_kind"], r["is_note"]) for r in stored} == {("user", False)}  # what usage counts by
    refs = [json.loads(bytes(e.data)) for e in await read_after(db, START, 100_000, by_reference=True)
            if e.type == "message.created" and e.app_id == str(workspace.app_id)]
    assert refs == [{"message_id": m["id"], "sender_kind": "user", "is_note": False} for m in shown]
    status, listed = call(server, "GET", "/admin/api/events?type=message.created", token)
    assert status == 200
    assert [e["data"]["message"] for e in reversed(listed["events"])] == shown
    relayed = [e for e in await read_after(db, START, 100_000)
               if e.type == "message.created" and e.app_id == str(workspace.app_id)]
    assert [json.loads(bytes(e.data))["message"] for e in relayed] == shown
    assert shown[0]["attachments"][0] == {
        "url": "https://files.example/a.png", "name": 'a "b"', "content_type": None, "size": 0}


async def test_a_message_deleted_before_its_event_is_read_reads_as_null_and_consumers_carry_on(
        workspace: NewWorkspace, db: asyncpg.Pool, redis_url: str) -> None:
    """No route deletes a message, but an operator may delete a conversation by hand. Its
    message.created events then read as {"message": null}. The usage group counts the sender the
    commit recorded with the event (migration 044); an event recorded before that, whose message
    is gone, has no sender left to count."""
    from server.usage.consumer import UsageCounts

    app = workspace.app_id
    user = await db.fetchval("INSERT INTO end_users (app_id, external_id) VALUES ($1, 'gone') RETURNING id", app)
    convs = []
    # One message in each of four conversations: recorded as the commit does (c1, c3), and as it
    # did before migration 044 (c2, c4: no sender in the event row, so the group reads the message's).
    for client_id, with_sender in (("c1", True), ("c2", False), ("c3", True), ("c4", False)):
        conv = await db.fetchval("INSERT INTO conversations (app_id, user_id) VALUES ($1, $2) RETURNING id", app, user)
        await db.execute(
            """WITH m AS (INSERT INTO messages (app_id, conversation_id, seq, client_id, sender_kind, sender_id, body)
                          VALUES ($1, $2, 1, $3, 'user', $4, 'hi') RETURNING id, sender_kind, is_note)
               INSERT INTO event_rows (type, app_id, conversation_id, user_id, message_id, sender_kind, is_note)
               SELECT 'message.created', $1, $2, $4, id, CASE WHEN $5 THEN sender_kind END,
                      CASE WHEN $5 THEN is_note END FROM m""", app, conv, client_id, user, with_sender)
        convs.append(conv)
    await db.execute("DELETE FROM conversations WHERE id = ANY($1::uuid[])", convs[1:3])
    events = [e for e in await _events(db, app) if e["type"] == "message.created"]
    assert [e["data"]["message"] and e["data"]["message"]["client_id"] for e in events] == ["c1", None, None, "c4"]
    redis = aioredis.from_url(redis_url)
    await db.execute("INSERT INTO event_consumers (name, tx, seq) VALUES ('usage', '0', 0)")
    try:
        assert await ConsumerGroup(db, redis, UsageCounts(), replica_id="r1").catch_up() > 0
        counted = await db.fetch("SELECT metric, count FROM usage_daily WHERE app_id = $1 AND metric LIKE 'messages%'",
                                 app)
        assert [(r["metric"], r["count"]) for r in counted] == [("messages.user", 3)]  # c1, c3 and c4
        active = await db.fetchval("SELECT array_agg(user_id) FROM usage_active_users WHERE app_id = $1", app)
        assert active == [user]
    finally:
        await redis.aclose()


async def test_the_stream_names_each_message_and_a_group_gets_the_message_unless_it_takes_the_reference(
        workspace: NewWorkspace, db: asyncpg.Pool, redis_url: str) -> None:
    """The relay puts message.created on the stream by reference (the message's JSON is built only
    for groups that use it). A group gets the message as every other read builds it, from the stream
    and from Postgres alike; a group that takes references (`by_reference`) gets the reference from
    both, so its events never change form with the path they came by."""
    from server.events.catalog import PAYLOADS, STREAM
    from workers.event_relay import EventRelay

    got: dict[str, list[bytes]] = {"full": [], "ref": []}

    class Recorder:
        def __init__(self, name: str, by_reference: bool) -> None:
            self.name, self.by_reference = name, by_reference

        async def apply(self, conn: asyncpg.Connection, events: list[Any]) -> None:
            got[self.name] += [bytes(e.data) for e in events if e.type == "message.created"]

    app = workspace.app_id
    user = await db.fetchval("INSERT INTO end_users (app_id, external_id) VALUES ($1, 'ref') RETURNING id", app)
    conv = await db.fetchval("INSERT INTO conversations (app_id, user_id) VALUES ($1, $2) RETURNING id", app, user)
    # Recorded as the commit does (with the sender), then as it did before migration 044 (without):
    # the reference reads the same.
    ids = [await db.fetchval(
        """WITH m AS (INSERT INTO messages (app_id, conversation_id, seq, client_id, sender_kind, sender_id, body,
                                            is_note)
                      VALUES ($1, $2, $3, $4, 'user', $5, $6, $7) RETURNING id, sender_kind, is_note)
           INSERT INTO event_rows (type, app_id, conversation_id, message_id, sender_kind, is_note)
           SELECT 'message.created', $1, $2, id, CASE WHEN $3 = 1 THEN sender_kind END,
                  CASE WHEN $3 = 1 THEN is_note END
           FROM m RETURNING message_id""",
        app, conv, seq, f"c{seq}", user, f'body "{seq}"', seq == 2) for seq in (1, 2)]
    full = [bytes(e.data) for e in await read_after(db, START, 1000) if e.type == "message.created"]
    assert [json.loads(d)["message"]["body"] for d in full] == ['body "1"', 'body "2"']
    refs = [json.dumps({"message_id": str(i), "sender_kind": "user", "is_note": note}, separators=(",", ":")).encode()
            for i, note in zip(ids, (False, True), strict=True)]

    redis = aioredis.from_url(redis_url)
    relay = EventRelay(db, redis, replica_id="r1")
    try:
        await relay.relay_once()
        await relay.rest()  # gives back the connection it holds while relaying
        relayed = [e for entry_id, fields in await redis.xrange(PAYLOADS)
                   for e in decode_rows(fields[b"rs"], START) if e.type == "message.created"]
        assert [bytes(e.data) for e in relayed] == refs  # no message on the stream
        entries = [(entry_id, fields) for entry_id, fields in await redis.xrange(STREAM)]
        for name, by_reference in (("full", False), ("ref", True)):
            await db.execute("INSERT INTO event_consumers (name, tx, seq) VALUES ($1, '0', 0)", name)
            await ConsumerGroup(db, redis, Recorder(name, by_reference), replica_id="r1").handle(entries)
        assert got == {"full": full, "ref": refs}
        # From Postgres (the stream lost it all): the same form for each.
        await redis.flushdb()
        await db.execute("UPDATE event_consumers SET tx = '0', seq = 0 WHERE name IN ('full', 'ref')")
        got["full"], got["ref"] = [], []
        for name, by_reference in (("full", False), ("ref", True)):
            assert await ConsumerGroup(db, redis, Recorder(name, by_reference), replica_id="r2").catch_up() > 0
        assert got == {"full": full, "ref": refs}
    finally:
        await redis.aclose()


async def test_a_group_takes_the_envelopes_from_its_process_or_redis_or_else_postgres(
        workspace: NewWorkspace, db: asyncpg.Pool, redis_url: str) -> None:
    """The stream carries an entry's positions; its envelopes go on a second stream under the same
    id. A group in the relay's process reads none of them back; in another process, once per entry;
    and an entry whose envelopes Redis no longer has is read from Postgres: every event applied once."""
    from server.events.catalog import PAYLOADS, STREAM
    from workers.event_relay import EventRelay

    got: dict[str, list[str]] = {}

    class Recorder:
        def __init__(self, name: str) -> None:
            self.name = name
            got[name] = []

        async def apply(self, conn: asyncpg.Connection, events: list[Any]) -> None:
            got[self.name] += [e.id for e in events if e.app_id == str(workspace.app_id)]

    await db.execute("INSERT INTO event_rows (type, app_id, data) SELECT 'user.updated', $1, '{}'::json "
                     "FROM generate_series(1, 250)", workspace.app_id)
    ids = [e.id for e in await read_after(db, START, 100_000) if e.app_id == str(workspace.app_id)]
    relaying, elsewhere = aioredis.from_url(redis_url), aioredis.from_url(redis_url)
    relay = EventRelay(db, relaying, replica_id="r1")
    try:
        relayed = await relay.relay_once()
        assert relayed >= 250
        await relay.rest()
        entries = list(await relaying.xrange(STREAM))
        # Rows of one event each: entries of 100 (ENTRY_EVENTS), the last holding the rest.
        assert len(entries) == -(-relayed // 100)
        assert all(set(fields) == {b"pos", b"prev", b"n", b"at", b"ts"} for _, fields in entries)
        assert await relaying.xlen(PAYLOADS) == len(entries)

        async def run(name: str, redis: aioredis.Redis) -> int:
            await db.execute("INSERT INTO event_consumers (name, tx, seq) VALUES ($1, '0', 0)", name)
            group = ConsumerGroup(db, redis, Recorder(name), replica_id="r1")
            before = (await redis.info("commandstats")).get("cmdstat_xrange", {}).get("calls", 0)
            await group.handle(entries)
            return int((await redis.info("commandstats")).get("cmdstat_xrange", {}).get("calls", 0) - before)

        assert await run("here", relaying) == 0  # the relay left the envelopes in this process
        assert await run("there", elsewhere) == len(entries)  # read once from PAYLOADS
        assert await run("there-too", elsewhere) == 0  # and then shared with the process's other groups
        # Redis lost the envelopes of the middle entry: its events come from Postgres.
        await relaying.xdel(PAYLOADS, entries[1][0])
        other = aioredis.from_url(redis_url)
        try:
            assert await run("gap", other) == len(entries)
        finally:
            await other.aclose()
        assert got["here"] == got["there"] == got["there-too"] == got["gap"] == ids
    finally:
        await relaying.aclose()
        await elsewhere.aclose()


async def test_a_group_passes_over_entries_of_types_it_has_no_use_for_without_reading_them(
        workspace: NewWorkspace, db: asyncpg.Pool, redis_url: str) -> None:
    """Each stream entry says how many events it holds and of which types: a group whose consumer
    has no use for those types moves past the entry on that alone (no envelope read from Redis or
    Postgres, nothing decoded), counts its events as applied, and writes its checkpoint at most every
    SKIP_SAVE_S; an entry with a type it wants is read and applied as usual, once."""
    from server.events.catalog import PAYLOADS, STREAM
    from server.platform.metrics import Metrics
    from workers.event_relay import EventRelay
    from workers.runtime import consumer_groups

    applied: list[str] = []

    class KeysOnly(EventTally):
        types = frozenset({"api_key.created"})

        async def apply(self, conn: asyncpg.Connection, events: list[Any]) -> None:
            applied.extend(e.type for e in events if e.type in self.types)
            await super().apply(conn, [e for e in events if e.type in self.types])

    relaying, reading = aioredis.from_url(redis_url), aioredis.from_url(redis_url)
    relay = EventRelay(db, relaying, replica_id="r1")

    async def relay_new(n: int, type: str = "user.updated") -> list[tuple[bytes, dict[bytes, bytes]]]:
        await db.execute("INSERT INTO event_rows (type, app_id, data) SELECT $2, $1, '{}'::json "
                         "FROM generate_series(1, $3)", workspace.app_id, type, n)
        last = (await relaying.xrevrange(STREAM, count=1) or [(b"0-0", {})])[0][0]
        await relay.relay_once()
        return [e for e in await relaying.xrange(STREAM) if e[0] > last]

    async def xranges() -> int:
        return int((await reading.info("commandstats")).get("cmdstat_xrange", {}).get("calls", 0))

    try:
        start = Position.parse((await relay_new(3))[-1][1][b"pos"])  # what came before is not this group's
        await db.execute("INSERT INTO event_consumers (name, tx, seq) VALUES ('event-counts', $1::text::xid8, $2)",
                         str(start.tx), start.n)
        group = ConsumerGroup(db, reading, KeysOnly(), replica_id="r1", metrics=Metrics())
        first = await relay_new(2, "api_key.created")
        assert await group.handle(first) == 2 and applied == ["api_key.created"] * 2  # read and applied
        saved = await db.fetchval("SELECT seq FROM event_consumers WHERE name = 'event-counts'")
        entries = await relay_new(250)
        assert [int(f[b"n"]) for _, f in entries] == [100, 100, 50]
        assert all(f[b"ts"] == b"user.updated" and float(f[b"at"]) > 0 for _, f in entries)
        assert await reading.xlen(PAYLOADS) > 0
        before = await xranges()
        assert await group.handle(entries) == 250  # passed over on the fields alone
        assert await xranges() == before  # no envelope read back
        assert await db.fetchval("SELECT seq FROM event_consumers WHERE name = 'event-counts'") == saved
        assert group.metrics.event_consumer_applied.labels("event-counts")._value.get() == 252
        consumer_groups.SKIP_SAVE_S, skip_save = 0.0, consumer_groups.SKIP_SAVE_S
        try:
            assert await group.handle(await relay_new(1)) == 1  # the checkpoint is due: written now
        finally:
            consumer_groups.SKIP_SAVE_S = skip_save
        last = Position.parse((await relaying.xrevrange(STREAM, count=1))[0][1][b"pos"])
        assert await db.fetchval("SELECT seq FROM event_consumers WHERE name = 'event-counts'") == last.n
        wanted = await relay_new(1, "api_key.created")
        before = await xranges()
        assert await group.handle(wanted) == 1
        assert applied == ["api_key.created"] * 3
        assert await xranges() == before + 1  # that one was read
        assert await db.fetchval("SELECT sum(count) FROM event_counts WHERE app_id = $1 AND type = 'api_key.created'",
                                 workspace.app_id) == 3
    finally:
        await relay.rest()
        await relaying.aclose()
        await reading.aclose()


def test_the_webhooks_group_passes_over_types_only_when_nothing_can_come_of_them() -> None:
    from server.webhooks.deliveries import WebhookDeliveries

    group = WebhookDeliveries()
    messages, created = frozenset({"message.created"}), frozenset({"webhook.endpoint_created"})
    assert not group.passes(messages)  # not yet loaded: it cannot tell
    group._hooked = set()
    assert group.passes(messages) and group.passes(frozenset({"user.updated"}))
    assert not group.passes(created)  # an endpoint to learn of
    group._hooked = {"app"}
    assert not group.passes(messages) and group.passes(frozenset({"webhook.ping"}))


def test_the_events_page_lists_every_type() -> None:
    page = (ROOT / "docs" / "events.md").read_text()
    assert all(f"| `{t}` |" in page for t in EVENT_TYPES)


async def test_the_counts_consumer_applies_each_event_once_through_redis_losing_its_data(
        server: ServerProcess, workspace: NewWorkspace, db: asyncpg.Pool, redis_url: str) -> None:
    """SDK traffic while Redis is flushed twice: the relay and the running consumer group carry
    on from Postgres, and the counts equal a recount of the events (none missed, none twice)."""
    redis = aioredis.from_url(redis_url)
    client = ReplyHQClient(server.url, workspace.publishable_key, user_id="flusher")
    await client.connect()
    try:
        conv = (await client.create_conversation(subject="x"))["conversation"]
        for i in range(60):
            if i in (20, 40):
                await redis.flushdb()
            await client.send(conv["id"], f"m{i}", client_id=f"c{i}")
    finally:
        await client.close()
    await _wait(lambda: _counts_match_a_recount(db))
    n = await db.fetchval("SELECT count FROM event_counts WHERE app_id = $1 AND type = 'message.created'",
                          workspace.app_id)
    assert n == 60
    assert await redis.xlen("events:domain") > 0  # the relay goes on appending after the flushes
    await redis.aclose()


async def test_a_redelivered_batch_has_no_second_effect(workspace: NewWorkspace, db: asyncpg.Pool,
                                                        redis_url: str) -> None:
    """Replay the same stream entries (a consumer that died before acknowledging) and entries with a
    gap before them (the stream lost some): every event is counted exactly once."""
    redis = aioredis.from_url(redis_url)
    group = ConsumerGroup(db, redis, EventCounts(), replica_id="r1")
    await db.execute("INSERT INTO event_consumers (name, tx, seq) VALUES ('event-counts', '0', 0)")
    events = await read_after(db, START, 100)
    assert len(events) >= 3  # the workspace's own: created and two keys
    entries = []
    prev = START
    for e in events:
        entries.append((b"0-0", {b"prev": str(prev).encode(), b"e": __import__("msgspec").json.encode(e)}))
        prev = Position.parse(e.position)
    assert await group.handle(entries[-1:]) == len(events)  # a gap: the rest comes from Postgres
    assert await group.handle(entries) == 0  # everything again: nothing twice
    assert await group.catch_up() == 0
    assert await _counts_match_a_recount(db)
    await redis.aclose()


async def test_a_group_passes_over_events_it_has_no_use_for_and_still_applies_the_rest_once(
        workspace: NewWorkspace, db: asyncpg.Pool, redis_url: str) -> None:
    """A consumer that names its `types` commits nothing for batches without them (its checkpoint
    stays), applies the others once, and a successor starting from the older checkpoint reads the
    passed-over events again without a second effect."""
    import msgspec

    class KeysOnly(EventTally):
        types = frozenset({"api_key.created"})

        async def apply(self, conn: asyncpg.Connection, events: list[Any]) -> None:
            await super().apply(conn, [e for e in events if e.type in self.types])

    redis = aioredis.from_url(redis_url)
    await db.execute("INSERT INTO event_consumers (name, tx, seq) VALUES ('event-counts', '0', 0)")
    await db.execute("INSERT INTO event_rows (type, app_id, data) SELECT 'user.updated', $1, '{}'::json "
                     "FROM generate_series(1, 5)", workspace.app_id)
    events = await read_after(db, START, 100)
    assert [e.type for e in events].count("api_key.created") == 2 and events[-1].type == "user.updated"
    entries, prev = [], START
    for e in events:
        entries.append((b"0-0", {b"prev": str(prev).encode(), b"e": msgspec.json.encode(e)}))
        prev = Position.parse(e.position)
    first = ConsumerGroup(db, redis, KeysOnly(), replica_id="r1")
    for entry in entries:  # one batch each: the last five have nothing for the consumer
        assert await first.handle([entry]) == 1
    saved = await db.fetchval("SELECT seq FROM event_consumers WHERE name = 'event-counts'")
    assert saved == Position.parse(events[-6].position).n  # the passed-over batches committed nothing
    assert await ConsumerGroup(db, redis, KeysOnly(), replica_id="r2").handle(entries) == 5
    counted = await db.fetch("SELECT type, count FROM event_counts WHERE app_id = $1", workspace.app_id)
    assert [(r["type"], r["count"]) for r in counted] == [("api_key.created", 2)]
    await redis.aclose()


async def test_a_group_reading_from_postgres_does_not_apply_a_batch_with_nothing_for_it(
        workspace: NewWorkspace, db: asyncpg.Pool, redis_url: str) -> None:
    """What the stream lacks is read from Postgres (a group behind its trimmed tail, a restart): a
    batch its consumer's `types` rule out is not applied there either, and its checkpoint moves."""
    applied: list[list[str]] = []

    class KeysOnly(EventTally):
        types = frozenset({"api_key.created"})

        async def apply(self, conn: asyncpg.Connection, events: list[Any]) -> None:
            applied.append([e.type for e in events])

    redis = aioredis.from_url(redis_url)
    try:
        await db.execute("""INSERT INTO event_consumers (name, tx, seq)
                            SELECT 'event-counts', tx, seq FROM domain_events ORDER BY tx DESC, seq DESC LIMIT 1""")
        await db.execute("INSERT INTO event_rows (type, app_id, data) SELECT 'user.updated', $1, '{}'::json "
                         "FROM generate_series(1, 5)", workspace.app_id)
        group = ConsumerGroup(db, redis, KeysOnly(), replica_id="r1")
        assert await group.catch_up() == 5
        assert applied == []
        last = await db.fetchval("SELECT max(seq) FROM domain_events")
        assert await db.fetchval("SELECT seq FROM event_consumers WHERE name = 'event-counts'") == last
        await db.execute("INSERT INTO event_rows (type, app_id, data) VALUES ('api_key.created', $1, '{}'::json)",
                         workspace.app_id)
        assert await ConsumerGroup(db, redis, KeysOnly(), replica_id="r2").catch_up() == 1
        assert applied == [["api_key.created"]]
    finally:
        await redis.aclose()


async def test_a_group_with_an_interval_gathers_batches_but_reads_a_backlog_without_waiting(
        workspace: NewWorkspace, db: asyncpg.Pool, redis_url: str) -> None:
    """A consumer with `interval_s` waits that long between batches once it keeps up, so a burst
    arriving meanwhile is one batch; a backlog is read in full reads one after another, never
    waiting between them; every event is applied once."""
    import msgspec

    from server.events.catalog import STREAM

    batches: list[int] = []

    class Patient(EventTally):
        interval_s = 30.0

        async def apply(self, conn: asyncpg.Connection, events: list[Any]) -> None:
            batches.append(len(events))
            await super().apply(conn, events)

    redis = aioredis.from_url(redis_url)
    await db.execute("DELETE FROM event_rows")
    prev = START

    async def append(n: int) -> None:
        nonlocal prev
        await db.execute("INSERT INTO event_rows (type, app_id, data) SELECT 'user.updated', $1, '{}'::json "
                         "FROM generate_series(1, $2)", workspace.app_id, n)
        for e in await read_after(db, prev, 100):
            await redis.xadd(STREAM, {"prev": str(prev), "e": msgspec.json.encode(e)})
            prev = Position.parse(e.position)

    await append(16)
    group = ConsumerGroup(db, redis, Patient(), replica_id="r1", batch=25)  # 5 entries a read (batch // 5)
    await group.start()
    try:
        # Three full reads, then one of a single entry: a wait of 30 s between any two of them
        # would outlast this.
        await _wait(lambda: _applied(db, 16))
        assert batches == [5, 5, 5, 1]
        await append(3)
        await asyncio.sleep(1.0)
        assert batches == [5, 5, 5, 1]  # caught up: it waits out its interval before reading on
    finally:
        await group.stop()
    assert await db.fetchval("SELECT sum(count) FROM event_counts WHERE app_id = $1", workspace.app_id) == 16
    await redis.aclose()


async def _applied(db: asyncpg.Pool, n: int) -> bool:
    return bool(await db.fetchval("SELECT applied >= $1 FROM event_consumers WHERE name = 'event-counts'", n))


async def test_the_events_route_lists_filters_pages_and_refuses_bad_input(
        server: ServerProcess, workspace: NewWorkspace, db: asyncpg.Pool) -> None:
    token = owner_token(server, workspace)
    for i in range(3):
        identify(server, workspace, f"user-{i}")
    status, page = call(server, "GET", "/admin/api/events?type=user.created&limit=2", token)
    assert status == 200, page
    assert [e["type"] for e in page["events"]] == ["user.created", "user.created"]
    assert page["events"][0]["data"]["user"]["user_id"] == "user-2"  # newest first
    status, rest = call(server, "GET", f"/admin/api/events?type=user.created&cursor={page['next_cursor']}", token)
    assert status == 200 and [e["data"]["user"]["user_id"] for e in rest["events"]] == ["user-0"]
    assert rest["next_cursor"] is None
    for bad in ("type=message.exploded", "cursor=abc", "limit=0", "type=,"):
        status, body = call(server, "GET", f"/admin/api/events?{bad}", token)
        assert status == 422 and body["error"]["code"] == "invalid_query", (bad, body)
    agent = teammate(server, token, "agent")
    status, body = call(server, "GET", "/admin/api/events", agent["access_token"])
    assert status == 403, body


async def test_a_group_commit_records_one_row_a_workspace_and_each_message_reads_as_its_own_event(
        db: asyncpg.Pool) -> None:
    """A commit's messages share a row per workspace (migration 045), yet every reader sees one event
    a message, in commit order, and a cursor anywhere, inside a row too, resumes at the next event."""
    spaces = [await create_workspace(db, app_name=f"Rows {i}", email=f"rows-{uuid.uuid4().hex}@example.test",
                                     password="correct horse battery") for i in range(2)]
    states = {}
    for ws, n in ((spaces[0], 2), (spaces[1], 1)):
        for _ in range(n):
            user = await db.fetchval("INSERT INTO end_users (app_id, external_id) VALUES ($1, $2) RETURNING id",
                                     ws.app_id, uuid.uuid4().hex)
            conv = await db.fetchval("INSERT INTO conversations (app_id, user_id) VALUES ($1, $2) RETURNING id",
                                     ws.app_id, user)
            states[conv] = commit.ConversationState(conv, ws.app_id, user, 0)
    a, b, c = states.values()  # a and b in the first workspace, c in the second
    batch = [commit.NewMessage(uuid.uuid4(), s.app_id, s.id, seq, uuid.uuid4().hex, "user", s.user_id, f"m{k}",
                               "[]", k == 4, datetime.now(UTC))
             for k, (s, seq) in enumerate([(a, 1), (c, 1), (b, 1), (a, 2), (b, 2)])]
    async with db.acquire() as conn:
        await commit.insert_messages(conn, batch, states)
    apps = {str(ws.app_id) for ws in spaces}
    rows = await db.fetch("SELECT app_id, cardinality(message_ids) AS n FROM event_rows "
                          "WHERE app_id = ANY($1) AND type = 'message.created'", [ws.app_id for ws in spaces])
    assert sorted(r["n"] for r in rows) == [1, 4]  # one row for each workspace, not one a message

    def ours(events: list[DomainEvent]) -> list[DomainEvent]:
        return [e for e in events if e.app_id in apps and e.type == "message.created"]

    events = ours(await read_after(db, START, 100_000, by_reference=True))
    first = str(spaces[0].app_id)
    assert [referenced_message(e) for e in events if e.app_id == first] == [
        str(m.id) for m in batch if m.app_id == spaces[0].app_id]  # in commit order
    assert len(events) == 5 and len({e.id for e in events}) == 5
    by_message = {referenced_message(e): e for e in events}
    for m in batch:  # each event names its own conversation, user and sender
        e = by_message[str(m.id)]
        assert (e.conversation_id, e.user_id) == (str(m.conversation_id), str(states[m.conversation_id].user_id))
        assert referenced_sender(e) == ("user", m.is_note)
    positions = [Position.parse(e.position) for e in events]
    assert positions == sorted(positions) and len(set(positions)) == 5
    for k in range(5):  # resuming after each event, inside a row or at its end
        assert ours(await read_after(db, positions[k], 100_000, by_reference=True)) == events[k + 1:]
        assert ours(await read_between(db, positions[0], positions[k], 100)) == events[1:k]
        entries = await read_entries_after(db, positions[k], 1000, 100_000, 3)
        assert ours([e for entry in entries for e in decode_rows(entry.rows, positions[k])]) == events[k + 1:]
        for j in range(k, 5):  # the lag gauge's count, from and to inside a row or across rows
            assert await count_between(db, positions[k], positions[j], 100) == j - k
    firsts = [e for e in events if e.app_id == first]
    newest_first = await list_for_app(db, spaces[0].app_id, types=["message.created"],
                                      before=int(firsts[3].id.removeprefix("evt_")), limit=2)
    assert [e.id for e in newest_first] == [firsts[2].id, firsts[1].id]  # the route's cursor inside a row
    assert [e.data for e in newest_first] == [e.data for e in await resolve(db, [firsts[2], firsts[1]])]


async def test_a_groups_lag_counts_events_not_event_numbers(db: asyncpg.Pool, redis_url: str) -> None:
    """A row of messages spans 1,024 event numbers: the lag gauge counts the events a group has yet
    to apply up to the relay's checkpoint (here 7: a commit's row of 5, then 2 events), not numbers."""
    from server.platform.metrics import Metrics

    app = uuid.uuid4()
    start = await read_after(db, START, 100_000)
    begin = Position.parse(start[-1].position) if start else START
    await db.execute("INSERT INTO event_consumers (name, tx, seq) VALUES ('lagging', $1::text::xid8, $2)",
                     str(begin.tx), begin.n)
    await db.execute(
        """INSERT INTO event_rows (type, app_id, conversation_ids, user_ids, message_ids, sender_kinds, notes)
           SELECT 'message.created', $1, array_agg(gen_random_uuid()), array_agg(gen_random_uuid()),
                  array_agg(gen_random_uuid()), array_agg('user'::text), array_agg(false) FROM generate_series(1, 5)""",
        app)
    for _ in range(2):
        await db.execute("INSERT INTO event_rows (type, app_id, data) VALUES ('user.created', $1, '{}')", app)
    last = Position.parse((await read_after(db, START, 100_000))[-1].position)
    await db.execute("UPDATE event_relay SET tx = $1::text::xid8, seq = $2", str(last.tx), last.n)

    class Lagging:
        name = "lagging"

        async def apply(self, conn: asyncpg.Connection, events: list[Any]) -> None:
            return None

    metrics = Metrics()
    redis = aioredis.from_url(redis_url)
    try:
        assert await ConsumerGroup(db, redis, Lagging(), replica_id="r1", metrics=metrics).catch_up() == 7
    finally:
        await redis.aclose()
    # measured on the batch's checkpoint before it moved; the numbers between span more than 2,048
    assert metrics.event_registry.get_sample_value("replyhq_event_consumer_lag_events", {"group": "lagging"}) == 7


async def test_a_replica_not_yet_upgraded_still_records_its_events_through_the_view(db: asyncpg.Pool) -> None:
    """During a rolling upgrade, replicas of the code before migration 045 insert into
    `domain_events` one event a row, as they did: each insert records its event."""
    app, message = uuid.uuid4(), uuid.uuid4()
    async with db.acquire() as conn, conn.transaction():
        recorded = await conn.fetch(
            """WITH ev AS (INSERT INTO domain_events (type, app_id, conversation_id, user_id, message_id, sender_kind,
                                                      is_note)
                           VALUES ('message.created', $1, gen_random_uuid(), gen_random_uuid(), $2, 'admin', true)
                           RETURNING seq)
               SELECT seq FROM ev""", app, message)
        await conn.execute("INSERT INTO domain_events (type, app_id, data) VALUES ('user.created', $1, '{}'::json)",
                           app)
    events = [e for e in await read_after(db, START, 100_000, by_reference=True) if e.app_id == str(app)]
    assert [e.type for e in events] == ["message.created", "user.created"]
    assert events[0].id == f"evt_{recorded[0]['seq']}"
    assert (referenced_message(events[0]), referenced_sender(events[0])) == (str(message), ("admin", True))
    assert await db.fetchval("SELECT count(*) FROM event_rows WHERE app_id = $1", app) == 2


@pytest.mark.parametrize("days_old", [40])
async def test_retention_deletes_old_events_and_a_consumer_behind_it_says_so(
        workspace: NewWorkspace, db: asyncpg.Pool, redis_url: str, days_old: int,
        caplog: pytest.LogCaptureFixture) -> None:
    from workers.event_retention import EventRetention

    listed = await db.fetchrow(  # the newest old row lists three messages: they go together
        """INSERT INTO event_rows (type, app_id, conversation_ids, user_ids, message_ids, sender_kinds, notes)
           SELECT 'message.created', $1, array_agg(gen_random_uuid()), array_agg(gen_random_uuid()),
                  array_agg(gen_random_uuid()), array_agg('user'::text), array_agg(false) FROM generate_series(1, 3)
           RETURNING tx::text AS tx, seq""", workspace.app_id)
    await db.execute("UPDATE event_rows SET occurred_at = now() - make_interval(days => $1)", days_old)
    kept = await db.fetchval(
        "INSERT INTO event_rows (type, app_id, data) VALUES ('user.created', $1, '{}') RETURNING seq",
        workspace.app_id)
    redis = aioredis.from_url(redis_url)
    retention = EventRetention(db, redis, replica_id="r1", days=30, batch=2)
    assert await retention.prune() >= 3
    assert [r["seq"] for r in await db.fetch("SELECT seq FROM domain_events")] == [kept]
    # the mark is the row's last event: a checkpoint on its first or second has missed the rest
    assert tuple(await db.fetchrow("SELECT tx::text, seq FROM event_retention")) == (listed["tx"], listed["seq"] + 2)
    await db.execute("INSERT INTO event_consumers (name, tx, seq) VALUES ('event-counts', '0', 0)")
    group = ConsumerGroup(db, redis, EventCounts(), replica_id="r1")
    with caplog.at_level("ERROR"):
        await group.catch_up()
    assert "FELL BEHIND RETENTION" in caplog.text
    await redis.aclose()


async def test_killing_the_replica_that_committed_but_has_not_relayed_loses_no_event(
        start_server, workspace: NewWorkspace, redis_url: str, db_url: str) -> None:
    """replica-1 holds the relay lease but relays only once a minute (the window between commit
    and relay held open) and owns the conversation; it is SIGKILLed mid-stream. replica-2 takes
    the relay over from Postgres: every message has its one event, and the counts equal a recount."""
    import signal

    from actors.runtime.partitions import partition_of
    from tests.test_faults import PARTITIONS, _survives, assert_events_exactly_once

    slow = start_server(EVENT_RELAY_INTERVAL="60")
    await asyncio.sleep(1.0)  # it takes the single relay lease first
    survivor = start_server()
    await asyncio.sleep(1.5)  # conversation partitions settle over both
    redis = aioredis.from_url(redis_url)
    assert (await redis.get("actors:event-relay:lease:0")).decode() == "replica-1"
    first = ReplyHQClient(survivor.url, workspace.publishable_key, user_id="mover")
    await first.connect()
    conversation_id = ""
    for _ in range(40):  # a conversation whose actor runs on replica-1
        conversation_id = (await first.create_conversation(subject="relay"))["conversation"]["id"]
        owner = await redis.get(f"actors:conversation:lease:{partition_of(conversation_id, PARTITIONS)}")
        if owner == b"replica-1":
            break
    await first.close()
    await redis.aclose()

    async def kill_slow_relay() -> None:
        slow.stop(signal.SIGKILL)

    await _survives(survivor, workspace.publishable_key, db_url, kill_slow_relay, user_id="mover",
                    conversation_id=conversation_id)
    await assert_events_exactly_once(db_url)


async def test_a_consumer_dying_mid_batch_leaves_no_half_effect(workspace: NewWorkspace, db: asyncpg.Pool,
                                                                 redis_url: str) -> None:
    """A group's effect and its checkpoint commit together: a consumer stopped after writing its
    effect but before the commit leaves nothing, and the next one applies the batch exactly once."""
    import msgspec

    class DiesMidBatch(EventCounts):
        def __init__(self) -> None:
            self.wrote = asyncio.Event()

        async def apply_range(self, conn: asyncpg.Connection, after: Position, upto: Position) -> None:
            await super().apply_range(conn, after, upto)  # the effect is written ...
            self.wrote.set()
            await asyncio.Event().wait()  # ... and the process dies before the commit

    redis = aioredis.from_url(redis_url)
    await db.execute("INSERT INTO event_consumers (name, tx, seq) VALUES ('event-counts', '0', 0)")
    events = await read_after(db, START, 100)
    entries, prev = [], START
    for e in events:
        entries.append((b"0-0", {b"prev": str(prev).encode(), b"e": msgspec.json.encode(e)}))
        prev = Position.parse(e.position)
    dying = DiesMidBatch()
    first = ConsumerGroup(db, redis, dying, replica_id="r1")
    task = asyncio.create_task(first.handle(entries))
    await asyncio.wait_for(dying.wrote.wait(), 5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert await db.fetchval("SELECT count(*) FROM event_counts") == 0  # no half effect
    assert await ConsumerGroup(db, redis, EventCounts(), replica_id="r2").handle(entries) == len(events)
    assert await _counts_match_a_recount(db)
    await redis.aclose()
