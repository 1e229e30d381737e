"""The `webhooks` bench scenario: 5 endpoints (one in each of 5 workspaces) on local receivers that
verify every signature, fed by (1) a backlog of events seeded in Postgres, for the delivery rate,
and (2) SDK traffic at a steady rate, for the delay from an event's commit to its first attempt.

Prints deliveries_per_s (the backlog, signed, with the attempt log written), event_to_first_attempt
p50/p99 (at the receivers: arrival minus the event's timestamp), and lost (events whose delivery
never arrived verified)."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any

import asyncpg
from aiohttp import web

from loadtests.sdk_client import ReplyHQClient, WebhookVerificationError, verify_webhook
from server.dev.embedded import free_port
from server.tenancy.workspaces import create_workspace
from tests.support import http

ENDPOINTS = 5


class Receivers:
    """One aiohttp server on its own thread and loop; path /r<i> is endpoint i."""

    def __init__(self) -> None:
        self.port = free_port()
        self.secrets: dict[str, str] = {}
        self.first: dict[str, float] = {}  # webhook-id -> delay (s) from the event's timestamp to arrival
        self.requests = 0
        self.bad = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.port}/r{i}"

    def start(self) -> Receivers:
        self.thread.start()
        self.ready.wait(10)
        return self

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_post("/{path}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        self.loop.run_until_complete(runner.setup())
        self.loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port, backlog=1024).start())
        self.ready.set()
        self.loop.run_forever()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests += 1
        try:
            event = verify_webhook(self.secrets[request.path], request.headers, body)
        except (WebhookVerificationError, KeyError):
            self.bad += 1
            return web.Response(status=401)
        msg_id = request.headers["webhook-id"]
        if msg_id + request.path not in self.first:
            stamp = time.time() - _epoch(event["timestamp"])
            self.first[msg_id + request.path] = stamp
        return web.Response(text="ok")

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


async def _workspaces(db_url: str, n: int) -> list[Any]:
    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=2)
    try:
        return [await create_workspace(pool, app_name=f"hooks-{i}", email=f"hooks-{uuid.uuid4().hex[:8]}@bench.local",
                                       password="bench-password") for i in range(n)]
    finally:
        await pool.close()


async def _seed(db_url: str, app_ids: list[uuid.UUID], per_app: int) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute(
            """INSERT INTO domain_events (type, app_id, data)
               SELECT 'message.created', a, jsonb_build_object('message', jsonb_build_object('id', gen_random_uuid(),
                      'seq', g, 'body', 'backlog message ' || g, 'sender_kind', 'user'))
               FROM unnest($1::uuid[]) a, generate_series(1, $2) g""", app_ids, per_app)
    finally:
        await conn.close()


async def _count(db_url: str, sql: str, *args: Any) -> int:
    conn = await asyncpg.connect(db_url)
    try:
        return int(await conn.fetchval(sql, *args))
    finally:
        await conn.close()


async def _stages(db_url: str, app_ids: list[uuid.UUID]) -> dict[str, float]:
    """Where the backlog's time went: the event's commit, its delivery row (the `webhooks` consumer),
    the delivery's first attempt (the dispatcher), all in seconds from the first event."""
    conn = await asyncpg.connect(db_url)
    try:
        row = await conn.fetchrow(
            """SELECT extract(epoch FROM max(d.created_at) - min(d.event_at)) AS inserted_s,
                      extract(epoch FROM min(d.created_at) - min(d.event_at)) AS first_insert_s,
                      extract(epoch FROM max(a.created_at) - min(d.event_at)) AS attempted_s,
                      extract(epoch FROM max(d.updated_at) - min(d.event_at)) AS logged_s,
                      percentile_cont(0.5) WITHIN GROUP (ORDER BY a.latency_ms) AS post_p50_ms,
                      percentile_cont(0.99) WITHIN GROUP (ORDER BY a.latency_ms) AS post_p99_ms
               FROM webhook_deliveries d JOIN webhook_attempts a ON a.delivery_id = d.id
               WHERE d.app_id = ANY($1::uuid[])""", app_ids)
        return {k: round(float(v), 2) for k, v in row.items() if v is not None}
    finally:
        await conn.close()


