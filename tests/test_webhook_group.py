"""The webhooks consumer group: batches of workspaces without an endpoint cost no transaction, and
an endpoint gets every event recorded after it, whichever replica reads what."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg
import msgspec
import pytest
import redis.asyncio as aioredis

from server.events.record import record
from server.events.store import START, Position, read_after
from server.tenancy.workspaces import NewWorkspace
from server.webhooks import signing, store
from server.webhooks.deliveries import WebhookDeliveries
from workers.runtime import consumer_groups
from workers.runtime.consumer_groups import ConsumerGroup


class Stream:
    """Stream entries of one event each, as a relay appends them, from what Postgres holds."""

    def __init__(self, db: asyncpg.Pool) -> None:
        self.db = db
        self.prev = START

    async def next(self) -> list[tuple[bytes, dict[bytes, bytes]]]:
        entries = []
        for e in await read_after(self.db, self.prev, 1000):
            entries.append((b"0-0", {b"prev": str(self.prev).encode(), b"e": msgspec.json.encode(e)}))
            self.prev = Position.parse(e.position)
        return entries


async def _user_updated(db: asyncpg.Pool, app_id: UUID, n: int) -> list[int]:
    """`n` user.updated events of the workspace, each in its own transaction; their ids."""
    ids = []
    for _ in range(n):
        async with db.acquire() as conn, conn.transaction():
            await record(conn, "user.updated", app_id, {"changes": ["name"]})
            ids.append(await conn.fetchval("SELECT max(seq) FROM domain_events"))
    return ids


async def _endpoint(db: asyncpg.Pool, app_id: UUID) -> None:
    await store.create_endpoint(db, app_id, None, url="https://hooks.example.com/in", description="",
                                event_types=None, enabled=True, secret=signing.new_secret())


async def _delivered(db: asyncpg.Pool, app_id: UUID) -> set[int]:
    return {r["event_id"] for r in await db.fetch("SELECT event_id FROM webhook_deliveries WHERE app_id = $1",
                                                  app_id)}


async def _checkpoint(db: asyncpg.Pool) -> Any:
    return await db.fetchval("SELECT seq FROM event_consumers WHERE name = 'webhooks'")


async def test_an_endpoint_gets_every_event_after_it_and_workspaces_without_one_cost_no_transaction(
        workspace: NewWorkspace, other_workspace: NewWorkspace, db: asyncpg.Pool, redis_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Replica r1 reads every entry: batches of a workspace without an endpoint leave the checkpoint
    where it was (nothing committed). An endpoint created meanwhile is learned from its
    `webhook.endpoint_created`, read before the events it is owed: each of those is delivered,
    none before it. Replica r2, which never read that event (r1 applied it), reloads what it knows
    before it passes anything over again (at most every REFRESH_EVERY_S; until then it applies),
    so its batches that follow on from its own deliver too."""
    # However slow the machine: no save on a timer, and a refresh only when none came before.
    monkeypatch.setattr(consumer_groups, "SKIP_SAVE_S", 600.0)
    monkeypatch.setattr(consumer_groups, "REFRESH_EVERY_S", 600.0)
    redis = aioredis.from_url(redis_url)
    a, b = workspace.app_id, other_workspace.app_id
    await db.execute("INSERT INTO event_consumers (name, tx, seq) VALUES ('webhooks', '0', 0)")
    stream = Stream(db)
    r1 = ConsumerGroup(db, redis, WebhookDeliveries(), replica_id="r1")
    r2 = ConsumerGroup(db, redis, WebhookDeliveries(), replica_id="r2")
    try:
        first = await stream.next()  # the two workspaces' own events
        assert await r1.handle(first[:1]) == 1  # its first batch: the checkpoint locked, what it knows loaded
        assert await r2.handle(first[:1]) == 0  # r2 too (nothing new for it)
        saved = await _checkpoint(db)
        for entry in first[1:]:
            assert await r1.handle([entry]) == 1
        await _user_updated(db, a, 3)
        for entry in await stream.next():
            assert await r1.handle([entry]) == 1
        assert await _checkpoint(db) == saved  # passed over: no endpoint anywhere, no transaction
        assert await r1.catch_up() == 0  # a quiet moment saves what was passed over, reads none of it again
        assert await _checkpoint(db) == stream.prev.n
        saved = await _checkpoint(db)

        before = await _user_updated(db, b, 1)
        await _endpoint(db, b)
        owed = await _user_updated(db, b, 2)
        entries = await stream.next()  # b's event, its endpoint's, b's two events
        assert await r1.handle(entries[:3]) == 3  # learned from the entry before the first it is owed
        assert await _checkpoint(db) > saved
        assert await _delivered(db, b) == {owed[0]}
        assert await r2.handle(entries[3:]) == 1  # r2 never read the endpoint's event
        assert await _delivered(db, b) == set(owed)

        more = await _user_updated(db, b, 2)
        await _user_updated(db, a, 2)
        for entry in await stream.next():  # each follows on from r2's last: no lock, what r2 knows decides
            assert await r2.handle([entry]) == 1
        assert await _delivered(db, b) == {*owed, *more}
        assert not await _delivered(db, a) and not set(before) & await _delivered(db, b)

        # r1 applies one more (r2 cannot tell what came in it), then r2 reads on: refreshed moments
        # ago, it does not refresh again yet, so it applies even a batch with nothing in it for
        # anyone (the transaction decides) rather than pass it over on what it knew.
        late = await _user_updated(db, b, 1)
        await r1.handle(await stream.next())  # with the two of a's that r2 passed over unsaved
        await _user_updated(db, a, 1)
        assert await r2.handle(await stream.next()) == 1  # the checkpoint had moved: locked, and r2 takes note
        quiet = await _user_updated(db, a, 1)
        assert await r2.handle(await stream.next()) == 1
        assert await _checkpoint(db) == quiet[0]  # applied in a transaction, not passed over
        assert await _delivered(db, b) == {*owed, *more, *late}
    finally:
        await redis.aclose()


