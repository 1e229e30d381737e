"""`make bench`: start embedded Postgres + Redis and N replicas, drive closed-loop SDK load with
the Node socket.io-client driver, print one JSON line per run.

    python -m loadtests.bench --replicas 1 --clients 10,100,1000 --duration 15
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import asyncpg
import psutil

from loadtests.process_cpu import cpu_seconds
from server.dev.embedded import EmbeddedServices
from server.events.store import ROW_EVENTS
from server.platform.db.migrate import migrate
from server.platform.supervised_child import terminated_with_parent
from server.settings import Settings
from server.tenancy.workspaces import create_workspace
from tests.support import ServerProcess

ROOT = Path(__file__).resolve().parent.parent
DRIVER = ROOT / "loadtests" / "bench_driver.mjs"


# Process names of the services the bench starts, by the part of the run they count towards.
_PART_OF = {"postgres": "postgres", "redis-server": "redis", "valkey-server": "redis"}


def _children(procs: list[psutil.Process]) -> list[psutil.Process]:
    """The replicas' event worker processes (EVENT_WORKERS=process)."""
    found: list[psutil.Process] = []
    for p in procs:
        try:
            found += p.children()
        except psutil.NoSuchProcess:
            pass
    return found


def _cpu_by_part(procs: list[psutil.Process], driver: subprocess.Popen[bytes]) -> dict[str, float]:
    """CPU seconds so far of each part of the run: the replicas, their event worker processes,
    Postgres (every backend), Redis and the Node driver. On two cores they share, what one part saves
    the others can use: CPU per message says what a change costs more steadily than msgs/s does."""
    parts = {"server": cpu_seconds(procs), "event_workers": cpu_seconds(_children(procs)), "postgres": 0.0,
             "redis": 0.0, "driver": cpu_seconds([psutil.Process(driver.pid)])}
    for p in psutil.process_iter(["name"]):
        part = _PART_OF.get(p.info["name"] or "")
        if part is not None:
            parts[part] += cpu_seconds([p])
    return parts


# Postgres's backends by whom they serve (the pools' application_name, server/platform/db/pool.py).
_PG_ROLE = {"replyhq": "replicas", "replyhq-event-workers": "event_workers"}


async def _backend_roles(db_url: str) -> dict[int, str]:
    conn = await asyncpg.connect(db_url)
    try:
        return {r["pid"]: _PG_ROLE.get(r["application_name"], "other")
                for r in await conn.fetch("SELECT pid, application_name FROM pg_stat_activity")}
    finally:
        await conn.close()


def _postgres_by_role(db_url: str) -> dict[str, float]:
    """Postgres's CPU seconds so far: the replicas' backends (the message path: the group commit and
    its event rows), the event workers' (relay and consumer groups), the rest (background writers,
    autovacuum, the bench's own connections)."""
    roles = asyncio.run(_backend_roles(db_url))
    parts = {"replicas": 0.0, "event_workers": 0.0, "other": 0.0}
    for p in psutil.process_iter(["name"]):
        if p.info["name"] == "postgres":
            parts[roles.get(p.pid, "other")] += cpu_seconds([p])
    return parts


def _ms_per_msg(before: dict[str, float], after: dict[str, float], msgs: float, digits: int) -> dict[str, float]:
    """CPU milliseconds a message of each part, from CPU seconds before and after `msgs` messages."""
    return {k: round((after[k] - before[k]) * 1000 / msgs, digits) for k in before}


async def _workspace(db_url: str) -> tuple[str, uuid.UUID]:
    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=2)
    ws = await create_workspace(pool, app_name="bench", email=f"bench-{uuid.uuid4().hex[:8]}@bench.local",
                                password="bench-password")
    await pool.close()
    return ws.publishable_key, ws.app_id


