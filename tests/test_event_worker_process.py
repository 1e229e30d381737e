"""The event worker process beside each replica (EVENT_WORKERS=process, the default): it runs the
relay and every consumer group, the replica restarts it when it dies and it does not outlive the
replica; /metrics shows its families. EVENT_WORKERS=inline runs the same in the replica."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import asyncpg
import psutil

from loadtests.sdk_client import ReplyHQClient
from server.tenancy.workspaces import NewWorkspace
from tests.support import ServerProcess, http
from tests.test_domain_events import _counts_match_a_recount


def _workers_of(server: ServerProcess) -> list[psutil.Process]:
    assert server.proc is not None
    return [p for p in psutil.Process(server.proc.pid).children()
            if "event-workers" in " ".join(p.cmdline())]


async def _until(predicate: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = predicate()
        if asyncio.iscoroutine(got):
            got = await got
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def _send(server: ServerProcess, key: str, user: str, n: int, start: int = 0) -> None:
    client = ReplyHQClient(server.url, key, user_id=user)
    await client.connect()
    try:
        conv = (await client.create_conversation(subject=user))["conversation"]
        for i in range(start, start + n):
            await client.send(conv["id"], f"m{i}", client_id=f"{user}-{i}")
    finally:
        await client.close()


def _metrics(server: ServerProcess) -> str:
    status, body = http("GET", f"{server.url}/metrics")
    assert status == 200
    return str(body)


def _sample(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


async def _messages_counted(db: asyncpg.Pool, app_id: Any, n: int) -> bool:
    got = await db.fetchval("SELECT count FROM event_counts WHERE app_id = $1 AND type = 'message.created'", app_id)
    return got == n and await _counts_match_a_recount(db)


async def test_the_worker_process_consumes_is_restarted_when_killed_and_dies_with_its_replica(
        server: ServerProcess, workspace: NewWorkspace, db: asyncpg.Pool) -> None:
    first = await _until(lambda: _workers_of(server), "the event worker process")
    assert len(first) == 1
    await _send(server, workspace.publishable_key, "before", 10)
    await _until(lambda: _messages_counted(db, workspace.app_id, 10), "the counts of the first messages")

    # Its families reach the replica's /metrics, each once, next to the replica's own.
    text = await _until(lambda: t if _sample(t := _metrics(server), "replyhq_events_relayed_total") else None,
                        "the worker process's metrics")
    assert (_sample(text, "replyhq_events_relayed_total") or 0) >= 10
    assert 'replyhq_event_consumer_lag_events{group="event-counts"}' in text
    assert 'replyhq_event_consumer_lag_events{group="webhooks"}' in text
    assert text.count("# TYPE replyhq_events_relayed_total counter") == 1
    assert "replyhq_http_requests_total" in text

    # Killed, it is started again, and what was sent meanwhile is counted once.
    first[0].send_signal(signal.SIGKILL)
    await _send(server, workspace.publishable_key, "meanwhile", 10)
    second = await _until(lambda: [p for p in _workers_of(server) if p.pid != first[0].pid], "a new worker process")
    await _until(lambda: _messages_counted(db, workspace.app_id, 20), "the counts after the restart")
    await _until(lambda: _sample(_metrics(server), "replyhq_event_worker_restarts_total") == 1.0, "the restart count")

    # SIGKILL the replica: its worker process does not live on.
    server.stop(signal.SIGKILL)
    await _until(lambda: not psutil.pid_exists(second[0].pid) or second[0].status() == psutil.STATUS_ZOMBIE,
                 "the worker process to exit with its replica", timeout=10)


async def test_inline_workers_run_in_the_replica(start_server: Callable[..., ServerProcess],
                                                 workspace: NewWorkspace, db: asyncpg.Pool) -> None:
    server = start_server(EVENT_WORKERS="inline")
    await _send(server, workspace.publishable_key, "inline", 5)
    await _until(lambda: _messages_counted(db, workspace.app_id, 5), "the counts")
    assert _workers_of(server) == []
    text = _metrics(server)
    assert (_sample(text, "replyhq_events_relayed_total") or 0) >= 5
    assert text.count("# TYPE replyhq_event_consumer_lag_events gauge") == 1


def test_a_worker_process_whose_replica_is_gone_exits_at_once(server_env: dict[str, str]) -> None:
    """Started by hand with a parent that is not its own: it refuses to run as an orphan."""
    import subprocess
    import sys

    from tests.support import ROOT

    env = {**os.environ, **server_env, "REPLICA_ID": "orphan"}
    done = subprocess.run([sys.executable, "-m", "server", "event-workers", "--parent-pid", "1"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "parent 1 is gone" in done.stderr


def test_a_worker_process_stuck_on_a_silent_postgres_still_exits_after_sigterm(server_env: dict[str, str]) -> None:
    """Postgres accepts and never answers: starting hangs (asyncpg waits a minute). SIGTERM ends the
    process anyway, within GRACEFUL_SHUTDOWN_TIMEOUT and one more step, as a SIGKILL would (the
    checkpoints make that safe)."""
    import socket
    import subprocess
    import sys

    from tests.support import ROOT

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    port = silent.getsockname()[1]
    env = {**os.environ, **server_env, "REPLICA_ID": "stuck", "GRACEFUL_SHUTDOWN_TIMEOUT": "1",
           "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{port}/silent"}
    proc = subprocess.Popen([sys.executable, "-m", "server", "event-workers", "--parent-pid", str(os.getpid())],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        accepted, _ = silent.accept()  # it is connecting: the handshake waits for an answer
        time.sleep(0.5)
        assert proc.poll() is None
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        assert code == 3 and time.monotonic() - started < 15, proc.stderr.read().decode()[-3000:] if proc.stderr else ""
        accepted.close()
    finally:
        if proc.poll() is None:
            proc.kill()
        silent.close()
