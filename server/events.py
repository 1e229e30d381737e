"""Domain events: every state change appends one event to a Redis Stream that webhooks,
workflows and analytics read with consumer groups of their own."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import msgspec

from server.redis_writer import RedisWriter

DOMAIN_STREAM = "events:domain"
_MAXLEN = 1_000_000
_CHUNK = 1000  # events per script call: Redis runs a call without interleaving other clients
_encode = msgspec.json.Encoder().encode
log = logging.getLogger("replyhq.events")

# A batch is one EVAL of three arguments an event, not XADDs: redis-py packs every argument and
# reads every reply in Python, and an XADD has 14 arguments and one reply. EVAL, not EVALSHA:
# it runs in the shared pipeline, where a Redis that restarted and forgot the script would fail
# the whole pipeline; Redis keeps the compiled script cached either way.
# The entries are what XADD writes: kind, app_id, ts, data.
_APPEND_LUA = """
for i = 3, #ARGV, 3 do
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*',
               'kind', ARGV[i], 'app_id', ARGV[i + 1], 'ts', ARGV[2], 'data', ARGV[i + 2])
end
return (#ARGV - 2) / 3
"""
_RETRY_S = 0.5


class DomainEventWriter:
    """Appends events off the hot path, in the replica's shared Redis pipeline: whatever was
    emitted since the last pipeline goes out with the next one. Events follow the commits they
    describe; a replica dying in between loses only the notification, never the committed state.
    A failed write is retried, in order, every half second; while Redis is away the oldest
    events are dropped beyond `max_queue`."""

    order = 2  # in a shared pipeline: after the fan-out and the replies, which callers wait on

    def __init__(self, writer: RedisWriter, max_queue: int = 100_000) -> None:
        self.max_queue = max_queue
        self.writer = writer  # the replica's; its owner closes it
        # (kind, app_id, data as JSON), encoded when emitted
        self._pending: list[tuple[str, str, bytes]] = []  # emitted, not yet in a pipeline
        self._in_flight: list[tuple[str, str, bytes]] = []  # in the pipeline being written
        self._marked = False  # a pipeline will pick `_pending` up
        self._taken: list[None] | None = None  # the items of the pipeline `_in_flight` went into
        self._retry: asyncio.TimerHandle | None = None

    def emit(self, kind: str, app_id: str, data: Any) -> None:
        try:
            encoded = _encode(data)
        except (TypeError, ValueError) as exc:  # it could never be written: not a reason to stall the rest
            log.error("dropping a %s event that cannot be encoded: %s", kind, exc)
            return
        if len(self._pending) >= self.max_queue:  # Redis is away for long: drop the oldest, say so
            del self._pending[: len(self._pending) // 10]
            log.warning("domain event queue full; oldest events dropped")
        self._pending.append((kind, app_id, encoded))
        if not self._marked and self._retry is None:
            self._mark()

    def _mark(self) -> None:
        self._marked = True
        self.writer.put(self, None)

    def queue(self, pipe: Any, items: list[None]) -> None:
        self._marked = False
        self._taken = items
        self._in_flight, self._pending = self._pending, []
        ts = str(int(time.time() * 1000))
        for start in range(0, len(self._in_flight), _CHUNK):
            args: list[str | bytes | int] = [_MAXLEN, ts]
            for kind, app_id, encoded in self._in_flight[start:start + _CHUNK]:
                args += (kind, app_id, encoded)
            pipe.eval(_APPEND_LUA, 1, DOMAIN_STREAM, *args)

    def failed(self, items: list[None], exc: Exception) -> None:
        if items is self._taken:  # the pipeline held the events: back ahead of newer ones, in order
            self._pending[:0] = self._in_flight
        else:  # it failed before taking them: they are all still pending
            self._marked = False
        self._in_flight, self._taken = [], None
        log.warning("%d domain events not appended yet (%r); retrying", len(self._pending), exc)
        if self._retry is None:
            self._retry = asyncio.get_running_loop().call_later(_RETRY_S, self._try_again)

    def _try_again(self) -> None:
        self._retry = None
        if self._pending and not self._marked:
            self._mark()

    async def close(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self._pending and not self._marked:
            self._mark()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.writer.drain(), 2)
