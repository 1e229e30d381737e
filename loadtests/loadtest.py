"""`make loadtest`: locust, headless, against TARGET or against a local cluster started for the run.

    python -m loadtests.loadtest --users 50 --spawn-rate 10 --duration 60s           # own cluster of 3
    python -m loadtests.loadtest --target https://replyhq.example.com --users 500

Without a target it starts `python -m server cluster` on a fresh embedded Postgres and Redis in a
temporary folder (removed afterwards), waits until the balancer answers, runs locust with
`loadtests/locustfile.py`, and stops the cluster. Results: `out/loadtest/replyhq_stats.csv`
(one row per request name, with a final `Aggregated` row), `..._stats_history.csv`,
`..._failures.csv`, `..._exceptions.csv`, the locust log and, for a local cluster, its log.
The exit status is locust's: non-zero when any request failed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from server.dev.embedded import free_port
from server.platform.supervised_child import terminated_with_parent

ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = ROOT / "loadtests" / "locustfile.py"


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the cluster exited with {proc.returncode}; see {log}")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    raise SystemExit(f"the cluster did not answer {url}/readyz within {timeout:.0f}s; see {log}")


def start_cluster(replicas: int, out: Path, data_dir: Path) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port), "DATA_DIR": str(data_dir),
           "BOOTSTRAP_DEMO": "false", "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING")}
    for var in ("DATABASE_URL", "REDIS_URL", "PUBLIC_URL", "REPLICA_ID", "SOCKETIO_SID_PREFIX"):
        env.pop(var, None)  # a fresh embedded pair, and every replica its own identity
    log = out / "cluster.log"
    with open(log, "wb") as logf:
        proc = subprocess.Popen([sys.executable, "-m", "server", "cluster", "--replicas", str(replicas)],
                                cwd=ROOT, env=env, stdout=logf, stderr=subprocess.STDOUT,
                                preexec_fn=terminated_with_parent)  # never outlives us
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, log)
    except BaseException:
        stop(proc)
        raise
    return url, proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_locust(target: str, users: int, spawn_rate: float, duration: str, out: Path) -> int:
    csv_prefix = out / "replyhq"
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--host", target, "--headless",
           "--users", str(users), "--spawn-rate", str(spawn_rate), "--run-time", duration,
           "--csv", str(csv_prefix), "--csv-full-history", "--stop-timeout", "10",
           "--logfile", str(out / "locust.log"), "--only-summary"]
    print(f"locust: {users} users (spawn {spawn_rate}/s) for {duration} against {target}", flush=True)
    code = subprocess.call(cmd, cwd=ROOT)
    print(f"results: {csv_prefix}_stats.csv (and _stats_history, _failures, _exceptions)", flush=True)
    return code


def main() -> None:
    parser = argparse.ArgumentParser(prog="loadtest")
    parser.add_argument("--target", default=os.environ.get("TARGET") or None,
                        help="base URL of a running deployment; without it a local cluster is started")
    parser.add_argument("--replicas", type=int, default=3, help="replicas of the local cluster")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--spawn-rate", type=float, default=10)
    parser.add_argument("--duration", default="60s", help="locust --run-time, e.g. 60s, 5m")
    parser.add_argument("--out", default=str(ROOT / "out" / "loadtest"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    if args.target:
        raise SystemExit(run_locust(args.target.rstrip("/"), args.users, args.spawn_rate, args.duration, out))

    data_dir = Path(tempfile.mkdtemp(prefix="replyhq-loadtest-"))
    data_dir.chmod(0o755)  # embedded Postgres runs as an unprivileged user when we are root
    try:
        print(f"starting a cluster of {args.replicas} replicas (log: {out / 'cluster.log'})", flush=True)
        url, cluster = start_cluster(args.replicas, out, data_dir)
        try:
            code = run_locust(url, args.users, args.spawn_rate, args.duration, out)
        finally:
            stop(cluster)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    raise SystemExit(code)


if __name__ == "__main__":
    main()
