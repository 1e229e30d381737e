"""The `broadcast` bench scenario: one broadcast to every user of a workspace of `users` (seeded by
COPY), with the rate cap lifted, while `online` SDK sockets (the Node driver) wait for it; and a
handful of small broadcasts scheduled meanwhile, for how late a due run starts under that load.

Prints recipients_persisted_per_s (the audience snapshotted and sent: recipients over the run's
start to its last send), online_deliveries_per_s, schedule_lag_p99_ms (run start minus its
scheduled time), duplicates (live, and stored), server_rss_mb (peak), and a bare COPY of the same
recipient rows into a copy of the table: fraction_of_copy = recipients_persisted_per_s / copy rows/s.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any

import asyncpg
import psutil

from server.tenancy.workspaces import create_workspace
from tests.support import http

SMALL_BROADCASTS = 20
COPY_CHUNK = 100_000


async def _seed(db_url: str, users: int) -> tuple[Any, str]:
    """A workspace of `users` users `bc-0` … (COPY, in chunks); the workspace and its prefix."""
    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=2)
    try:
        ws = await create_workspace(pool, app_name="broadcast-bench", email=f"bc-{uuid.uuid4().hex[:8]}@bench.local",
                                    password="bench-password")
    finally:
        await pool.close()
    conn = await asyncpg.connect(db_url)
    try:
        prefix = f"bc-{uuid.uuid4().hex[:6]}-"
        for start in range(0, users, COPY_CHUNK):
            rows = [(uuid.uuid4(), ws.app_id, f"{prefix}{i}", f"User {i}")
                    for i in range(start, min(users, start + COPY_CHUNK))]
            await conn.copy_records_to_table("end_users", records=rows, columns=["id", "app_id", "external_id", "name"])
        await conn.execute("ANALYZE end_users")
        return ws, prefix
    finally:
        await conn.close()


async def _bare_copy(db_url: str, run_id: uuid.UUID) -> float:
    """Rows per second of a plain COPY of the run's recipient rows into a copy of the table (its
    indexes included): what the database itself can take."""
    conn = await asyncpg.connect(db_url)
    try:
        rows = [(run_id, r["ord"], r["user_id"]) for r in await conn.fetch(
            "SELECT ord, user_id FROM broadcast_recipients WHERE run_id = $1", run_id)]
        await conn.execute("DROP TABLE IF EXISTS bench_copy")
        await conn.execute("CREATE UNLOGGED TABLE bench_copy (LIKE broadcast_recipients INCLUDING ALL)")
        await conn.execute("ALTER TABLE bench_copy SET LOGGED")
        t0 = time.perf_counter()
        await conn.copy_records_to_table("bench_copy", records=rows, columns=["run_id", "ord", "user_id"])
        elapsed = time.perf_counter() - t0
        await conn.execute("DROP TABLE bench_copy")
        return len(rows) / elapsed
    finally:
        await conn.close()


async def _run_figures(db_url: str, run_id: uuid.UUID, small: list[uuid.UUID]) -> dict[str, Any]:
    conn = await asyncpg.connect(db_url)
    try:
        run = await conn.fetchrow(
            """SELECT br.started_at, br.scheduled_for, br.status, s.targeted, s.sent,
                      (SELECT max(sent_at) FROM broadcast_recipients WHERE run_id = br.id) AS last_sent,
                      (SELECT count(*) - count(DISTINCT user_id) FROM broadcast_recipients WHERE run_id = br.id) AS dups
               FROM broadcast_runs br JOIN broadcast_stats s ON s.run_id = br.id WHERE br.id = $1""", run_id)
        lags = [float(r["lag"]) for r in await conn.fetch(
            """SELECT extract(epoch FROM started_at - scheduled_for) * 1000 AS lag FROM broadcast_runs
               WHERE broadcast_id = ANY($1::uuid[]) AND started_at IS NOT NULL""", small)]
        return {**dict(run), "lags": sorted(lags)}
    finally:
        await conn.close()


async def _status(db_url: str, run_id: uuid.UUID) -> str | None:
    conn = await asyncpg.connect(db_url)
    try:
        return await conn.fetchval("SELECT status FROM broadcast_runs WHERE id = $1", run_id)  # type: ignore[no-any-return]
    finally:
        await conn.close()


def _call(url: str, token: str, method: str, path: str, body: Any = None) -> Any:
    status, out = http(method, url + path, body, headers={"authorization": f"Bearer {token}"}, timeout=30)
    assert status in (200, 201), (path, status, out)
    return out


def run_broadcast(urls: list[str], db_url: str, *, users: int, online: int, procs: list[psutil.Process],
                  driver: Any, wait_phase: Any, result: Any) -> dict[str, object]:
    """`driver`, `wait_phase`, `result`: loadtests/bench.py's Node driver helpers."""
    ws, prefix = asyncio.run(_seed(db_url, users))
    url = urls[0]
    status, session = http("POST", url + "/admin/auth/login", {"email": ws.email, "password": "bench-password"})
    assert status == 200, session
    token = session["access_token"]
    sockets = driver({"mode": "broadcast", "urls": urls, "apiKey": ws.publishable_key, "clients": online,
                      "userPrefix": prefix, "holdS": 900})
    wait_phase(sockets, "connected", timeout=300)
    peak = [0.0]
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            rss = 0
            for p in procs:
                try:
                    rss += p.memory_info().rss
                except psutil.NoSuchProcess:
                    pass
            peak[0] = max(peak[0], rss / 2**20)
            time.sleep(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    big = _call(url, token, "POST", "/admin/api/broadcasts", {
        "name": "Everyone", "rate_per_s": 1_000_000, "audience": {"filter": {"all": []}},
        "message": {"text": "Hi {{user.name|there}}, something new", "button_url": "https://example.com/new"}})
    _call(url, token, "POST", f"/admin/api/broadcasts/{big['id']}/send-now")
    run_id = uuid.UUID(str(asyncio.run(_first_run(db_url, uuid.UUID(big["id"])))))
    # Meanwhile: small broadcasts to offline users, each scheduled to start now (the scheduler's tick).
    small = []
    for i in range(SMALL_BROADCASTS):
        one = _call(url, token, "POST", "/admin/api/broadcasts", {
            "name": f"small {i}", "audience": {"filter": {"all": [
                {"field": "external_id", "op": "eq", "value": f"{prefix}{online + i}"}]}},
            "message": {"text": "Hi"}})
        _call(url, token, "POST", f"/admin/api/broadcasts/{one['id']}/schedule")
        small.append(uuid.UUID(one["id"]))
        time.sleep(0.2)
    deadline = time.monotonic() + 1800
    while asyncio.run(_status(db_url, run_id)) != "completed" and time.monotonic() < deadline:
        time.sleep(0.5)
    live = result(sockets, 900)
    sampling.set()
    sampler.join()
    figures = asyncio.run(_run_figures(db_url, run_id, small))
    copy_per_s = asyncio.run(_bare_copy(db_url, run_id))
    started, last_sent = figures["started_at"], figures["last_sent"]
    elapsed = (last_sent - started).total_seconds() if started and last_sent else None
    persisted = figures["targeted"] / elapsed if elapsed else 0.0
    first, last = live.get("first_at_ms"), live.get("last_at_ms")
    window_s = (last - first) / 1000 if first and last and last > first else None
    lags = figures["lags"]
    return {"users": users, "online": online, "connected": live["connected"], "status": figures["status"],
            "targeted": figures["targeted"], "sent": figures["sent"], "send_s": round(elapsed or 0, 1),
            "recipients_persisted_per_s": round(persisted),
            "online_received": live["received"],
            "online_deliveries_per_s": round(live["received"] / window_s) if window_s else None,
            "delivery_lag_p50_ms": live["lag_p50_ms"], "delivery_lag_p99_ms": live["lag_p99_ms"],
            "schedule_lag_p99_ms": round(lags[min(len(lags) - 1, int(0.99 * len(lags)))]) if lags else None,
            "scheduled_runs_started": len(lags),
            "duplicates": int(live["duplicates"]) + int(figures["dups"]),
            "server_rss_mb": round(peak[0], 1),
            "copy_rows_per_s": round(copy_per_s), "fraction_of_copy": round(persisted / copy_per_s, 3)}


async def _first_run(db_url: str, broadcast_id: uuid.UUID) -> uuid.UUID:
    conn = await asyncpg.connect(db_url)
    try:
        return await conn.fetchval("SELECT id FROM broadcast_runs WHERE broadcast_id = $1", broadcast_id)  # type: ignore[no-any-return]
    finally:
        await conn.close()
