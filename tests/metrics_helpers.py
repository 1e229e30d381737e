"""Helpers for tests that read a replica's Prometheus `/metrics` and wait for conditions."""

from __future__ import annotations

import asyncio
import inspect
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of `url/metrics`: (sample name, labels) -> value."""
    with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def sample(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def metric(url: str, name: str, **labels: str) -> float | None:
    """One sample's value now; None when the replica does not (or no longer) answer(s) or has no such sample."""
    try:
        return sample(scrape(url), name, **labels)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


async def fanout_listeners(redis_url: str, channel: str) -> int:
    """Replicas subscribed to the Socket.IO fan-out channel. python-socketio subscribes a replica
    on its first socket connection, in the background: until then events published by the other
    replicas do not reach its sockets."""
    r = aioredis.from_url(redis_url)
    try:
        return int((await r.pubsub_numsub(channel))[0][1])
    finally:
        await r.aclose()


def partitions_owned(url: str) -> int | None:
    value = metric(url, "replyhq_actor_partitions_owned", kind="conversation")
    return None if value is None else int(value)


async def eventually(check: Callable[[], Any], what: str, timeout: float = 30, interval: float = 0.2) -> Any:
    """Poll `check` (a function, or a coroutine function) until it returns something truthy; fail
    naming `what` and the last value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: Any = None
    while loop.time() < deadline:
        last = check()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"not within {timeout}s: {what} (last: {last!r})")
