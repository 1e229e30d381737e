"""Fan-out manager: local sockets first, Redis pub/sub only to reach other replicas."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import socketio


class ReplicaFanoutManager(socketio.AsyncRedisManager):  # type: ignore[misc]
    """python-socketio's Redis manager with bounded concurrent publishes.

    The stock manager opens a new pooled connection per concurrent publish and collapses
    at ~1,000 concurrent senders; a small cap keeps throughput and the connection count flat.
    """

    name = "replyhq-fanout"

    def __init__(self, url: str, channel: str, publish_concurrency: int = 4, **kwargs: Any) -> None:
        super().__init__(url, channel=channel, **kwargs)
        self._publish_slots = asyncio.Semaphore(publish_concurrency)
        # Told by the replica membership whether any other replica is alive; alone, an emit
        # has been delivered to every socket there is once the local handling is done.
        self.has_peers: Callable[[], bool] = lambda: True

    async def _publish(self, data: Any) -> Any:
        if not self.has_peers():
            return None
        async with self._publish_slots:
            return await super()._publish(data)