async def _verify(db_url: str, conversations: list[str]) -> dict[str, int]:
    """What Postgres holds: messages per conversation must be 1..n with no gap or repeat."""
    conn = await asyncpg.connect(db_url)
    rows = await conn.fetch(
        """SELECT conversation_id, count(*) AS n, max(seq) AS top, count(DISTINCT client_id) AS ids
           FROM messages WHERE conversation_id = ANY($1::uuid[]) GROUP BY conversation_id""", conversations)
    await conn.close()
    gaps = sum(1 for r in rows if r["n"] != r["top"])
    dups = sum(r["n"] - r["ids"] for r in rows)
    return {"stored": sum(r["n"] for r in rows), "seq_gaps": gaps, "stored_duplicates": dups}


def _rss_mb(procs: list[psutil.Process]) -> float:
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def _driver(cfg: dict[str, object]) -> subprocess.Popen[bytes]:
    # PDEATHSIG: a bench killed mid-run takes its driver with it, as it does its replicas and
    # embedded servers (a driver left behind kept loading the machine under the next runs).
    return subprocess.Popen(["node", str(DRIVER), json.dumps({"runId": uuid.uuid4().hex[:8], **cfg})],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
                            preexec_fn=terminated_with_parent)


def _wait_phase(driver: subprocess.Popen[bytes], phase: str, timeout: float) -> None:
    """Block until the driver reports a phase on stderr (it writes one JSON line per phase)."""
    assert driver.stderr is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = driver.stderr.readline()
        if not line:
            return
        if f'"phase":"{phase}"' in line.decode():
            return


def _result(driver: subprocess.Popen[bytes], timeout: float) -> dict[str, object]:
    out, err = driver.communicate(timeout=timeout)
    lines = out.decode().strip().splitlines()
    if not lines:
        raise RuntimeError(f"driver failed: {err.decode()[-2000:]}")
    return json.loads(lines[-1])  # type: ignore[no-any-return]


def _scrape(urls: list[str]) -> list[str]:
    """The /metrics text of each replica that answers (a killed one does not)."""
    texts = []
    for url in urls:
        try:
            with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
                texts.append(resp.read().decode())
        except OSError:
            continue
    return texts


def _metric_total(urls: list[str], name: str) -> float | None:
    """One unlabelled metric summed over the replicas' /metrics; None if none reports it."""
    total: float | None = None
    for text in _scrape(urls):
        for line in text.splitlines():
            metric, _, value = line.partition(" ")
            if metric == name:
                total = (total or 0.0) + float(value)
    return total


def _commit_stats(urls: list[str]) -> dict[str, float | None]:
    """Average group-commit size and time across the replicas, from their /metrics."""
    totals = {"replyhq_commit_batch_size_sum": 0.0, "replyhq_commit_batch_size_count": 0.0,
              "replyhq_commit_duration_seconds_sum": 0.0, "replyhq_commit_duration_seconds_count": 0.0}
    for text in _scrape(urls):
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name in totals:
                totals[name] += float(value)
    commits = totals["replyhq_commit_batch_size_count"]
    return {"commit_batch_avg": round(totals["replyhq_commit_batch_size_sum"] / commits, 1) if commits else None,
            "commit_ms_avg": round(totals["replyhq_commit_duration_seconds_sum"]
                                   / totals["replyhq_commit_duration_seconds_count"] * 1000, 2) if commits else None}


