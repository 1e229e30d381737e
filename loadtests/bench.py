"""`make bench`: start embedded Postgres + Redis and N replicas, drive closed-loop SDK load with
the Node socket.io-client driver, print one JSON line per run.

    python -m loadtests.bench --replicas 1 --clients 10,100,1000 --duration 15
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import psutil

from server.db.migrate import migrate
from server.embedded import EmbeddedServices
from server.tenancy.workspaces import create_workspace
from tests.support import ServerProcess

ROOT = Path(__file__).resolve().parent.parent
DRIVER = ROOT / "loadtests" / "bench_driver.mjs"


def _cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


async def _workspace(db_url: str) -> str:
    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=2)
    ws = await create_workspace(pool, app_name="bench", email=f"bench-{uuid.uuid4().hex[:8]}@bench.local",
                                password="bench-password")
    await pool.close()
    return ws.publishable_key


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


def run_messages(urls: list[str], api_key: str, clients: int, warmup: float, duration: float,
                 procs: list[psutil.Process], db_url: str, replicas: int) -> dict[str, object]:
    cfg = {"urls": urls, "apiKey": api_key, "clients": clients, "warmupS": warmup, "durationS": duration,
           "runId": uuid.uuid4().hex[:8]}
    driver = subprocess.Popen(["node", str(DRIVER), json.dumps(cfg)], stdout=subprocess.PIPE, cwd=ROOT)
    # Sample server CPU and memory over the measured window only.
    time.sleep(warmup + min(2.0, clients / 200))
    cpu0, t0 = _cpu_seconds(procs), time.monotonic()
    rss_peak = 0.0
    while driver.poll() is None and time.monotonic() - t0 < duration:
        rss_peak = max(rss_peak, sum(p.memory_info().rss for p in procs if p.is_running()) / 2**20)
        time.sleep(0.5)
    cpu_pct = (_cpu_seconds(procs) - cpu0) / (time.monotonic() - t0) * 100
    out, _ = driver.communicate(timeout=duration + 300)
    result = json.loads(out.decode().strip().splitlines()[-1])
    stored = asyncio.run(_verify(db_url, result.pop("conversations")))
    return {"scenario": "messages", "replicas": replicas, "clients": clients, **result, **stored,
            "server_cpu_pct": round(cpu_pct, 1), "server_rss_mb": round(rss_peak, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--replicas", type=int, default=int(os.environ.get("REPLICAS", "1")))
    parser.add_argument("--clients", default=os.environ.get("CLIENTS", "10,100,1000"))
    parser.add_argument("--duration", type=float, default=float(os.environ.get("DURATION", "15")))
    parser.add_argument("--warmup", type=float, default=3.0)
    args = parser.parse_args()
    if not shutil.which("node") or not (ROOT / "static/node_modules/socket.io-client").exists():
        sys.exit("bench needs node and `npm ci --prefix static` (make bench does both)")

    tmp = Path(tempfile.mkdtemp(prefix="replyhq-bench-"))
    os.chmod(tmp, 0o755)
    services = EmbeddedServices(tmp / "embedded")
    pg, rd = services.start(True, True)
    assert pg and rd
    servers: list[ServerProcess] = []
    try:
        asyncio.run(migrate(pg))
        api_key = asyncio.run(_workspace(pg))
        env = {"DATABASE_URL": pg, "REDIS_URL": rd, "REPLYHQ_ENV": "test", "LOG_LEVEL": "WARNING",
               "JWT_SECRET": "bench-" + "x" * 40, "DATA_DIR": str(tmp / "data"), "DB_POOL_MAX": "20"}
        for i in range(args.replicas):
            srv = ServerProcess({**env, "REPLICA_ID": f"bench-{i + 1}"}, log_path=tmp / f"server-{i + 1}.log")
            servers.append(srv.start())
        time.sleep(2.5)  # leases settle across replicas
        procs = [psutil.Process(s.proc.pid) for s in servers if s.proc]
        machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine()}
        for clients in [int(c) for c in args.clients.split(",") if c]:
            line = run_messages([s.url for s in servers], api_key, clients, args.warmup, args.duration, procs,
                                pg, args.replicas)
            print(json.dumps({**line, "machine": machine}), flush=True)
    finally:
        for s in servers:
            s.stop()
        services.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
