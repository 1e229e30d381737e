"""The `webhooks` bench scenario: 5 endpoints (one in each of 5 workspaces) on local receivers that
verify every signature, fed by (1) a backlog of events seeded in Postgres, for the delivery rate,
and (2) SDK traffic at a steady rate, for the delay from an event's commit to its first attempt.

Prints deliveries_per_s (the backlog, signed, with the attempt log written), event_to_first_attempt
p50/p99 (at the receivers: arrival minus the event's timestamp), and lost (events whose delivery
never arrived verified)."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import time
import urllib.request
import uuid
from typing import Any

import asyncpg
import psutil
from aiohttp import web

from loadtests.sdk_client import ReplyHQClient, WebhookVerificationError, verify_webhook
from server.dev.embedded import free_port
from server.tenancy.workspaces import create_workspace
from tests.support import http

ENDPOINTS = 5
TRAFFIC_PROCESSES = 4


class Receivers:
    """The receivers, one process per endpoint (uvloop, aiohttp; the receiving side must not be what
    limits the rate): endpoint i is http://127.0.0.1:<port i>/r<i>. Every request's signature is
    checked there with `verify_webhook`; the bench reads the tallies over GET /stats and the
    first-arrival delays over GET /delays."""

    def __init__(self, n: int) -> None:
        self.ports = [free_port() for _ in range(n)]
        self.procs: list[multiprocessing.process.BaseProcess] = []

    def url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.ports[i]}/r{i}"

    def start(self, secrets: dict[str, str]) -> Receivers:
        ctx = multiprocessing.get_context("spawn")
        self.procs = [ctx.Process(target=_receive, args=(port, secrets), daemon=True) for port in self.ports]
        for proc in self.procs:
            proc.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                self.stats()
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the receivers did not start")

    def _get(self, path: str) -> list[Any]:
        out = []
        for port in self.ports:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as resp:
                out.append(json.loads(resp.read()))
        return out

    def stats(self) -> dict[str, int]:
        """received: deliveries whose first arrival was verified since the last clear; bad, requests."""
        tallies = self._get("/stats")
        return {k: sum(t[k] for t in tallies) for k in ("received", "bad", "requests")}

    def delays(self) -> list[float]:
        return [d for part in self._get("/delays") for d in part]

    def clear(self) -> None:
        self._get("/clear")

    def cpu(self) -> float:
        return sum(sum(psutil.Process(p.pid).cpu_times()[:2]) for p in self.procs if p.pid)

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.join(5)


def _receive(port: int, secrets: dict[str, str]) -> None:
    import uvloop

    first: dict[str, float] = {}  # webhook-id + path -> delay (s) from the event's timestamp to arrival
    tally = {"requests": 0, "bad": 0}

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        tally["requests"] += 1
        try:
            event = verify_webhook(secrets[request.path], request.headers, body)
        except (WebhookVerificationError, KeyError):
            tally["bad"] += 1
            return web.Response(status=401)
        key = request.headers["webhook-id"] + request.path
        if key not in first:
            first[key] = time.time() - _epoch(event["timestamp"])
        return web.Response(text="ok")

    async def stats(_: web.Request) -> web.Response:
        return web.json_response({"received": len(first), **tally})

    async def delays(_: web.Request) -> web.Response:
        return web.json_response(list(first.values()))

    async def clear(_: web.Request) -> web.Response:
        first.clear()
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/stats", stats)
    app.router.add_get("/delays", delays)
    app.router.add_get("/clear", clear)
    app.router.add_post("/{path}", hook)
    web.run_app(app, host="127.0.0.1", port=port, backlog=1024, access_log=None, print=None,
                loop=uvloop.new_event_loop(), handle_signals=True)


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
            """INSERT INTO event_rows (type, app_id, data)
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


async def _latency_stages(db_url: str, app_ids: list[uuid.UUID], after_seq: int) -> dict[str, float]:
    """Where the traffic's delay went, p50/p99 in ms: event commit -> delivery row (relay and the
    `webhooks` consumer) -> first attempt (the dispatcher's claim)."""
    conn = await asyncpg.connect(db_url)
    try:
        row = await conn.fetchrow(
            """WITH x AS (
                   SELECT extract(epoch FROM d.created_at - d.event_at) * 1000 AS queued,
                          extract(epoch FROM a.created_at - d.created_at) * 1000 AS claimed
                   FROM webhook_deliveries d JOIN webhook_attempts a ON a.delivery_id = d.id AND a.attempt = 1
                   WHERE d.app_id = ANY($1::uuid[]) AND d.event_id > $2)
               SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY queued) AS to_delivery_row_p50_ms,
                      percentile_cont(0.99) WITHIN GROUP (ORDER BY queued) AS to_delivery_row_p99_ms,
                      percentile_cont(0.5) WITHIN GROUP (ORDER BY claimed) AS to_first_attempt_p50_ms,
                      percentile_cont(0.99) WITHIN GROUP (ORDER BY claimed) AS to_first_attempt_p99_ms
               FROM x""", app_ids, after_seq)
        return {k: round(float(v), 1) for k, v in row.items() if v is not None}
    finally:
        await conn.close()