def run_messages(urls: list[str], api_key: str, clients: int, warmup: float, duration: float,
                 procs: list[psutil.Process], db_url: str, kill: ServerProcess | None = None,
                 rate: float = 0) -> dict[str, object]:
    """SDK clients sending messages, each waiting for its ack; with `rate`, at most that many a second."""
    driver = _driver({"mode": "messages", "urls": urls, "apiKey": api_key, "clients": clients,
                      "warmupS": warmup, "durationS": duration, "rate": rate})
    _wait_phase(driver, "measuring", timeout=600)
    # Server CPU and memory over the measured window only.
    cpu0, parts0, pg0, t0 = cpu_seconds(procs), _cpu_by_part(procs, driver), _postgres_by_role(db_url), time.monotonic()
    rss_peak = 0.0
    killed = False
    parts1: dict[str, float] | None = None
    while driver.poll() is None and time.monotonic() - t0 < duration:
        rss_peak = max(rss_peak, _rss_mb(procs))
        if parts1 is None and time.monotonic() - t0 >= duration - 1:  # before the driver stops
            parts1, pg1, parts_s = _cpu_by_part(procs, driver), _postgres_by_role(db_url), time.monotonic() - t0
        if kill is not None and not killed and time.monotonic() - t0 > duration / 3:
            kill.kill()  # SIGKILL the replica owning half the partitions, mid-load
            killed = True
        time.sleep(0.25)
    elapsed = time.monotonic() - t0
    cpu_pct = (cpu_seconds(procs) - cpu0) / elapsed * 100
    result = _result(driver, duration + 300)
    # CPU milliseconds per acknowledged message, by part, over the window's first duration - 1 s.
    per_msg: dict[str, float] = {}
    pg_per_msg: dict[str, float] = {}
    sent = float(result.get("msgs_per_s") or 0)  # type: ignore[arg-type]
    if parts1 is not None and sent:
        per_msg = _ms_per_msg(parts0, parts1, sent * parts_s, 3)
        per_msg["total"] = round(sum(per_msg.values()), 3)
        pg_per_msg = _ms_per_msg(pg0, pg1, sent * parts_s, 4)
    stored = asyncio.run(_verify(db_url, result.pop("conversations")))  # type: ignore[arg-type]
    return {**result, **stored, **_commit_stats(urls), "server_cpu_pct": round(cpu_pct, 1),
            "server_rss_mb": round(rss_peak, 1), "cpu_ms_per_msg": per_msg, "postgres_cpu_ms_per_msg": pg_per_msg}


def run_storm(urls: list[str], api_key: str, sockets: int, procs: list[psutil.Process]) -> list[dict[str, object]]:
    """connect_storm: N sockets at once; idle_memory: what holding them costs per replica."""
    before = _rss_mb(procs)
    driver = _driver({"mode": "storm", "urls": urls, "apiKey": api_key, "clients": sockets, "holdS": 6})
    _wait_phase(driver, "connected", timeout=120)
    time.sleep(4)  # let per-socket state settle before reading memory
    held = _rss_mb(procs)
    result = _result(driver, 180)
    connected = int(result["connected"])  # type: ignore[call-overload]
    per_1000 = (held - before) / connected * 1000 if connected else None
    return [
        {"scenario": "connect_storm", "replicas": len(procs), "sockets": sockets,
         "connect_storm_s": result["connect_storm_s"], "connected": connected,
         "failed_connects": result["failed_connects"]},
        {"scenario": "idle_memory", "replicas": len(procs), "sockets": connected,
         "sockets_per_replica": round(connected / len(procs)), "rss_before_mb": round(before, 1),
         "rss_held_mb": round(held, 1), "rss_mb_per_1000_sockets": round(per_1000, 2) if per_1000 else None},
    ]