async def test_an_event_whose_transaction_began_after_the_endpoints_but_recorded_before_it_is_not_owed(
        workspace: NewWorkspace, db: asyncpg.Pool, db_url: str, redis_url: str) -> None:
    """An endpoint is owed the events positioned after its creation, the order the group learns it
    in; an event of a transaction that began later than the endpoint's but wrote first (so it sits
    before) is not delivered, neither by a replica that passes it over knowing nothing of the
    endpoint nor by one that applies it knowing the endpoint (its clock alone would say it is owed)."""
    redis = aioredis.from_url(redis_url)
    app_id = workspace.app_id
    await db.execute("INSERT INTO event_consumers (name, tx, seq) VALUES ('webhooks', '0', 0)")
    creating, writing = await asyncpg.connect(db_url), await asyncpg.connect(db_url)
    try:
        endpoint_tx = creating.transaction()
        await endpoint_tx.start()
        await creating.execute("SELECT now()")  # the endpoint's clock starts here
        event_tx = writing.transaction()
        await event_tx.start()
        await record(writing, "user.updated", app_id, {"changes": ["name"]})  # takes its id first
        await creating.execute(
            """INSERT INTO webhook_endpoints (app_id, url, secret) VALUES ($1, 'https://hooks.example.com/in', $2)""",
            app_id, signing.new_secret())
        await record(creating, "webhook.endpoint_created", app_id, {})
        await endpoint_tx.commit()
        await event_tx.commit()
        assert await db.fetchval(
            """SELECT e.occurred_at >= ep.created_at AND e.tx < ep.created_tx
               FROM domain_events e, webhook_endpoints ep WHERE e.type = 'user.updated'""")
        owed = await _user_updated(db, app_id, 1)
        entries = await Stream(db).next()
        group = ConsumerGroup(db, redis, WebhookDeliveries(), replica_id="r1")
        assert await group.handle(entries) == len(entries)  # one batch, applied knowing the endpoint
        assert await _delivered(db, app_id) == set(owed)
    finally:
        await creating.close()
        await writing.close()
        await redis.aclose()
