"""Operations endpoints: liveness, readiness, Prometheus metrics, the OpenAPI document."""

from __future__ import annotations

import asyncio
import os
import signal

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json, raw

from server.context import context_of
from server.http.openapi import Operation, build_document, document

bp = Blueprint("operations")


class Health(msgspec.Struct):
    status: str
    replica: str
    loop: str
    pid: int


class Readiness(msgspec.Struct):
    status: str
    checks: dict[str, str]


document(
    Operation("GET", "/healthz", "Process is alive and serving (503 while starting or stopping)", "operations",
              response=Health, errors=(503,), storage=False),
    Operation("GET", "/readyz", "Postgres and Redis answer (503 names the failing one)", "operations",
              response=Readiness, errors=(503,), storage=False),
    Operation("GET", "/metrics", "Prometheus metrics of this replica", "operations",
              content_type=CONTENT_TYPE_LATEST.split(";")[0], storage=False),
    Operation("GET", "/openapi.json", "This document", "operations", storage=False),
)


def _serving() -> bool:
    """Whether a SIGTERM now stops this process cleanly.

    The listening socket answers while Sanic still runs its start-up hooks, before it installs
    its signal handlers (a SIGTERM then kills the process), and again once shutdown has begun.
    """
    return callable(signal.getsignal(signal.SIGTERM))


@bp.get("/healthz")
async def healthz(request: Request) -> HTTPResponse:
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    serving = _serving()
    health = Health("ok" if serving else "starting or stopping", context_of(request).settings.replica_id, loop,
                    os.getpid())
    return json(msgspec.to_builtins(health), status=200 if serving else 503)


async def _check(coro: object, timeout: float = 1.5) -> str:
    try:
        await asyncio.wait_for(coro, timeout)  # type: ignore[arg-type]
        return "ok"
    except Exception as exc:  # readiness reports any failure, it never raises
        return f"error: {type(exc).__name__}: {exc}"[:200]


@bp.get("/readyz")
async def readyz(request: Request) -> HTTPResponse:
    ctx = context_of(request)
    pg, rd = await asyncio.gather(_check(ctx.pool.fetchval("SELECT 1")), _check(ctx.redis.ping()))
    checks = {"postgres": pg, "redis": rd}
    ok = all(v == "ok" for v in checks.values())
    return json({"status": "ready" if ok else "unavailable", "checks": checks}, status=200 if ok else 503)


@bp.get("/metrics")
async def metrics(request: Request) -> HTTPResponse:
    ctx = context_of(request)
    body = generate_latest(ctx.metrics.registry)
    for source in ctx.metrics_sources:  # families counted elsewhere (the event worker process)
        body += await source()
    return raw(body, content_type=CONTENT_TYPE_LATEST)


@bp.get("/openapi.json")
async def openapi(request: Request) -> HTTPResponse:
    return json(build_document())