async def _traffic(url: str, keys: list[str], rate: float, duration: float, tag: str) -> int:
    """SDK messages at `rate` per second in all, spread over 2 clients per workspace key given."""
    clients = [ReplyHQClient(url, key, user_id=f"bench-{tag}-{i}-{j}") for i, key in enumerate(keys) for j in range(2)]
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
    return sent


def _traffic_process(url: str, keys: list[str], rate: float, duration: float, tag: str) -> None:
    import uvloop

    uvloop.run(_traffic(url, keys, rate, duration, tag))


def traffic(url: str, keys: list[str], rate: float, duration: float, processes: int = TRAFFIC_PROCESSES) -> None:
    """`rate` messages a second from `processes` processes (the Python SDK client is CPU bound: one
    process alone does not reach 500 a second on a busy machine)."""
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_traffic_process, args=(url, keys, rate / processes, duration, f"p{p}"), daemon=True)
             for p in range(processes)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(duration + 120)


def _cpu(procs: list[Any]) -> float:
    return sum(sum(p.cpu_times()[:2]) + sum(c.cpu_times()[:2] for c in p.children(recursive=True)) for p in procs)


def run_webhooks(url: str, db_url: str, *, backlog: int, rate: float, duration: float,
                 procs: list[Any] | None = None) -> dict[str, object]:
    """`procs`: the replicas' processes (psutil), for the server's CPU per backlog delivery."""
    procs = procs or []
    workspaces = asyncio.run(_workspaces(db_url, ENDPOINTS))
    receivers = Receivers(ENDPOINTS)
    secrets: dict[str, str] = {}
    try:
        for i, ws in enumerate(workspaces):
            status, session = http("POST", url + "/admin/auth/login", {"email": ws.email, "password": "bench-password"})
            assert status == 200, session
            status, created = http("POST", url + "/admin/webhooks",
                                   {"url": receivers.url(i), "event_types": ["message.created"]},
                                   headers={"authorization": f"Bearer {session['access_token']}"})
            assert status == 201, created
            secrets[f"/r{i}"] = created["secret"]
        receivers.start(secrets)
        app_ids = [ws.app_id for ws in workspaces]
        # (1) the backlog: deliveries per second, signed, verified, the log written
        per_app = max(1, backlog // ENDPOINTS)
        t0, cpu0, rcpu0 = time.monotonic(), _cpu(procs), receivers.cpu()
        asyncio.run(_seed(db_url, app_ids, per_app))
        total = per_app * ENDPOINTS
        while receivers.stats()["received"] < total and time.monotonic() - t0 < 600:
            time.sleep(0.05)
        received_at = time.monotonic()
        logged_sql = """SELECT count(*) FROM webhook_deliveries
                        WHERE status = 'delivered' AND app_id = ANY($1::uuid[])"""
        while asyncio.run(_count(db_url, logged_sql, app_ids)) < total and time.monotonic() - t0 < 600:
            time.sleep(0.1)
        logged_at, cpu1, rcpu1 = time.monotonic(), _cpu(procs), receivers.cpu()
        backlog_lost = total - receivers.stats()["received"]
        stages = asyncio.run(_stages(db_url, app_ids))
        # (2) SDK traffic at `rate` events per second
        receivers.clear()
        before = asyncio.run(_count(db_url, "SELECT coalesce(max(seq), 0) FROM domain_events"))
        traffic(url, [ws.publishable_key for ws in workspaces], rate, duration)
        events_sql = """SELECT count(*) FROM domain_events WHERE seq > $1 AND type = 'message.created'
                        AND app_id = ANY($2::uuid[])"""
        events = asyncio.run(_count(db_url, events_sql, before, app_ids))
        deadline = time.monotonic() + 60
        while receivers.stats()["received"] < events and time.monotonic() < deadline:
            time.sleep(0.1)
        delays = sorted(receivers.delays())
        traffic_stages = asyncio.run(_latency_stages(db_url, app_ids, before))
        tally = receivers.stats()

        def pct(q: float) -> float | None:
            return round(delays[min(len(delays) - 1, int(q * len(delays)))] * 1000, 1) if delays else None

        return {"endpoints": ENDPOINTS, "backlog_deliveries": total,
                "deliveries_per_s": round(total / (logged_at - t0)),
                "received_per_s": round(total / (received_at - t0)),
                "server_cpu_us_per_delivery": round((cpu1 - cpu0) / total * 1e6) if procs else None,
                "receivers_cpu_us_per_delivery": round((rcpu1 - rcpu0) / total * 1e6),
                "traffic_events": events, "traffic_events_per_s": round(events / duration),
                "event_to_first_attempt_p50_ms": pct(0.50), "event_to_first_attempt_p99_ms": pct(0.99),
                "event_to_first_attempt_max_ms": pct(1.0),
                "lost": backlog_lost + max(0, events - tally["received"]), "bad_signatures": tally["bad"],
                "requests": tally["requests"], "backlog_stages": stages,
                "traffic_stages": traffic_stages}
    finally:
        receivers.stop()