async def _seed_soak(db_url: str, app_id: uuid.UUID, conversations: int, per_user: int) -> list[dict[str, object]]:
    """Users and their empty conversations, straight into Postgres: creating them is not what the
    soak measures, and one SQL statement does 100,000 in seconds."""
    conn = await asyncpg.connect(db_url)
    run = uuid.uuid4().hex[:8]
    users = await conn.fetch(
        """INSERT INTO end_users (app_id, external_id) SELECT $1, $2 || g FROM generate_series(1, $3) g
           RETURNING id, external_id""", app_id, f"soak-{run}-", -(-conversations // per_user))
    external = {r["id"]: r["external_id"] for r in users}
    found = await conn.fetch(
        """INSERT INTO conversations (app_id, user_id)
           SELECT $1, u FROM unnest($2::uuid[]) u CROSS JOIN generate_series(1, $3) LIMIT $4
           RETURNING id, user_id""", app_id, list(external), per_user, conversations)
    await conn.close()
    plan: dict[str, list[str]] = {}
    for r in found:
        plan.setdefault(external[r["user_id"]], []).append(str(r["id"]))
    return [{"user_id": user, "conversations": convs} for user, convs in plan.items()]


def run_soak(urls: list[str], api_key: str, app_id: uuid.UUID, conversations: int, procs: list[psutil.Process],
             db_url: str, tmp: Path) -> dict[str, object]:
    """soak: one message to each of `conversations` conversations, each touched once; the servers'
    RSS and the actor's cached conversation states sampled at every tenth."""
    plan_file = tmp / "soak-plan.json"
    plan_file.write_text(json.dumps(asyncio.run(_seed_soak(db_url, app_id, conversations, per_user=100))))
    time.sleep(2)  # start-up work settles
    before = _rss_mb(procs)
    driver = _driver({"mode": "soak", "urls": urls, "apiKey": api_key, "clients": 100, "planFile": str(plan_file),
                      "progressEvery": max(conversations // 10, 1)})
    rss: list[float] = []
    cached: list[float | None] = []
    assert driver.stderr is not None
    for line in driver.stderr:  # until the driver exits
        if b'"phase":"progress"' in line:
            rss.append(round(_rss_mb(procs), 1))
            cached.append(_metric_total(urls, "replyhq_conversation_states_cached"))
    result = _result(driver, 60)
    time.sleep(3)  # the driver's sockets are closed: let the servers drop what they held for them
    bound = int(os.environ.get("CONVERSATION_STATE_CACHE_SIZE") or Settings().conversation_state_cache_size)
    return {**result, "state_cache_size": bound, "rss_before_mb": round(before, 1),
            "rss_after_mb": round(_rss_mb(procs), 1), "rss_mb_by_tenth": rss,
            "states_cached_by_tenth": [int(c) if c is not None else None for c in cached]}


def _histogram(urls: list[str], name: str, labels: str = "") -> dict[float, float]:
    """Cumulative bucket counts (le -> count) of one histogram, summed over the replicas."""
    buckets: dict[float, float] = {}
    for text in _scrape(urls):
        for line in text.splitlines():
            if line.startswith(name + "_bucket{") and labels in line:
                le = line.split('le="', 1)[1].split('"', 1)[0]
                bound = float("inf") if le == "+Inf" else float(le)
                buckets[bound] = buckets.get(bound, 0.0) + float(line.rsplit(" ", 1)[1])
    return buckets


def _quantile(before: dict[float, float], after: dict[float, float], q: float) -> float | None:
    """The upper bound of the bucket holding quantile q of what was observed between two scrapes."""
    deltas = sorted((le, after[le] - before.get(le, 0.0)) for le in after)
    total = deltas[-1][1] if deltas else 0.0
    if total <= 0:
        return None
    for le, count in deltas:
        if count >= q * total:
            return le
    return None


async def _events_progress(db_url: str, app_id: uuid.UUID) -> dict[str, int]:
    conn = await asyncpg.connect(db_url)
    try:
        row = await conn.fetchrow(
            # From the rows, not the one-an-event view: a poll must not expand a million events.
            f"""SELECT (SELECT seq + {ROW_EVENTS} - 1 FROM event_rows ORDER BY seq DESC LIMIT 1) AS head,
                      (SELECT seq FROM event_relay WHERE id = 1) AS relayed,
                      (SELECT seq FROM event_consumers WHERE name = 'event-counts') AS applied,
                      (SELECT min(seq) FROM event_consumers) AS applied_by_all,
                      (SELECT sum({ROW_EVENTS}) FROM event_rows WHERE app_id = $1) AS events,
                      (SELECT coalesce(sum(count), 0) FROM event_counts WHERE app_id = $1) AS counted""", app_id)
        return {k: int(v or 0) for k, v in dict(row).items()}
    finally:
        await conn.close()


async def _seed_events(db_url: str, app_id: uuid.UUID, n: int) -> None:
    """`n` message.created events, as the group commit records them at 100 clients: rows of 25,
    each event naming a stored message, whose data every read builds from the messages row (so the
    relay's rate includes that)."""
    conn = await asyncpg.connect(db_url)
    try:
        async with conn.transaction():
            user = await conn.fetchval("INSERT INTO end_users (app_id, external_id) VALUES ($1, $2) RETURNING id",
                                       app_id, f"backlog-{uuid.uuid4()}")
            conv = await conn.fetchval("INSERT INTO conversations (app_id, user_id, last_seq) VALUES ($1, $2, $3) "
                                       "RETURNING id", app_id, user, n)
            await conn.execute(
                """WITH m AS (
                       INSERT INTO messages (app_id, conversation_id, seq, client_id, sender_kind, sender_id, body)
                       SELECT $1, $2, g, 'backlog-' || g, 'user', $3, 'A backlog message, number ' || g
                       FROM generate_series(1, $4) g RETURNING id, seq)
                   INSERT INTO event_rows (type, app_id, conversation_ids, user_ids, message_ids, sender_kinds, notes)
                   SELECT 'message.created', $1, array_agg($2::uuid ORDER BY m.seq), array_agg($3::uuid ORDER BY m.seq),
                          array_agg(m.id ORDER BY m.seq), array_agg('user'::text ORDER BY m.seq),
                          array_agg(false ORDER BY m.seq)
                   FROM m GROUP BY (m.seq - 1) / 25 ORDER BY (m.seq - 1) / 25""", app_id, conv, user, n)
        # What seeding leaves to do (autovacuum's first visit to a million new rows, flushing about a
        # gigabyte of WAL) is done before the clock starts, not charged to the relay.
        await conn.execute("VACUUM (ANALYZE) messages, event_rows")
        with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


def run_events(urls: list[str], api_key: str, app_id: uuid.UUID, backlog: int, procs: list[psutil.Process],
               db_url: str, warmup: float, duration: float, rate: float) -> dict[str, object]:
    """events: a backlog of `backlog` committed events (seeded by SQL, not timed) relayed to the stream
    and applied by the event-counts group; then SDK traffic at `rate` messages a second (0: as fast as
    the clients go), for the commit-to-consumer delay of the webhooks group (and of event-counts)."""
    _wait_events(db_url, app_id, timeout=60)  # what start-up recorded is applied
    asyncio.run(_seed_events(db_url, app_id, backlog))
    t0 = time.monotonic()
    relayed_at = applied_at = all_applied_at = None
    # Until every group has applied the backlog: the delays below are those of live traffic, not of a
    # group still reading the backlog (its pace is `consume_all_groups_events_per_s`).
    while (all_applied_at is None or applied_at is None or relayed_at is None) and time.monotonic() - t0 < 600:
        p = asyncio.run(_events_progress(db_url, app_id))
        now = time.monotonic()
        if relayed_at is None and p["relayed"] >= p["head"]:
            relayed_at = now
        if applied_at is None and p["applied"] >= p["head"] and p["counted"] >= p["events"]:
            applied_at = now
        if all_applied_at is None and p["applied_by_all"] >= p["head"]:
            all_applied_at = now
        time.sleep(0.05)
    done = asyncio.run(_events_progress(db_url, app_id))
    time.sleep(1.5)  # the event worker process publishes its histograms every second
    # The delay of the low-latency group (webhooks: a batch per relay cycle) and of a batching one
    # (event-counts: a transaction a second, so its delay is about that by design).
    before = _histogram(urls, "replyhq_event_consumer_delay_seconds", 'group="webhooks"')
    counts_before = _histogram(urls, "replyhq_event_consumer_delay_seconds", 'group="event-counts"')
    relay_before = _histogram(urls, "replyhq_events_relay_delay_seconds")
    traffic = run_messages(urls, api_key, int(os.environ.get("EVENTS_CLIENTS", "100")), warmup, duration, procs,
                           db_url, rate=rate)
    _wait_events(db_url, app_id, timeout=60)
    time.sleep(1.5)
    after = _histogram(urls, "replyhq_event_consumer_delay_seconds", 'group="webhooks"')
    counts_after = _histogram(urls, "replyhq_event_consumer_delay_seconds", 'group="event-counts"')
    relay_after = _histogram(urls, "replyhq_events_relay_delay_seconds")
    final = asyncio.run(_events_progress(db_url, app_id))
    return {"backlog": backlog,
            "relay_events_per_s": round(backlog / (relayed_at - t0)) if relayed_at else None,
            "consume_events_per_s": round(backlog / (applied_at - t0)) if applied_at else None,
            "consume_all_groups_events_per_s": round(backlog / (all_applied_at - t0)) if all_applied_at else None,
            "lost": max(0, done["events"] - done["counted"]) + max(0, final["events"] - final["counted"]),
            "double_effects": max(0, done["counted"] - done["events"]) + max(0, final["counted"] - final["events"]),
            "traffic_clients": int(os.environ.get("EVENTS_CLIENTS", "100")),
            "traffic_rate": rate or None,
            "traffic_msgs_per_s": traffic["msgs_per_s"],
            "commit_to_stream_p50_ms_le": _ms(_quantile(relay_before, relay_after, 0.50)),
            "commit_to_stream_p99_ms_le": _ms(_quantile(relay_before, relay_after, 0.99)),
            "commit_to_consumer_p50_ms_le": _ms(_quantile(before, after, 0.50)),
            "commit_to_consumer_p99_ms_le": _ms(_quantile(before, after, 0.99)),
            "commit_to_counts_p99_ms_le": _ms(_quantile(counts_before, counts_after, 0.99)),
            "server_rss_mb": traffic["server_rss_mb"]}


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def _wait_events(db_url: str, app_id: uuid.UUID, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        p = asyncio.run(_events_progress(db_url, app_id))
        # Every group, not only event-counts: a group still reading the backlog during the traffic
        # would put the backlog's age in its delay histogram.
        if p["applied_by_all"] >= p["head"] and p["counted"] >= p["events"]:
            return
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--replicas", type=int, default=int(os.environ.get("REPLICAS", "1")))
    parser.add_argument("--clients", default=os.environ.get("CLIENTS", "10,100,1000"))
    parser.add_argument("--duration", type=float, default=float(os.environ.get("DURATION", "15")))
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--storm-sockets", type=int, default=int(os.environ.get("STORM_SOCKETS", "5000")))
    parser.add_argument("--soak-conversations", type=int, default=int(os.environ.get("SOAK_CONVERSATIONS", "100000")))
    parser.add_argument("--events-backlog", type=int, default=int(os.environ.get("EVENTS_BACKLOG", "1000000")))
    # The "commit to consumer at 5,000 msgs/s": paced, not flat out (0: as fast as the clients go).
    parser.add_argument("--events-rate", type=float, default=float(os.environ.get("EVENTS_RATE", "5000")))
    parser.add_argument("--webhooks-backlog", type=int, default=int(os.environ.get("WEBHOOKS_BACKLOG", "20000")))
    parser.add_argument("--broadcast-users", type=int, default=int(os.environ.get("BROADCAST_USERS", "1000000")))
    parser.add_argument("--broadcast-online", type=int, default=int(os.environ.get("BROADCAST_ONLINE", "5000")))
    parser.add_argument("--webhooks-rate", type=float, default=float(os.environ.get("WEBHOOKS_RATE", "500")))
    parser.add_argument("--scenarios", default=os.environ.get("SCENARIOS", "soak,messages,connect_storm,failover"),
                        help="comma list of soak (always first, on fresh replicas), messages, connect_storm "
                             "(also prints idle_memory), failover, events (not in the default list: 1M events), "
                             "webhooks (5 endpoints on local receivers), broadcast (not in the default list: 1M users)")
    args = parser.parse_args()
    if not shutil.which("node") or not (ROOT / "static/node_modules/socket.io-client").exists():
        sys.exit("bench needs node and `npm ci --prefix static` (make bench does both)")
    scenarios = {s.strip() for s in args.scenarios.split(",") if s.strip()}

    tmp = Path(tempfile.mkdtemp(prefix="replyhq-bench-"))
    os.chmod(tmp, 0o755)
    services = EmbeddedServices(tmp / "embedded")
    pg, rd = services.start(True, True)
    assert pg and rd
    servers: list[ServerProcess] = []
    env = {"DATABASE_URL": pg, "REDIS_URL": rd, "REPLYHQ_ENV": "test", "LOG_LEVEL": "WARNING",
           "JWT_SECRET": "bench-" + "x" * 40, "DATA_DIR": str(tmp / "data"), "DB_POOL_MAX": "20",
           # A closed loop of 10 clients sends ~450 messages a second per user, far past any person
           # and the per-user default (200/s); the limiter still counts every event.
           "SDK_USER_RATE_LIMIT": "1000000",
           "WEBHOOKS_ALLOW_PRIVATE": "true",  # the webhooks scenario's receivers are on 127.0.0.1
           "BROADCAST_MAX_RATE": "1000000",  # the broadcast scenario lifts the rate cap
           **{k: os.environ[k] for k in ("COMMIT_WORKERS", "ACTOR_PARTITIONS", "CONVERSATION_STATE_CACHE_SIZE",
                                         "SDK_USER_RATE_LIMIT", "SDK_KEY_RATE_LIMIT", "SDK_HANDSHAKE_RATE_LIMIT",
                                         "BROADCAST_BATCH_SIZE")
              if k in os.environ}}

    def start_replica() -> ServerProcess:
        n = len(servers) + 1
        srv = ServerProcess({**env, "REPLICA_ID": f"bench-{n}"}, log_path=tmp / f"server-{n}.log").start()
        servers.append(srv)
        return srv

    def emit(line: dict[str, object]) -> None:
        print(json.dumps({**line, "machine": machine}), flush=True)

    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine()}
    try:
        asyncio.run(migrate(pg))
        api_key, app_id = asyncio.run(_workspace(pg))
        for _ in range(args.replicas):
            start_replica()
        time.sleep(2.5)  # leases settle across replicas
        procs = [psutil.Process(s.proc.pid) for s in servers if s.proc]
        urls = [s.url for s in servers]
        if "soak" in scenarios:
            line = run_soak(urls, api_key, app_id, args.soak_conversations, procs, pg, tmp)
            emit({"scenario": "soak", "replicas": args.replicas, **line})
        if "messages" in scenarios:
            for clients in [int(c) for c in args.clients.split(",") if c]:
                line = run_messages(urls, api_key, clients, args.warmup, args.duration, procs, pg)
                emit({"scenario": "messages", "replicas": args.replicas, "clients": clients, **line})
        if "events" in scenarios:
            line = run_events(urls, api_key, app_id, args.events_backlog, procs, pg, args.warmup, args.duration,
                              args.events_rate)
            emit({"scenario": "events", "replicas": args.replicas, **line})
        if "webhooks" in scenarios:
            from loadtests.webhooks_bench import run_webhooks

            line = run_webhooks(urls[0], pg, backlog=args.webhooks_backlog, rate=args.webhooks_rate,
                                duration=args.duration, procs=procs[:1])
            emit({"scenario": "webhooks", "replicas": args.replicas, **line})
        if "broadcast" in scenarios:
            from loadtests.broadcast_bench import run_broadcast

            line = run_broadcast(urls, pg, users=args.broadcast_users, online=args.broadcast_online, procs=procs)
            emit({"scenario": "broadcast", "replicas": args.replicas, **line})
        if "connect_storm" in scenarios:
            for line in run_storm(urls, api_key, args.storm_sockets, procs):
                emit(line)
        if "failover" in scenarios:
            if len(servers) < 2:
                start_replica()
                time.sleep(2.5)
            victim, survivors = servers[-1], servers[:-1]
            alive = [psutil.Process(s.proc.pid) for s in survivors if s.proc]
            line = run_messages([s.url for s in survivors], api_key, 100, args.warmup, max(args.duration, 12),
                                alive, pg, kill=victim)
            emit({"scenario": "failover", "replicas": len(servers), "clients": 100,
                  "partitions_serving_again_s": round(float(line["ack_max_ms"] or 0) / 1000, 2),  # type: ignore[arg-type]
                  "lost": line["lost"], "lost_sample": line.get("lost_sample"), "duplicated": line["duplicated"],
                  "stored_duplicates": line["stored_duplicates"],
                  "seq_gaps": line["seq_gaps"], "errors": line["errors"], "retries": line["retries"],
                  "msgs_per_s": line["msgs_per_s"], "ack_p99_ms": line["ack_p99_ms"]})
    finally:
        for s in servers:
            s.stop()
        services.stop()
        if os.environ.get("BENCH_KEEP"):
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
