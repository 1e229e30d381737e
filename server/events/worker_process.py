"""The event workers of one replica: the relay, a consumer group per consumer, retention.

They run in the replica's event loop (EVENT_WORKERS=inline) or, by default, in a worker process
beside it (`python -m server event-workers`, started, restarted and stopped by the replica): the
event loop that carries every socket and group commit then spends nothing on relaying and
consuming, and a crash or a stall of the workers leaves the replica serving (docs/benchmarks.md
has what it changes). The process publishes its metric families to Redis every second and the
replica's /metrics shows them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Protocol

import asyncpg
import msgspec
import redis.asyncio as aioredis
from prometheus_client import generate_latest

from server.platform.db.pool import create_pool
from server.platform.gc_tuning import freeze_long_lived
from server.platform.metrics import Metrics
from server.platform.redis import client as redis_client
from server.platform.supervised_child import SupervisedChild, exit_with_parent, parent_alive
from server.settings import ENV_VARS, Settings, settings_env
from workers.event_relay import EventRelay
from workers.event_retention import EventRetention
from workers.runtime.consumer_groups import Consumer, ConsumerGroup

log = logging.getLogger("replyhq.events.worker_process")
ROOT = Path(__file__).resolve().parents[2]
PUBLISH_EVERY_S = 1.0
METRICS_TTL_S = 10  # a process that stopped publishing stops showing after this long
STOP_STEP_S = 5.0  # the longest one step of stopping may take before the next goes on
CHILD_POOL_MAX = 8  # the relay and each group hold one connection; catch-up and retention take one


class Worker(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def metrics_key(replica_id: str) -> str:
    return f"events:worker-metrics:{replica_id}"


def build_workers(pool: asyncpg.Pool, redis: aioredis.Redis, settings: Settings, metrics: Metrics,
                  consumers: Sequence[Consumer]) -> list[Worker]:
    rid = settings.replica_id
    workers: list[Worker] = [EventRelay(pool, redis, replica_id=rid, metrics=metrics,
                                        interval_s=settings.event_relay_interval)]
    workers += [ConsumerGroup(pool, redis, consumer, replica_id=rid, metrics=metrics) for consumer in consumers]
    workers.append(EventRetention(pool, redis, replica_id=rid, days=settings.event_retention_days))
    return workers


def child(settings: Settings, on_restart: Callable[[], None]) -> SupervisedChild:
    """The replica's side: the worker process to start, with these settings exactly."""
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    env.update(settings_env(settings))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    argv = [sys.executable, "-m", "server", "event-workers", "--parent-pid", str(os.getpid())]
    return SupervisedChild("event worker process", argv, env, grace_s=settings.graceful_shutdown_timeout,
                           on_restart=on_restart)


def published_metrics(redis_of: Callable[[], aioredis.Redis], replica_id: str) -> Callable[[], Awaitable[bytes]]:
    """The replica's side: the families its worker process last published."""

    async def read() -> bytes:
        try:
            text = await redis_of().get(metrics_key(replica_id))
            return text.encode() if isinstance(text, str) else bytes(text or b"")
        except Exception as exc:  # /metrics still answers with the replica's own families
            log.debug("event worker metrics unavailable: %r", exc)
            return b""

    return read


async def run(settings: Settings, consumers: Sequence[Consumer], parent_pid: int) -> None:
    """The worker process: run the workers until SIGTERM or the replica is gone."""
    exit_with_parent(parent_pid)
    stop = asyncio.Event()
    # Whatever hangs once stopping began (starting up, a peer gone silent), the process ends:
    # leaving without cleaning up is what a SIGKILL does, which the checkpoints and leases make safe.
    watchdog = threading.Timer(settings.graceful_shutdown_timeout + STOP_STEP_S, os._exit, args=(3,))
    watchdog.daemon = True

    def stopping() -> None:
        stop.set()
        if not watchdog.is_alive():
            watchdog.start()

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stopping)
    # Ctrl-C reaches the whole process group: the replica stops this process itself, in its turn.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    settings = msgspec.structs.replace(settings, db_pool_min=1, db_pool_max=min(settings.db_pool_max, CHILD_POOL_MAX))
    metrics = Metrics()
    # Postgres planned the relay's read anew for each cycle's positions (its generic plan looked
    # dearer on paper): 0.4 ms of its 0.8 ms at 5,000 messages/s. Every statement here reads by
    # the primary key's order, which the generic plan does too (docs/benchmarks.md).
    pool = await create_pool(settings, settings.database_url or "", application_name="replyhq-event-workers",
                             generic_plans=True)
    redis = redis_client.connect(settings.redis_url or "")
    workers = build_workers(pool, redis, settings, metrics, consumers)
    started: list[Worker] = []
    try:
        for worker in workers:
            await worker.start()
            started.append(worker)
        freeze_long_lived()
        log.info("event workers running for replica %s", settings.replica_id)
        while not stop.is_set() and parent_alive(parent_pid):
            await _publish(redis, settings.replica_id, metrics)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), PUBLISH_EVERY_S)
    finally:
        stopping()
        for worker in reversed(started):
            await _step(f"stopping {type(worker).__name__}", worker.stop())
        await _publish(redis, settings.replica_id, metrics)
        await _step("closing Redis", redis.aclose())
        if not await _step("closing the Postgres pool", pool.close()):
            pool.terminate()
        log.info("event workers stopped")


async def _step(what: str, done: Awaitable[None]) -> bool:
    try:
        await asyncio.wait_for(done, STOP_STEP_S)
        return True
    except TimeoutError:
        log.error("event workers: %s took over %.0f s; going on", what, STOP_STEP_S)
    except Exception:
        log.exception("event workers: %s failed", what)
    return False


async def _publish(redis: aioredis.Redis, replica_id: str, metrics: Metrics) -> None:
    try:
        await asyncio.wait_for(redis.set(metrics_key(replica_id), generate_latest(metrics.event_registry),
                                         ex=METRICS_TTL_S), PUBLISH_EVERY_S)
    except Exception as exc:  # Redis restarting: the next second publishes again
        log.debug("publishing event worker metrics: %r", exc)


def inline_metrics(metrics: Metrics) -> Callable[[], Awaitable[bytes]]:
    async def read() -> bytes:
        return generate_latest(metrics.event_registry)

    return read
