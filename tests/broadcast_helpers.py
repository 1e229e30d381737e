"""Helpers for the broadcast actor tests: users seeded by COPY, a broadcast and its run inserted as
the routes and the scheduler would, commands sent the way a replica sends them to the owner, and
the recounts every counter must equal."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from actors.runtime.partitions import partition_of
from server.settings import Settings
from tests.admin_helpers import call, login
from tests.support import ServerProcess

PARTITIONS = Settings().actor_partitions  # the servers under test run with the default


async def seed_users(conn: asyncpg.Pool | asyncpg.Connection, app_id: uuid.UUID, n: int, *,
                     named: bool = True) -> list[tuple[uuid.UUID, str, str | None]]:
    """`n` users `u-0` … by COPY; every third has no name. (id, external_id, name) in id order."""
    rows = [(uuid.uuid4(), app_id, f"u-{i}", (f"Name {i}" if named and i % 3 else None)) for i in range(n)]
    await conn.copy_records_to_table("end_users", records=rows, columns=["id", "app_id", "external_id", "name"])
    return sorted((r[0], r[2], r[3]) for r in rows)


async def create_broadcast(conn: asyncpg.Pool | asyncpg.Connection, app_id: uuid.UUID, admin_id: uuid.UUID, *,
                           text: str = "Hi {{user.name|there}}, see what's new", rate: int = 1000,
                           button_url: str | None = "https://example.com/new",
                           audience: dict[str, Any] | None = None,
                           broadcast_id: uuid.UUID | None = None) -> tuple[uuid.UUID, uuid.UUID]:
    """A send-now broadcast and its run (pending), as send-now leaves them; (broadcast_id, run_id)."""
    message: dict[str, Any] = {"text": text, "sender_admin_id": str(admin_id)}
    if button_url:
        message.update(button_url=button_url, button_label="See what's new")
    bid = await conn.fetchval(
        """INSERT INTO broadcasts (id, app_id, name, status, message, audience, schedule, rate_per_s)
           VALUES ($1, $2, 'Spring release', 'sending', $3::text::jsonb, $4::text::jsonb, '{"kind": "now"}', $5)
           RETURNING id""",
        broadcast_id or uuid.uuid4(), app_id, json.dumps(message), json.dumps(audience or {"filter": {"all": []}}),
        rate)
    run_id = await conn.fetchval(
        "INSERT INTO broadcast_runs (broadcast_id, app_id, scheduled_for) VALUES ($1, $2, now()) RETURNING id",
        bid, app_id)
    return bid, run_id


def admin_token(server: ServerProcess, email: str) -> str:
    status, session = login(server, email)
    assert status == 200, session
    return str(session["access_token"])


def new_broadcast(server: ServerProcess, token: str, *, text: str = "Hi {{user.name|there}}, see what's new",
                  rate: int = 1000, audience: dict[str, Any] | None = None) -> uuid.UUID:
    """A send-now draft through the admin API; its id."""
    status, body = call(server, "POST", "/admin/api/broadcasts", token, {
        "name": "Spring release", "rate_per_s": rate, "schedule": {"kind": "now"},
        "audience": audience or {"filter": {"all": []}},
        "message": {"text": text, "button_url": "https://example.com/new", "button_label": "See what's new"}})
    assert status == 201, body
    return uuid.UUID(body["id"])


async def send_now(server: ServerProcess, token: str, db: asyncpg.Pool | asyncpg.Connection,
                   broadcast_id: uuid.UUID) -> uuid.UUID:
    """POST send-now; the run it made."""
    status, body = await asyncio.to_thread(call, server, "POST", f"/admin/api/broadcasts/{broadcast_id}/send-now",
                                           token)
    assert status == 200 and body["status"] == "sending", body
    return uuid.UUID(str(await db.fetchval("SELECT id FROM broadcast_runs WHERE broadcast_id = $1", broadcast_id)))


async def act(server: ServerProcess, token: str, broadcast_id: uuid.UUID, command: str) -> str:
    """POST pause, resume or cancel; the status the actor answered."""
    status, body = await asyncio.to_thread(call, server, "POST", f"/admin/api/broadcasts/{broadcast_id}/{command}",
                                           token)
    assert status == 200, body
    return str(body["status"])


async def owner_of(redis_url: str, broadcast_id: uuid.UUID) -> str | None:
    r = aioredis.from_url(redis_url)
    try:
        owner = await r.get(f"actors:broadcast:lease:{partition_of(str(broadcast_id), PARTITIONS)}")
    finally:
        await r.aclose()
    return owner.decode() if owner else None


async def run_row(conn: asyncpg.Pool | asyncpg.Connection, run_id: uuid.UUID) -> dict[str, Any]:
    r = await conn.fetchrow(
        """SELECT br.status, br.sent_through, b.status AS broadcast_status, coalesce(s.targeted, 0) AS targeted,
                  coalesce(s.sent, 0) AS sent
           FROM broadcast_runs br JOIN broadcasts b ON b.id = br.broadcast_id
           LEFT JOIN broadcast_stats s ON s.run_id = br.id WHERE br.id = $1""", run_id)
    return dict(r)


async def wait_run(conn: asyncpg.Pool | asyncpg.Connection, run_id: uuid.UUID, *, status: tuple[str, ...] = (),
                   sent_at_least: int | None = None, timeout: float = 60) -> dict[str, Any]:
    """Poll until the run has one of `status` (or sent at least `sent_at_least`)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            row = await run_row(conn, run_id)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            row = None  # Postgres restarting under the test
        if row is not None and ((status and row["status"] in status)
                                or (sent_at_least is not None and row["sent"] >= sent_at_least)):
            return row
        assert asyncio.get_running_loop().time() < deadline, row
        await asyncio.sleep(0.1)


async def assert_counters_match_recount(conn: asyncpg.Pool | asyncpg.Connection, run_id: uuid.UUID) -> dict[str, int]:
    """targeted and sent, per run and per minute, equal a recount of the recipients; so does the
    sum of the run's messages_sent events."""
    recount = await conn.fetchrow(
        """SELECT count(*) AS targeted, count(*) FILTER (WHERE state BETWEEN 1 AND 3) AS sent,
                  count(DISTINCT user_id) AS users FROM broadcast_recipients WHERE run_id = $1""", run_id)
    stats = await conn.fetchrow("SELECT targeted, sent FROM broadcast_stats WHERE run_id = $1", run_id)
    minutes = await conn.fetchval("SELECT coalesce(sum(sent), 0) FROM broadcast_stats_minutes WHERE run_id = $1",
                                  run_id)
    events = await conn.fetchval(
        """SELECT coalesce(sum((data ->> 'count')::bigint), 0) FROM domain_events
           WHERE type = 'broadcast.messages_sent' AND data ->> 'run_id' = $1""", str(run_id))
    assert recount["users"] == recount["targeted"]  # nobody twice in one run
    assert (stats["targeted"], stats["sent"]) == (recount["targeted"], recount["sent"])
    assert minutes == events == recount["sent"]
    return {"targeted": recount["targeted"], "sent": recount["sent"]}
