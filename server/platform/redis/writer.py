"""One Redis pipeline per tick for everything a replica writes on its hot path.

Fan-out publishes and the actor host's stream commands, replies and acknowledgements share it:
each tick costs one write and one read on one connection instead of one per producer, and a
reply queued after a fan-out publish is written after it (sinks go in `order`), so a caller on
another replica never has its answer before the other replicas have the fan-out.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import redis.asyncio as aioredis

from server.platform.coalesce import Coalescer
from server.platform.redis.redis_internals import drop_queued_commands


class Sink(Protocol):
    """A producer's share of a pipeline."""

    order: int  # lower goes first in a pipeline

    def queue(self, pipe: Any, items: list[Any]) -> None:
        """Add the commands for `items` (in the order they were put) to `pipe`."""
        ...

    def failed(self, items: list[Any], exc: Exception) -> None:
        """The pipeline holding `items` failed (its connection, or one of the sink's own
        commands): they may or may not have been written."""
        ...


class RedisWriter:
    def __init__(self, redis: aioredis.Redis, name: str = "redis-writer") -> None:
        self.redis = redis
        self._out: Coalescer[tuple[Sink, Any]] = Coalescer(self._write, name)

    def put(self, sink: Sink, item: Any) -> asyncio.Future[None]:
        """Queue `item` for `sink`; the future resolves once its pipeline has run (or failed)."""
        return self._out.put((sink, item))

    async def drain(self) -> None:
        """Return once everything queued so far has been written (or given up on)."""
        await self._out.drain()

    async def close(self) -> None:
        await self._out.close()

    async def _write(self, batch: list[tuple[Sink, Any]]) -> None:
        groups: dict[Sink, list[Any]] = {}
        for sink, item in batch:
            groups.setdefault(sink, []).append(item)
        ordered = sorted(groups.items(), key=lambda group: group[0].order)
        spans: list[tuple[Sink, list[Any], int, int]] = []
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for sink, items in ordered:
                    start = len(pipe)
                    try:
                        sink.queue(pipe, items)
                    except Exception as exc:  # a producer's bad item fails that producer only
                        drop_queued_commands(pipe, start)
                        sink.failed(items, exc)
                        continue
                    spans.append((sink, items, start, len(pipe)))
                # A command's error (say XACK after Redis lost its groups) fails only its producer.
                results = await pipe.execute(raise_on_error=False)
        except Exception as exc:  # the connection failed: every producer decides what that means
            for sink, items, _, _ in spans:  # (those whose queue() raised were told already)
                sink.failed(items, exc)
            return
        for sink, items, start, end in spans:
            error = next((r for r in results[start:end] if isinstance(r, Exception)), None)
            if error is not None:
                sink.failed(items, error)
