"""The shared Redis writer: fan-out before replies in a pipeline, every producer told of its own
failures."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import redis.asyncio as aioredis

from server.platform.redis.writer import RedisWriter


class _ListSink:
    """Appends its items to a Redis list, so the order Redis ran them in can be read back."""

    def __init__(self, key: str, order: int) -> None:
        self.key = key
        self.order = order
        self.failures: list[tuple[list[Any], Exception]] = []

    def queue(self, pipe: Any, items: list[Any]) -> None:
        pipe.rpush(self.key, *items)

    def failed(self, items: list[Any], exc: Exception) -> None:
        self.failures.append((items, exc))


async def test_a_reply_queued_before_a_fanout_publish_still_runs_after_it(redis_url: str) -> None:
    redis = aioredis.from_url(redis_url)
    writer = RedisWriter(redis)
    fanout, host = _ListSink("log", order=0), _ListSink("log", order=1)
    try:
        # Another partition's reply is already queued when this batch's emit is made: both go in
        # one pipeline, and the emit must reach Redis first.
        writer.put(host, "reply-1")
        writer.put(fanout, "emit-2")
        last = writer.put(host, "reply-2")
        await asyncio.wait_for(last, 5)
        assert await redis.lrange("log", 0, -1) == [b"emit-2", b"reply-1", b"reply-2"]
        # drain() waits for what is queued; later puts go in a later pipeline, in order.
        writer.put(fanout, "emit-3")
        await asyncio.wait_for(writer.drain(), 5)
        assert (await redis.lrange("log", 0, -1))[-1] == b"emit-3"
    finally:
        await writer.close()
        await redis.aclose()


async def test_a_failed_pipeline_is_reported_to_every_producer(redis_url: str) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    redis = aioredis.from_url(f"redis://127.0.0.1:{port}/0", socket_connect_timeout=1)
    writer = RedisWriter(redis)
    fanout, host = _ListSink("log", order=0), _ListSink("log", order=1)
    try:
        writer.put(fanout, "emit")
        done = writer.put(host, "reply")
        await asyncio.wait_for(done, 10)  # resolves (never hangs) although nothing was written
        assert [items for items, _ in fanout.failures] == [["emit"]]
        assert [items for items, _ in host.failures] == [["reply"]]
    finally:
        await writer.close()
        await redis.aclose()


class _BrokenSink(_ListSink):
    """Adds a command, then fails on a bad item (what a producer's bug looks like)."""

    def queue(self, pipe: Any, items: list[Any]) -> None:
        pipe.rpush(self.key, "half-written")
        raise ValueError("bad item")


async def test_a_producer_failing_to_queue_fails_only_itself(redis_url: str) -> None:
    redis = aioredis.from_url(redis_url)
    writer = RedisWriter(redis)
    fanout, broken, host = _ListSink("log", order=0), _BrokenSink("log", order=1), _ListSink("log", order=2)
    try:
        writer.put(fanout, "emit-1")
        writer.put(broken, "bad")
        await asyncio.wait_for(writer.put(host, "reply-1"), 5)
        assert await redis.lrange("log", 0, -1) == [b"emit-1", b"reply-1"]  # none of its commands
        assert [(items, type(exc)) for items, exc in broken.failures] == [(["bad"], ValueError)]
        assert fanout.failures == host.failures == []
    finally:
        await writer.close()
        await redis.aclose()
