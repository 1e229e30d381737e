"""A background loop that runs on every replica and works on one at a time: the holder of a
single-partition lease (actors/runtime/leases.py). When the holder dies its lease expires within
seconds and another replica's loop takes over. Subclasses say what one tick does."""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis

from actors.runtime.leases import PartitionLeases


class LeasedWorker:
    """`tick()` starts every `interval_s` while this replica holds the `kind` lease; it returns True
    when more work is waiting (then it runs again at once). An error is logged and retried later."""

    kind = "worker"
    log = logging.getLogger("replyhq.workers")

    def __init__(self, redis: aioredis.Redis, *, replica_id: str, interval_s: float,
                 error_delay_s: float = 0.5) -> None:
        self.interval_s = interval_s
        self.error_delay_s = error_delay_s
        self.lease = PartitionLeases(redis, kind=self.kind, partitions=1, replica_id=replica_id)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.lease.start()
        self._task = asyncio.create_task(self._run(), name=self.kind)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.rest()
        await self.lease.stop()

    @property
    def active(self) -> bool:
        """This replica holds the lease: it is the one doing the work."""
        return self.lease.owns(0)

    async def tick(self) -> bool:
        raise NotImplementedError

    def on_inactive(self) -> None:
        """Called on each interval while another replica holds the lease."""

    def on_error(self) -> None:
        """Called after a failed tick, before the retry delay."""

    async def rest(self) -> None:
        """Called when this replica stops working (another holds the lease, a tick failed, stop):
        give back what the ticks held on to (a connection)."""

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            more = False
            started = loop.time()
            try:
                if self.active:
                    more = await self.tick()
                else:
                    self.on_inactive()
                    await self.rest()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Postgres or Redis away: try again shortly
                self.log.warning("%s tick failed: %r; retrying", self.kind, exc)
                self.on_error()
                await self.rest()
                await asyncio.sleep(self.error_delay_s)
            if not more:  # ticks start every interval_s (a slow tick does not stretch the period)
                await asyncio.sleep(max(0.0, self.interval_s - (loop.time() - started)))
