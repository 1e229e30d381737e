"""Webhook dispatchers: on every replica, claim due deliveries, POST them signed, record each attempt.

Claiming: `FOR UPDATE SKIP LOCKED` over the due pending deliveries of enabled endpoints, at most
WEBHOOK_CONCURRENCY in flight per replica and WEBHOOK_ENDPOINT_CONCURRENCY per endpoint (one slow
endpoint fills its own slots, never the others'). A claim is a lease: it moves the delivery's
`next_attempt_at` to the end of the lease and tags it with a claim id; a replica that dies
mid-attempt leaves it due again when the lease ends, and a late writer whose lease another claim
replaced writes its attempt but not the delivery's state.

Sending: aiohttp, WEBHOOK_TIMEOUT (15 s) for the whole attempt, no redirects, no cookies, the SSRF
guard at connect time (server/platform/ssrf.py). 2xx delivers. Anything else is retried on the
schedule below (jittered ±20 %), honouring Retry-After on 429 and 503, ten attempts in all over
about three days; then the delivery fails. 410 fails it at once and disables the endpoint, as do
five days of unbroken failures. Results are written in batches (one transaction every ~20 ms):
the attempt rows, the deliveries' new state and the endpoints' health.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg

from server.events.record import record
from server.platform import ssrf
from server.platform.metrics import Metrics
from server.settings import Settings
from server.webhooks import signing, store

log = logging.getLogger("replyhq.workers.webhooks")
# Seconds before the next attempt after attempt 1, 2, ... 9 failed: ten attempts over ~2.7 days.
SCHEDULE_S = (5, 60, 600, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 18 * 3600, 24 * 3600)
MAX_TRIES = len(SCHEDULE_S) + 1
DISABLE_AFTER = "5 days"  # of unbroken failure
RESPONSE_SNIPPET = 1024
MAX_RETRY_AFTER_S = 24 * 3600

_CLAIM = """
WITH candidates AS (  -- from the due index, bounded, before anything is sorted or numbered
    SELECT d.id, d.endpoint_id, d.next_attempt_at FROM webhook_deliveries d
    WHERE d.status = 'pending' AND d.next_attempt_at <= now() AND d.endpoint_id <> ALL($3::uuid[])
    ORDER BY d.next_attempt_at LIMIT $1 * 4
), due AS (
    SELECT id, endpoint_id, row_number() OVER (PARTITION BY endpoint_id ORDER BY next_attempt_at) AS rn
    FROM candidates
), room AS (
    SELECT ep, n FROM unnest($4::uuid[], $5::int[]) AS r(ep, n)
), picked AS (
    SELECT d.id FROM webhook_deliveries d
    JOIN due ON due.id = d.id
    JOIN webhook_endpoints e ON e.id = d.endpoint_id AND e.enabled
    LEFT JOIN room ON room.ep = d.endpoint_id
    WHERE due.rn <= coalesce(room.n, $2) AND d.status = 'pending' AND d.next_attempt_at <= now()
    ORDER BY d.next_attempt_at LIMIT $1
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE webhook_deliveries d SET claim = $6, claimed_until = now() + $7 * interval '1 second',
       next_attempt_at = now() + $7 * interval '1 second'
FROM picked, webhook_endpoints e
WHERE d.id = picked.id AND e.id = d.endpoint_id
RETURNING d.id, d.app_id, d.endpoint_id, d.message_id, d.payload, d.attempts, d.tries, d.claim, d.event_at,
          d.event_id, e.url, e.secret,
          CASE WHEN e.previous_secret_expires_at > now() THEN e.previous_secret END AS previous_secret
"""

_WRITE = """
WITH r AS (
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::int[], $5::int[], $6::text[], $7::int[],
                         $8::text[], $9::text[], $10::float8[], $11::timestamptz[])
        AS r(delivery, claim, endpoint, attempt, status_code, error, latency, response, outcome, delay_s, at)
), ins AS (
    INSERT INTO webhook_attempts (delivery_id, endpoint_id, attempt, status_code, error, latency_ms, response,
                                  created_at)
    SELECT r.delivery, r.endpoint, r.attempt, r.status_code, r.error, r.latency, r.response, r.at
    FROM r WHERE EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.id = r.delivery)
)
UPDATE webhook_deliveries d SET status = r.outcome, attempts = r.attempt, tries = d.tries + 1,
       next_attempt_at = CASE WHEN r.outcome = 'pending' THEN now() + r.delay_s * interval '1 second'
                              ELSE d.next_attempt_at END,
       claim = NULL, claimed_until = NULL, last_status = r.status_code, updated_at = now()
