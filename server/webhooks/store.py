"""Plain SQL over webhook_endpoints, webhook_deliveries and webhook_attempts."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, TypeAlias
from uuid import UUID

import asyncpg
import msgspec

from server.events.record import record
from server.http.pagination import Cursor
from server.webhooks.schemas import Attempt, Delivery, DeliveryDetail, Endpoint, Health

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool
ROTATION_OVERLAP = "24 hours"  # the previous secret keeps signing this long

_ENDPOINT = """
SELECT e.id, e.url, e.description, e.event_types, e.enabled, e.disabled_reason, e.failing_since,
       CASE WHEN e.previous_secret_expires_at > now() THEN e.previous_secret_expires_at END
           AS previous_secret_expires_at, e.created_at, e.updated_at,
       h.n, h.ok, h.last_at, h.last_status,
       (SELECT count(*) FROM webhook_deliveries d WHERE d.endpoint_id = e.id AND d.status = 'pending') AS pending
FROM webhook_endpoints e
LEFT JOIN LATERAL (
    SELECT count(*) AS n, count(*) FILTER (WHERE a.status_code BETWEEN 200 AND 299) AS ok,
           max(a.created_at) AS last_at, (array_agg(a.status_code ORDER BY a.id DESC))[1] AS last_status
    FROM (SELECT status_code, created_at, id FROM webhook_attempts
          WHERE endpoint_id = e.id ORDER BY id DESC LIMIT 50) a
) h ON true
"""


def endpoint_out(r: asyncpg.Record) -> Endpoint:
    n = r["n"] or 0
    return Endpoint(
        id=str(r["id"]), url=r["url"], description=r["description"],
        event_types=list(r["event_types"]) if r["event_types"] is not None else None, enabled=r["enabled"],
        disabled_reason=r["disabled_reason"], previous_secret_expires_at=r["previous_secret_expires_at"],
        created_at=r["created_at"], updated_at=r["updated_at"],
        health=Health(recent_attempts=n, success_rate=round(r["ok"] / n, 3) if n else None,
                      last_attempt_at=r["last_at"], last_status=r["last_status"],
                      failing_since=r["failing_since"], pending=r["pending"]))


def event_data(endpoint: Endpoint) -> dict[str, Any]:
    data = msgspec.to_builtins(endpoint)
    data.pop("health", None)
    return {"endpoint": data}


async def list_endpoints(conn: Conn, app_id: UUID) -> list[Endpoint]:
    rows = await conn.fetch(_ENDPOINT + " WHERE e.app_id = $1 ORDER BY e.created_at, e.id", app_id)
    return [endpoint_out(r) for r in rows]


async def get_endpoint(conn: Conn, app_id: UUID, endpoint_id: UUID) -> Endpoint | None:
    row = await conn.fetchrow(_ENDPOINT + " WHERE e.app_id = $1 AND e.id = $2", app_id, endpoint_id)
    return endpoint_out(row) if row else None


async def create_endpoint(pool: asyncpg.Pool, app_id: UUID, admin_id: UUID | None, *, url: str, description: str,
                          event_types: list[str] | None, enabled: bool, secret: str) -> Endpoint:
    async with pool.acquire() as conn, conn.transaction():
        endpoint_id = await conn.fetchval(
            """INSERT INTO webhook_endpoints (app_id, url, description, event_types, enabled, secret,
                                              disabled_reason)
               VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $5 THEN NULL ELSE 'admin' END) RETURNING id""",
            app_id, url, description, event_types, enabled, secret)
        endpoint = await get_endpoint(conn, app_id, endpoint_id)
        assert endpoint is not None
        await record(conn, "webhook.endpoint_created", app_id, event_data(endpoint), admin_id=admin_id)
    return endpoint


async def update_endpoint(pool: asyncpg.Pool, app_id: UUID, admin_id: UUID | None, endpoint_id: UUID,
                          changes: dict[str, Any]) -> Endpoint | None:
    """changes: url, description, event_types, enabled (only those given). Enabling clears the
    reason it was disabled and its run of failures."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """UPDATE webhook_endpoints SET
                   url = CASE WHEN $3 THEN $4 ELSE url END,
                   description = CASE WHEN $5 THEN $6 ELSE description END,
                   event_types = CASE WHEN $7 THEN $8::text[] ELSE event_types END,
                   enabled = COALESCE($9, enabled),
                   disabled_reason = CASE WHEN $9 THEN NULL WHEN NOT $9 AND enabled THEN 'admin'
                                          ELSE disabled_reason END,
                   failing_since = CASE WHEN $9 AND NOT enabled THEN NULL ELSE failing_since END,
                   updated_at = now()
               WHERE app_id = $1 AND id = $2 RETURNING id""",
            app_id, endpoint_id, "url" in changes, changes.get("url"), "description" in changes,
            changes.get("description"), "event_types" in changes, changes.get("event_types"), changes.get("enabled"))
        if row is None:
            return None
        endpoint = await get_endpoint(conn, app_id, endpoint_id)
        assert endpoint is not None
        await record(conn, "webhook.endpoint_updated", app_id, {**event_data(endpoint), "changes": sorted(changes)},
                     admin_id=admin_id)
    return endpoint


async def delete_endpoint(pool: asyncpg.Pool, app_id: UUID, admin_id: UUID | None, endpoint_id: UUID) -> bool:
    async with pool.acquire() as conn, conn.transaction():
        endpoint = await get_endpoint(conn, app_id, endpoint_id)
        if endpoint is None:
            return False
        await conn.execute("DELETE FROM webhook_endpoints WHERE app_id = $1 AND id = $2", app_id, endpoint_id)
        await record(conn, "webhook.endpoint_deleted", app_id, event_data(endpoint), admin_id=admin_id)
    return True


async def rotate_secret(pool: asyncpg.Pool, app_id: UUID, admin_id: UUID | None, endpoint_id: UUID,
                        secret: str) -> Endpoint | None:
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            f"""UPDATE webhook_endpoints SET previous_secret = secret, secret = $3,
                    previous_secret_expires_at = now() + interval '{ROTATION_OVERLAP}', updated_at = now()
                WHERE app_id = $1 AND id = $2 RETURNING id""", app_id, endpoint_id, secret)
        if row is None:
            return None
        endpoint = await get_endpoint(conn, app_id, endpoint_id)
        assert endpoint is not None
        await record(conn, "webhook.secret_rotated", app_id, event_data(endpoint), admin_id=admin_id)
    return endpoint


# -- deliveries -------------------------------------------------------------------------------------

_DELIVERY = """id, endpoint_id, message_id, event_id, event_type, status, attempts, next_attempt_at,
               last_status, created_at, updated_at"""


def delivery_out(r: asyncpg.Record) -> Delivery:
    return Delivery(id=str(r["id"]), endpoint_id=str(r["endpoint_id"]), webhook_id=r["message_id"],
                    event_id=f"evt_{r['event_id']}" if r["event_id"] is not None else None,
                    event_type=r["event_type"], status=r["status"], attempts=r["attempts"],
                    next_attempt_at=r["next_attempt_at"] if r["status"] == "pending" else None,
                    last_status=r["last_status"], created_at=r["created_at"], updated_at=r["updated_at"])


def attempt_out(r: asyncpg.Record) -> Attempt:
    return Attempt(attempt=r["attempt"], status_code=r["status_code"], error=r["error"], latency_ms=r["latency_ms"],
                   response=r["response"], created_at=r["created_at"])


async def list_deliveries(conn: Conn, app_id: UUID, endpoint_id: UUID, *, status: str | None,
                          cursor: Cursor | None, limit: int) -> tuple[list[Delivery], Cursor | None]:
    rows = await conn.fetch(
        f"""SELECT {_DELIVERY} FROM webhook_deliveries
            WHERE app_id = $1 AND endpoint_id = $2 AND ($3::text IS NULL OR status = $3)
              AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5::uuid))
            ORDER BY created_at DESC, id DESC LIMIT $6""",
        app_id, endpoint_id, status, cursor.updated_at if cursor else None, cursor.id if cursor else None, limit + 1)
    page = rows[:limit]
    more = len(rows) > limit
    return [delivery_out(r) for r in page], Cursor(page[-1]["created_at"], page[-1]["id"]) if more and page else None


async def get_delivery(conn: Conn, app_id: UUID, endpoint_id: UUID, delivery_id: UUID) -> DeliveryDetail | None:
    row = await conn.fetchrow(
        f"SELECT {_DELIVERY}, payload FROM webhook_deliveries WHERE app_id = $1 AND endpoint_id = $2 AND id = $3",
        app_id, endpoint_id, delivery_id)
    if row is None:
        return None
    attempts = await conn.fetch(
        "SELECT * FROM webhook_attempts WHERE delivery_id = $1 ORDER BY id", delivery_id)
    base = msgspec.structs.asdict(delivery_out(row))
    return DeliveryDetail(**base, payload=msgspec.json.decode(row["payload"]),
                          attempt_log=[attempt_out(a) for a in attempts])


async def replay(conn: Conn, app_id: UUID, endpoint_id: UUID, delivery_id: UUID) -> tuple[str, Delivery | None]:
    """Due now, with a fresh schedule of attempts, the same webhook-id. ("ok" | "not_found" | "in_flight")."""
    row = await conn.fetchrow(
        f"""UPDATE webhook_deliveries SET status = 'pending', tries = 0, next_attempt_at = now(),
                claimed_until = NULL, claim = NULL, updated_at = now()
            WHERE app_id = $1 AND endpoint_id = $2 AND id = $3 AND (claimed_until IS NULL OR claimed_until < now())
            RETURNING {_DELIVERY}""", app_id, endpoint_id, delivery_id)
    if row is not None:
        return "ok", delivery_out(row)
    exists = await conn.fetchval("SELECT 1 FROM webhook_deliveries WHERE app_id = $1 AND endpoint_id = $2 AND id = $3",
                                 app_id, endpoint_id, delivery_id)
    return ("in_flight" if exists else "not_found"), None


async def new_ping(conn: Conn, app_id: UUID, endpoint_id: UUID, payload: str,
                   lease_s: float) -> asyncpg.Record | None:
    """A ping delivery, claimed by the caller who sends it right away (with the endpoint's secrets)."""
    row = await conn.fetchrow(
        """INSERT INTO webhook_deliveries (app_id, endpoint_id, message_id, event_type, payload, claim,
                                            claimed_until, next_attempt_at)
            SELECT e.app_id, e.id, $3, 'webhook.ping', $4, $5, now() + $6 * interval '1 second',
                   now() + $6 * interval '1 second'
            FROM webhook_endpoints e WHERE e.app_id = $1 AND e.id = $2
            RETURNING id""",
        app_id, endpoint_id, "msg_" + uuid.uuid4().hex, payload, uuid.uuid4(), lease_s)
    if row is None:
        return None
    return await conn.fetchrow(
        """SELECT d.id, d.app_id, d.endpoint_id, d.message_id, d.payload, d.attempts, d.tries, d.claim, d.event_at,
                  e.url, e.secret,
                  CASE WHEN e.previous_secret_expires_at > now() THEN e.previous_secret END AS previous_secret
           FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id WHERE d.id = $1""", row["id"])


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
