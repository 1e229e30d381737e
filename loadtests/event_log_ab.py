"""`make bench-events-ab`: the messages scenario with the event log on and off, the same code.

The issue's measure of what the event log costs: msgs/s with it on against the same tree with it
off, in interleaved runs on one machine. "Off" is this commit with `event_log_off.patch` applied
(no `message.created` in the group commit, `record()` a no-op, no relay, no consumer groups), so
the pair differs in the event log and nothing else. Both trees are git worktrees of HEAD in a
temporary directory; each round runs both (alternating which goes first, so a drifting machine
weighs on both alike; a short run in each tree first is not counted) and prints one JSON line per
run, then a summary line for each client count:

    python -m loadtests.event_log_ab --rounds 6 --clients 100 --duration 15
    CLIENTS=10,100,1000 make bench-events-ab     # the client counts `make bench` runs, in each round

Throughput follows the group commit's time: one commit in flight, what arrives meanwhile joins the
next (COMMIT_WORKERS), so each summary also gives each side's mean `commit_ms_avg`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PATCH = ROOT / "loadtests" / "event_log_off.patch"


def _git(*args: str, cwd: Path = ROOT) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL)


def _tree(tmp: Path, side: str) -> Path:
    # Made whole before a SIGTERM is acted on: git killed halfway leaves a locked tree, and its own
    # children writing into the folder after it was removed.
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        path = tmp / side
        _git("worktree", "add", "--detach", str(path), "HEAD")
        if side == "off":
            _git("apply", str(PATCH), cwd=path)
        (path / "static" / "node_modules").symlink_to(ROOT / "static" / "node_modules")
        return path
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _run(tree: Path, clients: int, duration: float) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-m", "loadtests.bench", "--replicas", "1", "--clients", str(clients),
         "--duration", str(duration), "--scenarios", "messages"],
        cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True, text=True, timeout=900)
    lines = [json.loads(x) for x in out.stdout.splitlines() if x.startswith("{")]
    if not lines:
        raise RuntimeError(f"bench failed in {tree}: {out.stderr[-2000:]}")
    return lines[-1]  # type: ignore[no-any-return]


def _load() -> float:
    return os.getloadavg()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=int(os.environ.get("ROUNDS", "6")))
    parser.add_argument("--clients", type=_counts, default=os.environ.get("CLIENTS", "100"),
                        help="client counts, comma-separated (default 100, or CLIENTS)")
    parser.add_argument("--duration", type=float, default=float(os.environ.get("DURATION", "15")))
    args = parser.parse_args()
    if not (ROOT / "static" / "node_modules" / "socket.io-client").exists():
        sys.exit("bench needs `npm ci --prefix static` (make bench-events-ab does it)")
    # SIGTERM (a CI timeout, `kill`) cleans up as Ctrl-C does: the worktrees are removed, and the run
    # in progress is killed, its replicas with it (they die with their parent).
    signal.signal(signal.SIGTERM, _terminated)
    tmp = Path(tempfile.mkdtemp(prefix="replyhq-event-ab-"))
    trees: dict[str, Path] = {}
    runs: dict[int, dict[str, list[dict[str, object]]]] = {n: {"off": [], "on": []} for n in args.clients}
    try:
        for side in ("off", "on"):
            trees[side] = _tree(tmp, side)
        # The first run after the trees were made was once 40 % slow, Postgres at twice its usual
        # CPU a message, though every run starts its own cluster (a new tree's files not yet
        # cached, its bytecode not yet compiled?). One short run in each first, not counted.
        for tree in trees.values():
            _run(tree, args.clients[0], 3)
        for i in range(1, args.rounds + 1):
            for clients in args.clients:
                for side in ("off", "on") if i % 2 else ("on", "off"):
                    load = _load()
                    line = _run(trees[side], clients, args.duration)
                    runs[clients][side].append(line)
                    print(json.dumps({"scenario": "event_log_ab", "round": i, "clients": clients, "side": side,
                                      "load": round(load, 2),
                                      **{k: line.get(k) for k in ("msgs_per_s", "ack_p99_ms", "lost", "duplicated",
                                                                  "commit_ms_avg", "server_cpu_pct",
                                                                  "cpu_ms_per_msg")}}),
                          flush=True)
        for clients, pair in runs.items():
            print(json.dumps({**_summary(pair), "clients": clients}), flush=True)
    finally:
        for path in trees.values():
            subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run(["git", "worktree", "prune"], cwd=ROOT)


def _counts(text: str) -> list[int]:
    counts = [int(x) for x in text.split(",") if x.strip()]
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"client counts must be positive integers: {text!r}")
    return counts


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _rate(line: dict[str, object]) -> float:
    return float(line["msgs_per_s"])  # type: ignore[arg-type]


def _summary(runs: dict[str, list[dict[str, object]]]) -> dict[str, object]:
    off = [_rate(x) for x in runs["off"]]
    on = [_rate(x) for x in runs["on"]]
    parts = {side: {k: round(statistics.fmean(float(x["cpu_ms_per_msg"].get(k, 0))  # type: ignore[attr-defined]
                                              for x in lines), 3)
                    for k in ("server", "event_workers", "postgres", "redis", "driver", "total")}
             for side, lines in runs.items() if lines and all(x.get("cpu_ms_per_msg") for x in lines)}
    return {"scenario": "event_log_ab", "summary": True, "rounds": len(on),
            "off_msgs_per_s": round(statistics.fmean(off)), "on_msgs_per_s": round(statistics.fmean(on)),
            "on_over_off": round(statistics.fmean(on) / statistics.fmean(off), 3),
            "median_pair": round(statistics.median(b / a for a, b in zip(off, on, strict=True)), 3),
            "commit_ms_avg": {side: round(statistics.fmean(float(x.get("commit_ms_avg") or 0)  # type: ignore[arg-type]
                                                           for x in lines), 2)
                              for side, lines in runs.items() if lines},
            "lost": sum(int(x.get("lost") or 0) for x in runs["on"] + runs["off"]),  # type: ignore[call-overload]
            "duplicated": sum(int(x.get("duplicated") or 0) for x in runs["on"] + runs["off"]),  # type: ignore[call-overload]
            "cpu_ms_per_msg": parts}


if __name__ == "__main__":
    main()