FROM r WHERE d.id = r.delivery AND d.claim = r.claim
"""

# Each endpoint's run of failures: cleared by a success, started by the first failure; 410 or a
# run older than DISABLE_AFTER disables it. `disabled_now`: this batch disabled it.
_HEALTH = f"""
UPDATE webhook_endpoints e SET
    failing_since = CASE WHEN x.ok THEN NULL ELSE coalesce(e.failing_since, x.first_fail) END,
    enabled = e.enabled AND NOT (x.gone OR (NOT x.ok AND coalesce(e.failing_since, x.first_fail)
                                                         < now() - interval '{DISABLE_AFTER}')),
    disabled_reason = CASE WHEN NOT e.enabled THEN e.disabled_reason WHEN x.gone THEN 'gone'
                           WHEN NOT x.ok AND coalesce(e.failing_since, x.first_fail)
                               < now() - interval '{DISABLE_AFTER}' THEN 'failing'
                           ELSE e.disabled_reason END,
    updated_at = CASE WHEN x.ok = (e.failing_since IS NULL) THEN e.updated_at ELSE now() END
FROM unnest($1::uuid[], $2::bool[], $3::bool[], $4::timestamptz[]) AS x(id, ok, gone, first_fail),
     (SELECT id, enabled FROM webhook_endpoints WHERE id = ANY($1::uuid[])) AS before
