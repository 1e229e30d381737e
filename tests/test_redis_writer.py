"""The shared Redis writer: fan-out before replies in a pipeline, every producer told of its own
failures, and domain events retried in order."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis

from server.events import DOMAIN_STREAM, DomainEventWriter
from server.redis_writer import RedisWriter


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


async def _appended(redis: aioredis.Redis, count: int) -> list[dict[bytes, bytes]]:
    """The domain stream's entries once it holds `count`, after one more retry period (so an
    event appended twice would show)."""
    deadline = asyncio.get_running_loop().time() + 5
    while await redis.xlen(DOMAIN_STREAM) < count:
        assert asyncio.get_running_loop().time() < deadline, "events were not appended"
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.6)
    return [fields for _, fields in await redis.xrange(DOMAIN_STREAM)]


@pytest.fixture
async def domain(redis_url: str) -> AsyncIterator[tuple[aioredis.Redis, RedisWriter, DomainEventWriter]]:
    """Redis, a shared writer and domain events on it, closed in order afterwards."""
    redis = aioredis.from_url(redis_url)
    writer = RedisWriter(redis)
    events = DomainEventWriter(writer)
    yield redis, writer, events
    await events.close()
    await writer.close()
    await redis.aclose()


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


async def test_domain_events_are_appended_in_order_and_retried_after_a_failed_write(domain) -> None:
    redis, writer, events = domain

    class Neighbour(_ListSink):
        """Another producer in the same pipelines, queued after the events: an event emitted
        meanwhile is emitted while the failing append is on its way."""

        def queue(self, pipe: Any, items: list[Any]) -> None:
            super().queue(pipe, items)
            events.emit("conversation.updated", "app-1", {"seq": 3})

    neighbour = Neighbour("log", order=3)
    await redis.set(DOMAIN_STREAM, "not a stream")  # every append fails (WRONGTYPE)
    events.emit("message.created", "app-1", {"seq": 1})
    events.emit("message.created", "app-1", {"seq": 2})
    writer.put(neighbour, "emit")
    await asyncio.wait_for(writer.drain(), 5)
    # The failure is the events' own: the other producer's command in that pipeline ran.
    assert neighbour.failures == [] and await redis.lrange("log", 0, -1) == [b"emit"]
    await redis.delete(DOMAIN_STREAM)  # Redis is fine again
    entries = await _appended(redis, 3)
    assert [(f[b"kind"], f[b"app_id"], msgspec.json.decode(f[b"data"])) for f in entries] == [
        (b"message.created", b"app-1", {"seq": 1}),
        (b"message.created", b"app-1", {"seq": 2}),
        (b"conversation.updated", b"app-1", {"seq": 3}),
    ]


async def test_domain_events_survive_a_pipeline_that_failed_before_taking_them(domain) -> None:
    redis, writer, events = domain

    class Broken(_ListSink):
        def queue(self, pipe: Any, items: list[Any]) -> None:
            raise RuntimeError("a bug in another producer")

    writer.put(Broken("log", order=0), "x")  # fails the pipeline before the events are queued
    events.emit("message.created", "app-1", {"seq": 1})
    await asyncio.wait_for(writer.drain(), 5)
    events.emit("message.created", "app-1", {"seq": 2})  # not stalled by the failure
    entries = await _appended(redis, 2)
    assert [msgspec.json.decode(f[b"data"]) for f in entries] == [{"seq": 1}, {"seq": 2}]


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


async def test_an_event_that_cannot_be_encoded_is_dropped_and_stalls_nothing(
        domain: tuple[aioredis.Redis, RedisWriter, DomainEventWriter]) -> None:
    redis, writer, events = domain
    fanout = _ListSink("log", order=0)  # shares the pipelines with the events
    events.emit("message.created", "app", {"n": 1})
    events.emit("message.created", "app", {"n": object()})  # never encodable
    events.emit("message.created", "app", {"n": 3})
    await asyncio.wait_for(writer.put(fanout, "emit-1"), 5)
    entries = await _appended(redis, 2)
    assert [msgspec.json.decode(e[b"data"]) for e in entries] == [{"n": 1}, {"n": 3}]
    assert await redis.lrange("log", 0, -1) == [b"emit-1"] and fanout.failures == []
