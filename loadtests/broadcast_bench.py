"""The `broadcast` bench scenario: one broadcast to every user of a big workspace, rate cap lifted.

Users are seeded by COPY (not timed). The same number of recipient rows is also COPYed bare into a
table shaped like `broadcast_recipients` (its columns, defaults and indexes; no foreign key, no
trigger), in the same run, so `fraction_of_copy` compares the send with what this
machine's Postgres can take at all. `online` SDK clients of the audience listen on `/client` (the
Node driver's listen mode); a few small broadcasts scheduled to start now measure how late the
scheduler starts a run after its time.

Prints recipients_persisted_per_s (rows committed as sent, from send-now to the last batch),
online_deliveries_per_s, schedule_lag_p99_ms, duplicates (recipient rows beyond one per user, and
repeated socket deliveries), server_rss_mb at the start and at its peak.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import asyncpg
import psutil

from loadtests.bench import _driver, _result, _rss_mb, _wait_phase
from server.tenancy.workspaces import create_workspace
from tests.support import http

PASSWORD = "bench-broadcast-password"
LAG_BROADCASTS = 20


async def _seed(db_url: str, users: int) -> tuple[uuid.UUID, str, str, float]:
    """A workspace with `users` end users u-0 ... (COPY); returns (app id, owner email, its publishable
    key, bare COPY rows/s)."""
    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=2)
    try:
        email = f"broadcast-{uuid.uuid4().hex[:8]}@bench.local"
        ws = await create_workspace(pool, app_name="broadcast bench", email=email, password=PASSWORD)
        ids = [uuid.uuid4() for _ in range(users)]
        async with pool.acquire() as conn:
            await conn.copy_records_to_table(
                "end_users", columns=["id", "app_id", "external_id", "name"],
                records=((ids[i], ws.app_id, f"u-{i}", f"User {i}") for i in range(users)))
            await conn.execute("ANALYZE end_users")
            # The yardstick: the same (run, ord, user) rows COPYed into the table they belong in, bare
            # (indexes, as the rows need them to be unique and found; no foreign key).
            await conn.execute("CREATE TABLE bench_bare_copy (LIKE broadcast_recipients INCLUDING DEFAULTS "
                               "INCLUDING INDEXES INCLUDING STORAGE)")
            run = uuid.uuid4()
            records = [(run, i + 1, ids[i], 1) for i in range(users)]
            t0 = time.perf_counter()
            await conn.copy_records_to_table("bench_bare_copy", records=records,
                                             columns=["run_id", "ord", "user_id", "state"])
            copy_s = time.perf_counter() - t0
            await conn.execute("DROP TABLE bench_bare_copy")
        return ws.app_id, email, ws.publishable_key, users / copy_s
    finally:
        await pool.close()


async def _lags(db_url: str, app_id: uuid.UUID) -> list[float]:
    conn = await asyncpg.connect(db_url)
    try:
        rows = await conn.fetch(
            """SELECT extract(epoch FROM r.started_at - r.scheduled_for) AS lag
               FROM broadcast_runs r JOIN broadcasts b ON b.id = r.broadcast_id
               WHERE b.app_id = $1 AND b.name LIKE 'lag %' AND r.started_at IS NOT NULL""", app_id)
        return sorted(float(r["lag"]) for r in rows)
    finally:
        await conn.close()


async def _outcome(db_url: str, broadcast_id: str) -> dict[str, Any]:
    conn = await asyncpg.connect(db_url)
    try:
        row = await conn.fetchrow(
            """SELECT r.created_at, r.status, count(x.*) AS rows, count(DISTINCT x.user_id) AS users,
                      count(*) FILTER (WHERE x.state >= 1) AS sent, max(x.sent_at) AS last_sent
               FROM broadcast_runs r LEFT JOIN broadcast_recipients x ON x.run_id = r.id
               WHERE r.broadcast_id = $1 GROUP BY r.id""", uuid.UUID(broadcast_id))
        return dict(row) if row else {}
    finally:
        await conn.close()


def _admin(url: str, email: str) -> dict[str, str]:
    status, body = http("POST", url + "/admin/auth/login", {"email": email, "password": PASSWORD})
    assert status == 200, body
    return {"authorization": f"Bearer {body['access_token']}"}


def _create(url: str, auth: dict[str, str], body: dict[str, Any]) -> str:
    status, created = http("POST", url + "/admin/api/broadcasts", body, headers=auth)
    if status != 201:
        raise RuntimeError(f"creating a broadcast: {status} {created}")
    return str(created["id"])


def run_broadcast(urls: list[str], db_url: str, *, users: int, online: int,
                  procs: list[psutil.Process]) -> dict[str, object]:
    app_id, email, publishable, copy_rows_per_s = asyncio.run(_seed(db_url, users))
    url = urls[0]
    auth = _admin(url, email)
    listener = None
    if online:
        listener = _driver({"mode": "listen", "urls": urls, "apiKey": publishable, "clients": online,
                            "userPrefix": "u-", "holdS": 300, "quietS": 5})
        _wait_phase(listener, "connected", timeout=180)

    # Schedule lag: small broadcasts to nobody, scheduled to start now (`once` takes whole minutes):
    # from their next_run_at to the run's start is the scheduler's tick plus the actor's start.
    nobody = {"all": [{"field": "external_id", "op": "eq", "value": "nobody"}]}
    for i in range(LAG_BROADCASTS):
        bid = _create(url, auth, {"name": f"lag {i}", "message": {"text": "lag"}, "audience": {"filter": nobody},
                                  "schedule": {"kind": "now"}})
        status, body = http("POST", f"{url}/admin/api/broadcasts/{bid}/schedule", {}, headers=auth)
        assert status == 200, body
        time.sleep(0.1)
    time.sleep(3)

    rss_start = _rss_mb(procs)
    bid = _create(url, auth, {"name": "everyone", "message": {"text": "Hi {{user.name|there}}, news for you"},
                              "audience": {"filter": {"all": [{"field": "external_id", "op": "exists",
                                                               "value": True}]}},
                              "schedule": {"kind": "now"}, "rate_per_s": 1_000_000})
    status, body = http("POST", f"{url}/admin/api/broadcasts/{bid}/send-now", {}, headers=auth, timeout=60)
    assert status in (200, 202), body
    rss_peak = rss_start
    deadline = time.monotonic() + 600
    state = "sending"
    while time.monotonic() < deadline:
        rss_peak = max(rss_peak, _rss_mb(procs))
        status, b = http("GET", f"{url}/admin/api/broadcasts/{bid}", headers=auth)
        state = b.get("status") if status == 200 else state
        if state in ("completed", "failed", "cancelled"):
            break
        time.sleep(0.5)
    out = asyncio.run(_outcome(db_url, bid))
    heard: dict[str, Any] = _result(listener, timeout=400) if listener is not None else {}
    span = (out["last_sent"] - out["created_at"]).total_seconds() if out.get("last_sent") else None
    persisted = round(out["sent"] / span) if span else None
    lags = asyncio.run(_lags(db_url, app_id))
    online_span = ((heard["last_at"] - heard["first_at"]) / 1000) if heard.get("last_at") else None
    return {
        "users": users, "status": state, "targeted": out.get("rows"), "sent": out.get("sent"),
        "recipients_persisted_per_s": persisted,
        "bare_copy_rows_per_s": round(copy_rows_per_s),
        "fraction_of_copy": round(persisted / copy_rows_per_s, 3) if persisted else None,
        "online_clients": online, "online_received": heard.get("received"),
        "online_deliveries_per_s": round(heard["received"] / online_span) if online_span else None,
        "schedule_lag_p99_ms": round(lags[min(len(lags) - 1, int(0.99 * len(lags)))] * 1000) if lags else None,
        "schedule_runs": len(lags),
        "duplicates": int(out.get("rows", 0) - out.get("users", 0)) + int(heard.get("repeats", 0)),
        "server_rss_mb_start": round(rss_start, 1), "server_rss_mb": round(rss_peak, 1),
    }