WHERE e.id = x.id AND before.id = x.id
RETURNING e.id, e.app_id, e.disabled_reason, before.enabled AND NOT e.enabled AS disabled_now
"""


@dataclass
class Job:
    id: uuid.UUID
    app_id: uuid.UUID
    endpoint_id: uuid.UUID
    message_id: str
    payload: bytes
    attempts: int
    tries: int
    claim: uuid.UUID
    event_at: datetime
    is_event: bool
    url: str
    secrets: list[str]

    @classmethod
    def of(cls, r: asyncpg.Record, *, is_event: bool = True) -> Job:
        return cls(r["id"], r["app_id"], r["endpoint_id"], r["message_id"], r["payload"].encode(), r["attempts"],
                   r["tries"], r["claim"], r["event_at"], is_event, r["url"],
                   [s for s in (r["secret"], r["previous_secret"]) if s])


@dataclass
class Result:
    job: Job
    status_code: int | None
    error: str | None
    latency_ms: int
    response: str
    at: datetime
    retry_after: float | None = None
    outcome: str = ""  # delivered | pending | failed
    delay_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass
class _Inflight:
    total: int = 0
    per_endpoint: dict[uuid.UUID, int] = field(default_factory=dict)


class WebhookDispatcher:
    def __init__(self, pool: asyncpg.Pool, settings: Settings, *, metrics: Metrics | None = None, poll_s: float = 0.1,
                 flush_s: float = 0.02) -> None:
        self.pool = pool
        self.settings = settings
        self.metrics = metrics
        self.poll_s = poll_s
        self.flush_s = flush_s
        self.timeout = settings.webhook_timeout
        self.lease_s = 2 * settings.webhook_timeout + 5
        self.concurrency = settings.webhook_concurrency
        self.endpoint_cap = settings.webhook_endpoint_concurrency
        self.allow_private = settings.webhooks_allow_private
        self._inflight = _Inflight()
        self._tasks: set[asyncio.Task[None]] = set()
        self._results: list[Result] = []
        self._have_results = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(resolver=ssrf.GuardedResolver(allow_private=self.allow_private),
                                         limit=self.concurrency, ttl_dns_cache=30)
        self.session = aiohttp.ClientSession(connector=connector, trust_env=False,
                                             cookie_jar=aiohttp.DummyCookieJar(),
                                             timeout=aiohttp.ClientTimeout(total=self.timeout))
        self._loops = [asyncio.create_task(self._claim_loop(), name="webhook-dispatch"),
                       asyncio.create_task(self._flush_loop(), name="webhook-results")]

    async def stop(self) -> None:
        claim_loop, flush_loop = self._loops or (None, None)
        if claim_loop is not None:
            claim_loop.cancel()
            await asyncio.gather(claim_loop, return_exceptions=True)
        if self._tasks:  # attempts under way get a moment to finish; the rest are retried after their lease
            await asyncio.wait(set(self._tasks), timeout=3)
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if flush_loop is not None:
            flush_loop.cancel()
            await asyncio.gather(flush_loop, return_exceptions=True)
        if self._results:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._write(self._results), 3)
        if self.session is not None:
            await self.session.close()

    # -- claiming ---------------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        while True:
            try:
                room = self.concurrency - self._inflight.total
                jobs = await self.claim(room) if room > 0 else []
                for job in jobs:
                    self._begin(job)
                saturated = any(n >= self.endpoint_cap for n in self._inflight.per_endpoint.values())
                if room <= 0 or (len(jobs) < room and saturated):
                    # Work may be waiting for a slot: claim again as soon as attempts finish.
                    self._slot_free.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._slot_free.wait(), self.poll_s)
                    await asyncio.sleep(0.002)  # let a few more finish: one claim for them all
                elif len(jobs) < room:
                    await asyncio.sleep(self.poll_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Postgres away: leases keep what was claimed safe
                log.warning("webhook dispatcher: %r; retrying", exc)
                await asyncio.sleep(0.5)

    async def claim(self, limit: int) -> list[Job]:
        per = self._inflight.per_endpoint
        saturated = [ep for ep, n in per.items() if n >= self.endpoint_cap]
        partial = [(ep, self.endpoint_cap - n) for ep, n in per.items() if 0 < n < self.endpoint_cap]
        rows = await self.pool.fetch(_CLAIM, limit, self.endpoint_cap, saturated, [p[0] for p in partial],
                                     [p[1] for p in partial], uuid.uuid4(), self.lease_s)
        return [Job.of(r, is_event=r["event_id"] is not None) for r in rows]

    def _begin(self, job: Job) -> None:
        self._inflight.total += 1
        self._inflight.per_endpoint[job.endpoint_id] = self._inflight.per_endpoint.get(job.endpoint_id, 0) + 1
        task = asyncio.create_task(self._run(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, job: Job) -> None:
        try:
            result = await self.send(job)
            self._decide(result)
            self._results.append(result)
            self._have_results.set()
        finally:
            self._inflight.total -= 1
            left = self._inflight.per_endpoint[job.endpoint_id] - 1
            if left:
                self._inflight.per_endpoint[job.endpoint_id] = left
            else:
                del self._inflight.per_endpoint[job.endpoint_id]
            self._slot_free.set()

    # -- sending ----------------------------------------------------------------------------------

    async def send(self, job: Job) -> Result:
        assert self.session is not None
        started_wall = datetime.now(UTC)
        if job.attempts == 0 and job.is_event and self.metrics is not None:
            self.metrics.webhook_first_attempt_delay.observe(max(0.0, (started_wall - job.event_at).total_seconds()))
        timestamp = int(time.time())
        headers = signing.headers(job.secrets, job.message_id, timestamp, job.payload)
        started = time.perf_counter()
        status: int | None = None
        error: str | None = None
        text = ""
        retry_after: float | None = None
        try:
            ssrf.check_literal(job.url, allow_private=self.allow_private)
            async with self.session.post(job.url, data=job.payload, headers=headers, allow_redirects=False) as resp:
                status = resp.status
                text = (await resp.content.read(RESPONSE_SNIPPET)).decode("utf-8", "replace")
                if status in (429, 503):
                    retry_after = _retry_after(resp.headers.get("retry-after"))
        except ssrf.UrlRefused as exc:
            error = f"refused by the SSRF guard: {exc}"
        except TimeoutError:
            error = f"timed out after {self.timeout:g} s"
        except aiohttp.ClientConnectorError as exc:
            error = f"connection failed: {exc.os_error or exc}"
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        latency_ms = round((time.perf_counter() - started) * 1000)
        result = Result(job, status, _clean(error, 500) if error else None, latency_ms, _clean(text, RESPONSE_SNIPPET),
                        started_wall, retry_after)
        if self.metrics is not None:
            kind = "timeout" if error and error.startswith("timed out") else (
                "error" if status is None else f"{status // 100}xx")
            self.metrics.webhook_attempts.labels(kind).inc()
            self.metrics.webhook_attempt_duration.observe(latency_ms / 1000)
        return result

    def _decide(self, result: Result) -> None:
        """What follows the attempt: delivered, another try (when), or failed."""
        tries = result.job.tries + 1
        if result.ok:
            result.outcome = "delivered"
        elif result.status_code == 410 or tries >= MAX_TRIES or not result.job.is_event:
            result.outcome = "failed"  # a ping is tried once
        else:
            result.outcome = "pending"
            scheduled = SCHEDULE_S[tries - 1] * self.settings.webhook_retry_scale * random.uniform(0.8, 1.2)
            result.delay_s = result.retry_after if result.retry_after is not None else scheduled
        if self.metrics is not None:
            self.metrics.webhook_deliveries.labels(
                {"delivered": "delivered", "failed": "failed", "pending": "retrying"}[result.outcome]).inc()

    # -- writing results --------------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        while True:
            await self._have_results.wait()
            await asyncio.sleep(self.flush_s)  # let a batch gather
            batch, self._results = self._results, []
            self._have_results.clear()
            try:
                await self._write(batch)
            except asyncio.CancelledError:
                self._results[:0] = batch
                raise
            except Exception as exc:  # kept and written again; past its lease the attempt is repeated anyway
                log.warning("webhook results: %r; retrying", exc)
                self._results[:0] = batch
                self._have_results.set()
                await asyncio.sleep(0.5)

    async def _write(self, batch: list[Result]) -> None:
        if not batch:
            return
        health: dict[uuid.UUID, list[Any]] = {}  # endpoint -> [ok, gone, first failure of the run]
        for r in sorted(batch, key=lambda r: r.at):
            if not r.job.is_event:
                continue
            h = health.setdefault(r.job.endpoint_id, [False, False, None])
            if r.ok:
                h[0], h[2] = True, None
            else:
                h[0] = False
                h[1] = h[1] or r.status_code == 410
                h[2] = h[2] or r.at
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                _WRITE, [r.job.id for r in batch], [r.job.claim for r in batch], [r.job.endpoint_id for r in batch],
                [r.job.attempts + 1 for r in batch], [r.status_code for r in batch], [r.error for r in batch],
                [r.latency_ms for r in batch], [r.response for r in batch], [r.outcome for r in batch],
                [r.delay_s for r in batch], [r.at for r in batch])
            if health:
                ids = sorted(health)
                disabled = await conn.fetch(_HEALTH, ids, [health[i][0] for i in ids], [health[i][1] for i in ids],
                                            [health[i][2] for i in ids])
                for row in disabled:
                    if not row["disabled_now"]:
                        continue
                    endpoint = await store.get_endpoint(conn, row["app_id"], row["id"])
                    if endpoint is not None:
                        data = store.event_data(endpoint)
                        await record(conn, "webhook.endpoint_disabled", row["app_id"],
                                     {**data, "reason": row["disabled_reason"]})
                    log.warning("webhook endpoint %s disabled: %s", row["id"], row["disabled_reason"])

    # -- a ping, sent now -------------------------------------------------------------------------

    async def ping(self, app_id: uuid.UUID, endpoint_id: uuid.UUID, payload: bytes) -> Result | None:
        """Send `payload` as a webhook.ping to the endpoint now (tried once); None: no such endpoint."""
        row = await store.new_ping(self.pool, app_id, endpoint_id, payload.decode(), self.lease_s)
        if row is None:
            return None
        job = Job.of(row, is_event=False)
        result = await self.send(job)
        self._decide(result)
        await self._write([result])
        return result


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(min(int(value), MAX_RETRY_AFTER_S))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max(0.0, (when - datetime.now(UTC)).total_seconds()), MAX_RETRY_AFTER_S)


def _clean(text: str | None, limit: int) -> str:
    """Postgres text cannot hold NUL."""
    return (text or "")[:limit].replace("\x00", "\ufffd")