async def _traffic(url: str, keys: list[str], rate: float, duration: float) -> int:
    """SDK messages at `rate` per second in all, spread over 4 clients per workspace."""
    clients = [ReplyHQClient(url, key, user_id=f"bench-{i}-{j}") for i, key in enumerate(keys) for j in range(4)]
    for c in clients:
        await c.connect()
    convs = [(await c.create_conversation(subject="bench"))["conversation"]["id"] for c in clients]
    each = rate / len(clients)
    sent = 0

    async def run(c: ReplyHQClient, conv: str) -> None:
        nonlocal sent
        start = time.monotonic()
        n = 0
        while time.monotonic() - start < duration:
            await c.send(conv, f"m{n}")
            n += 1
            sent += 1
            delay = start + n / each - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)

    try:
        await asyncio.gather(*(run(c, conv) for c, conv in zip(clients, convs, strict=True)))
    finally:
        for c in clients:
            await c.close()
    return sent + len(clients)  # each conversation started with no message: sent counts the messages


def run_webhooks(url: str, db_url: str, *, backlog: int, rate: float, duration: float) -> dict[str, object]:
    workspaces = asyncio.run(_workspaces(db_url, ENDPOINTS))
    receivers = Receivers().start()
    try:
        for i, ws in enumerate(workspaces):
            status, session = http("POST", url + "/admin/auth/login", {"email": ws.email, "password": "bench-password"})
            assert status == 200, session
            status, created = http("POST", url + "/admin/webhooks",
                                   {"url": receivers.url(i), "event_types": ["message.created"]},
                                   headers={"authorization": f"Bearer {session['access_token']}"})
            assert status == 201, created
            receivers.secrets[f"/r{i}"] = created["secret"]
        app_ids = [ws.app_id for ws in workspaces]
        # (1) the backlog: deliveries per second, signed, verified, the log written
        per_app = max(1, backlog // ENDPOINTS)
        t0 = time.monotonic()
        asyncio.run(_seed(db_url, app_ids, per_app))
        total = per_app * ENDPOINTS
        while len(receivers.first) < total and time.monotonic() - t0 < 600:
            time.sleep(0.05)
        received_at = time.monotonic()
        logged_sql = """SELECT count(*) FROM webhook_deliveries
                        WHERE status = 'delivered' AND app_id = ANY($1::uuid[])"""
        while asyncio.run(_count(db_url, logged_sql, app_ids)) < total and time.monotonic() - t0 < 600:
            time.sleep(0.1)
        logged_at = time.monotonic()
        backlog_lost = total - len(receivers.first)
        stages = asyncio.run(_stages(db_url, app_ids))
        # (2) SDK traffic at `rate` events per second
        receivers.first.clear()
        before = asyncio.run(_count(db_url, "SELECT coalesce(max(seq), 0) FROM domain_events"))
        asyncio.run(_traffic(url, [ws.publishable_key for ws in workspaces], rate, duration))
        events_sql = """SELECT count(*) FROM domain_events WHERE seq > $1 AND type = 'message.created'
                        AND app_id = ANY($2::uuid[])"""
        events = asyncio.run(_count(db_url, events_sql, before, app_ids))
        deadline = time.monotonic() + 60
        while len(receivers.first) < events and time.monotonic() < deadline:
            time.sleep(0.1)
        delays = sorted(receivers.first.values())

        def pct(q: float) -> float | None:
            return round(delays[min(len(delays) - 1, int(q * len(delays)))] * 1000, 1) if delays else None

        return {"endpoints": ENDPOINTS, "backlog_deliveries": total,
                "deliveries_per_s": round(total / (logged_at - t0)),
                "received_per_s": round(total / (received_at - t0)),
                "traffic_events": events, "traffic_events_per_s": round(events / duration),
                "event_to_first_attempt_p50_ms": pct(0.50), "event_to_first_attempt_p99_ms": pct(0.99),
                "event_to_first_attempt_max_ms": pct(1.0),
                "lost": backlog_lost + max(0, events - len(receivers.first)), "bad_signatures": receivers.bad,
                "requests": receivers.requests, "backlog_stages": stages}
    finally:
        receivers.stop()
