"""Usage tests' traffic and the recount of it from raw rows."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

import asyncpg

from loadtests.sdk_client import ReplyHQClient
from server.tenancy.workspaces import NewWorkspace
from tests.admin_helpers import call
from tests.inbox_helpers import identify, reply, start_conversation, teammate
from tests.support import ServerProcess, http

SECRET_CALLS = 7


async def drive_traffic(server: ServerProcess, ws: NewWorkspace, owner: str) -> dict[str, Any]:
    """Three identified users (one only identifies), two conversations, user messages over REST and
    the SDK client's socket, agent replies and a note, secret-key calls, a teammate and an invite,
    and webhook deliveries to an endpoint that is not listening. Returns what was done."""
    agent = teammate(server, owner, "agent")
    status, _ = call(server, "POST", "/admin/api/team/invite", owner,
                     {"email": f"later-{uuid.uuid4().hex[:6]}@acme.test", "role": "viewer"})
    assert status == 201
    status, hook = call(server, "POST", "/admin/webhooks", owner,
                        {"url": "http://127.0.0.1:9/hook", "event_types": ["message.created"]})
    assert status == 201, hook
    for user in ("u1", "u2", "u3"):
        identify(server, ws, user)
    c1 = start_conversation(server, ws, "u1", "hi")
    c2 = start_conversation(server, ws, "u2", "hello")
    client = ReplyHQClient(server.url, ws.publishable_key, user_id="u1")
    await client.connect()
    try:
        for i in range(3):
            await client.send(c1["id"], f"more {i}")
    finally:
        await client.close()
    for conv, body in ((c1, "on it"), (c2, "hello there")):
        status, _ = reply(server, agent["access_token"], conv["id"], body)
        assert status in (200, 201)
    status, _ = reply(server, agent["access_token"], c2["id"], "vip", kind="notes")
    assert status in (200, 201)
    for _ in range(SECRET_CALLS):
        status, _ = http("GET", server.url + "/v1/conversations",
                         headers={"X-API-Key": ws.secret_key, "X-User-Id": "u3"})
        assert status == 200
    return {"seats": 2, "pending_invites": 1, "active_users": 3, "conversations": 2,
            "messages": {"user": 5, "admin": 2, "note": 1, "bot": 0, "system": 0}, "api_calls": SECRET_CALLS}


def month_start(today: date | None = None) -> date:
    return (today or datetime.now(UTC).date()).replace(day=1)


async def recount(db: asyncpg.Pool, app_id: UUID, month: date) -> dict[str, Any]:
    """Usage of the month counted again from the rows themselves: {metric: {day: n}}."""
    out: dict[str, dict[str, int]] = {}

    def put(metric: str, rows: list[asyncpg.Record]) -> None:
        for r in rows:
            out.setdefault(metric, {})[r["day"].isoformat()] = r["n"]

    span = "created_at >= $2::date::timestamp AT TIME ZONE 'UTC' " \
           "AND created_at < ($2::date + interval '1 month')::timestamp AT TIME ZONE 'UTC'"
    put("conversations", await db.fetch(
        f"SELECT (created_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n FROM conversations "
        f"WHERE app_id = $1 AND {span} GROUP BY 1", app_id, month))
    for r in await db.fetch(
            f"SELECT (created_at AT TIME ZONE 'UTC')::date AS day, CASE WHEN is_note THEN 'note' ELSE sender_kind END "
            f"AS kind, count(*) AS n FROM messages WHERE app_id = $1 AND {span} GROUP BY 1, 2", app_id, month):
        out.setdefault(f"messages.{r['kind']}", {})[r["day"].isoformat()] = r["n"]
    put("webhook_deliveries", await db.fetch(
        f"SELECT (created_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n FROM webhook_deliveries "
        f"WHERE app_id = $1 AND {span} GROUP BY 1", app_id, month))
    # Seen this month: last_seen_at in it (it only moves forward), or sent a message in it.
    active = await db.fetchval(
        f"""SELECT count(*) FROM (
              SELECT id FROM end_users WHERE app_id = $1 AND last_seen_at >= $2::date::timestamp AT TIME ZONE 'UTC'
              UNION SELECT sender_id FROM messages WHERE app_id = $1 AND sender_kind = 'user' AND {span}) s""",
        app_id, month)
    totals = {metric: sum(days.values()) for metric, days in out.items()}
    return {"daily": out, "totals": totals, "active_users": active}
