"""The actor host of one replica: owns leased partitions, feeds each partition's commands to
its handler strictly in order and in batches, and routes replies to the waiting caller.

A command for a partition this replica owns goes straight into the local mailbox; any other
goes onto the partition's Redis Stream, is read by the owner through the consumer group, and
its reply comes back on this replica's reply channel. Entries are acknowledged only after the
handler has committed, so a replica dying mid-batch leaves them pending for the next owner,
which claims them (handlers are idempotent).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from actors.runtime.leases import PartitionLeases
from actors.runtime.partitions import partition_of, stream_key
from server.errors import ApiError, ServiceUnavailable
from server.platform.metrics import Metrics
from server.platform.redis.pubsub import subscriber
from server.platform.redis.writer import RedisWriter

log = logging.getLogger("replyhq.actors.host")
C = TypeVar("C")
GROUP = "owners"
MAX_BATCH = 512
STREAM_MAXLEN = 200_000


class Handler(Protocol[C]):
    """What an actor kind provides to the host."""

    kind: str

    def key(self, command: C) -> str: ...
    def encode(self, command: C) -> bytes: ...
    def decode(self, data: bytes) -> C: ...
    def encode_result(self, result: Any) -> bytes: ...
    def decode_result(self, data: bytes) -> Any: ...
    async def process(self, partition: int, commands: list[C]) -> list[Any]:
        """One result (or ApiError) per command, in order; called with a partition's commands in order."""
        ...
    async def after_process(self, partition: int, results: list[Any]) -> asyncio.Future[None] | None:
        """Side effects (fan-out), in partition order, before the replies are sent: what it queues
        on the host's writer is written before the replies. Returns what local callers must wait
        for (the fan-out's write), if anything."""
        ...


class PartitionAware(Protocol):
    """Optional for a handler: told when this replica starts or stops owning a partition, for work
    that outlives one batch (a broadcast's send loop). Called from the lease loop: must not block."""

    def partition_acquired(self, partition: int) -> None: ...
    def partition_lost(self, partition: int) -> None: ...


@dataclass
class Envelope(Generic[C]):
    command: C
    future: asyncio.Future[Any] | None = None  # local caller
    reply_to: str | None = None  # remote caller: replica id
    request_id: str | None = None
    entry_id: bytes | None = None  # stream entry, acknowledged after commit


@dataclass(slots=True)
class _Command:
    """For a partition owned elsewhere: its stream entry, and the caller to fail if unwritten."""

    partition: int
    fields: dict[str, bytes | str]
    future: asyncio.Future[Any]


@dataclass(slots=True)
class _Answer:
    replica: str  # the caller's replica: its reply channel
    data: bytes  # an encoded _Reply


@dataclass(slots=True)
class _Ack:
    partition: int
    entry_id: bytes


_Out = _Command | _Answer | _Ack


class _Reply(msgspec.Struct):
    q: str
    ok: bool
    data: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"null"))
    error: dict[str, Any] | None = None
    status: int = 0


def _time_out(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_result(ServiceUnavailable(
            "the conversation did not answer in time; retry with the same client_id", code="timeout"))


class ActorHost(Generic[C]):
    order = 1  # in a shared pipeline: after the fan-out its batches queued (see RedisWriter)

    def __init__(self, redis: aioredis.Redis, handler: Handler[C], *, replica_id: str, partitions: int,
                 writer: RedisWriter, metrics: Metrics, call_timeout: float = 10.0, lease_ttl_ms: int = 2000) -> None:
        self.redis = redis
        self.handler = handler
        self.kind = handler.kind
        self.replica_id = replica_id
        self.partitions = partitions
        self.metrics = metrics
        self.call_timeout = call_timeout
        self.leases = PartitionLeases(redis, kind=self.kind, partitions=partitions, replica_id=replica_id,
                                      ttl_ms=lease_ttl_ms, on_acquired=self._acquired, on_lost=self._lost)
        self._mailboxes: dict[int, asyncio.Queue[Envelope[C]]] = {}
        self._workers: dict[int, asyncio.Task[None]] = {}
        self._waiting: dict[str, asyncio.Future[Any]] = {}
        # Request ids only need to be unique on this replica's reply channel; the prefix keeps a
        # restarted replica (same REPLICA_ID) from matching replies meant for its predecessor.
        self._request_prefix = uuid.uuid4().hex[:12] + "-"
        self._request_ids = itertools.count(1)
        self._tasks: list[asyncio.Task[None]] = []
        self._reply_channel = f"actors:{self.kind}:reply:{replica_id}"
        self._reply_encoder = msgspec.json.Encoder()
        self._reply_decoder = msgspec.json.Decoder(list[_Reply])
        # Commands for partitions owned elsewhere, and the replies and acknowledgements of the
        # batches processed here, go out through the replica's writer (shared with the fan-out):
        # one Redis pipeline carries what every partition queued meanwhile, instead of a round
        # trip per partition batch (and per kind of traffic). Its owner closes it.
        self.writer = writer
        self._stopping = False
        self._rerouting: set[asyncio.Task[None]] = set()
        self._in_flight: set[asyncio.Task[None]] = set()  # batches finishing after their partition left
        # Labelled children looked up once, not per batch.
        self._commands_ok = metrics.actor_commands.labels(self.kind, "ok")
        self._commands_failed = metrics.actor_commands.labels(self.kind, "error")
        # Read when scraped: what waits in the owned partitions' mailboxes right now.
        metrics.actor_stream_lag.labels(self.kind).set_function(
            lambda: sum(box.qsize() for box in self._mailboxes.values()))

    # ---- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        subscribed = asyncio.Event()
        self._tasks.append(asyncio.create_task(self._replies(subscribed), name=f"{self.kind}-replies"))
        await asyncio.wait_for(subscribed.wait(), 10)
        await self.leases.start()
        self._tasks.append(asyncio.create_task(self._read_streams(), name=f"{self.kind}-reader"))

    async def stop(self) -> None:
        self._stopping = True
        await self.leases.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._in_flight:  # let batches already committing reply and fan out
            await asyncio.wait(set(self._in_flight), timeout=5)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.writer.drain(), 5)
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(ServiceUnavailable("replica shutting down; retry"))

    @property
    def owned(self) -> set[int]:
        return set(self._workers)

    # ---- calling an actor ---------------------------------------------------------------
    async def call(self, command: C) -> Any:
        partition = partition_of(self.handler.key(command), self.partitions)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        box = self._mailboxes.get(partition)
        request_id: str | None = None
        if box is not None and self.leases.owns(partition):
            box.put_nowait(Envelope(command, future=future))
        else:
            request_id = f"{self._request_prefix}{next(self._request_ids):x}"
            self._waiting[request_id] = future
            self.writer.put(self, _Command(partition, {"c": self.handler.encode(command), "r": self.replica_id,
                                               "q": request_id}, future))
        # A timer on the future itself: asyncio.wait_for would add a second future per call.
        timer = loop.call_later(self.call_timeout, _time_out, future)
        try:
            result = await future
        finally:
            timer.cancel()
            if request_id is not None:
                self._waiting.pop(request_id, None)
        if isinstance(result, ApiError):
            raise result
        return result

    # ---- partitions ------------------------------------------------------------------
    async def _ensure_group(self, partition: int) -> None:
        try:
            await self.redis.xgroup_create(stream_key(self.kind, partition), GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _acquired(self, partition: int) -> None:
        box: asyncio.Queue[Envelope[C]] = asyncio.Queue()
        self._mailboxes[partition] = box
        try:
            await self._ensure_group(partition)
            # Entries a dead owner read but never acknowledged come first.
            start: bytes | str = "0-0"
            while True:
                res = await self.redis.xautoclaim(stream_key(self.kind, partition), GROUP, self.replica_id,
                                                  min_idle_time=0, start_id=start, count=500)
                start, entries = res[0], res[1]
                self._enqueue_entries(partition, entries)
                if not entries or start in (b"0-0", "0-0"):
                    break
        except RedisError as exc:
            log.warning("claiming pending entries of partition %s failed: %s", partition, exc)
        self._workers[partition] = asyncio.create_task(self._work(partition, box), name=f"{self.kind}-p{partition}")
        self.metrics.actor_partitions_owned.labels(self.kind).set(len(self._workers))
        acquired = getattr(self.handler, "partition_acquired", None)
        if acquired is not None:
            acquired(partition)

    async def _lost(self, partition: int) -> None:
        lost = getattr(self.handler, "partition_lost", None)
        if lost is not None:
            lost(partition)
        worker = self._workers.pop(partition, None)
        box = self._mailboxes.pop(partition, None)
        if worker:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
        if box:  # local callers' commands go to the new owner through the stream
            while not box.empty():
                env = box.get_nowait()
                if env.future is not None and not env.future.done():
                    task = asyncio.create_task(self._reroute(env))
                    self._rerouting.add(task)
                    task.add_done_callback(self._rerouting.discard)
        self.metrics.actor_partitions_owned.labels(self.kind).set(len(self._workers))

    async def _reroute(self, env: Envelope[C]) -> None:
        assert env.future is not None
        try:
            env.future.set_result(await self.call(env.command))
        except ApiError as exc:
            env.future.set_result(exc)

    def _enqueue_entries(self, partition: int, entries: list[Any]) -> None:
        box = self._mailboxes.get(partition)
        if box is None:
            return
        for entry_id, fields in entries:
            if not fields:  # deleted/trimmed entry
                continue
            try:
                command = self.handler.decode(fields[b"c"])
            except (msgspec.DecodeError, KeyError):
                log.error("dropping undecodable command %s on partition %s", entry_id, partition)
                continue
            box.put_nowait(Envelope(command, reply_to=fields.get(b"r", b"").decode() or None,
                                    request_id=fields.get(b"q", b"").decode() or None, entry_id=entry_id))

    async def _read_streams(self) -> None:
        """One blocking XREADGROUP over every owned partition's stream."""
        while not self._stopping:
            owned = sorted(self._workers)
            if not owned:
                await asyncio.sleep(0.1)
                continue
            try:
                got: Any = await self.redis.xreadgroup(GROUP, self.replica_id,
                                                  {stream_key(self.kind, p): ">" for p in owned},
                                                  count=MAX_BATCH, block=250)
            except ResponseError as exc:
                if "NOGROUP" in str(exc):  # Redis lost its data (restart): recreate the groups
                    for p in owned:
                        with contextlib.suppress(RedisError):
                            await self._ensure_group(p)
                    continue
                log.warning("stream read failed: %s", exc)
                await asyncio.sleep(0.2)
                continue
            except RedisError as exc:
                log.warning("stream read failed: %s", exc)
                await asyncio.sleep(0.2)
                continue
            for key, entries in got or []:
                partition = int((key.decode() if isinstance(key, bytes) else key).rsplit(":", 1)[1])
                self._enqueue_entries(partition, entries)

    async def _work(self, partition: int, box: asyncio.Queue[Envelope[C]]) -> None:
        while True:
            batch = [await box.get()]
            while len(batch) < MAX_BATCH and not box.empty():
                batch.append(box.get_nowait())
            # Losing the partition cancels this worker, but never a batch half way: one that
            # committed must still reply and fan out, or its acked messages reach nobody live.
            task = asyncio.create_task(self._run_batch(partition, batch))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
            await asyncio.shield(task)

    async def _run_batch(self, partition: int, batch: list[Envelope[C]]) -> None:
        started = time.perf_counter()
        try:
            results = await self.handler.process(partition, [env.command for env in batch])
        except Exception:
            log.exception("actor batch failed on partition %s", partition)
            results = [ServiceUnavailable("could not process; retry", code="actor_error")] * len(batch)
        # Fan out before acknowledging: a replica dying in between leaves an unacknowledged
        # command, whose retry fans the original out again, never an acked message nobody saw.
        published: asyncio.Future[None] | None = None
        try:
            published = await self.handler.after_process(partition, results)
        except Exception:
            log.exception("after_process failed on partition %s", partition)
        await self._reply(partition, batch, results, published)
        failed = sum(1 for r in results if isinstance(r, ApiError))
        self._commands_ok.inc(len(results) - failed)
        if failed:
            self._commands_failed.inc(failed)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("partition %s batch of %s in %.1f ms", partition, len(batch),
                      (time.perf_counter() - started) * 1000)

    async def _reply(self, partition: int, batch: list[Envelope[C]], results: list[Any],
                     published: asyncio.Future[None] | None) -> None:
        """Remote replies and stream acks join the writer's next pipeline, after what
        `after_process` queued there; local callers are answered once `published` resolves."""
        local: list[tuple[asyncio.Future[Any], Any]] = []
        written: asyncio.Future[None] | None = None
        for env, result in zip(batch, results, strict=True):
            if env.future is not None:
                local.append((env.future, result))
            elif env.reply_to and env.request_id:
                if isinstance(result, ApiError):
                    reply = _Reply(env.request_id, False, error=result.body()["error"], status=result.status)
                else:
                    reply = _Reply(env.request_id, True, data=msgspec.Raw(self.handler.encode_result(result)))
                written = self.writer.put(self, _Answer(env.reply_to, self._reply_encoder.encode(reply)))
            if env.entry_id is not None:
                written = self.writer.put(self, _Ack(partition, env.entry_id))
        if local:
            if published is not None:
                # A local caller's ack must not overtake the batch's fan-out, or a replica dying
                # now leaves an acked message no other replica saw.
                await asyncio.shield(published)
            for future, result in local:
                if not future.done():
                    future.set_result(result)
        if written is not None:
            await asyncio.shield(written)

    def queue(self, pipe: Any, items: list[_Out]) -> None:
        """The host's share of a pipeline: commands onto their partitions' streams, replies (one
        publish per calling replica, a JSON list) and acks (one XACK per partition)."""
        replies: dict[str, list[bytes]] = {}
        acks: dict[int, list[bytes]] = {}
        for item in items:
            if isinstance(item, _Command):
                pipe.xadd(stream_key(self.kind, item.partition), item.fields,
                          maxlen=STREAM_MAXLEN, approximate=True)
            elif isinstance(item, _Answer):
                replies.setdefault(item.replica, []).append(item.data)
            else:
                acks.setdefault(item.partition, []).append(item.entry_id)
        for replica, encoded in replies.items():
            pipe.publish(f"actors:{self.kind}:reply:{replica}", b"[" + b",".join(encoded) + b"]")
        for partition, entry_ids in acks.items():
            pipe.xack(stream_key(self.kind, partition), GROUP, *entry_ids)

    def failed(self, items: list[_Out], exc: Exception) -> None:
        # Unacked entries are claimed again and handlers are idempotent; a command that may
        # not be in its stream fails its caller, who retries with the same id.
        commands = [item for item in items if isinstance(item, _Command)]
        log.warning("writing %d commands and %d answers to Redis failed: %r",
                    len(commands), len(items) - len(commands), exc)
        for cmd in commands:
            if not cmd.future.done():
                cmd.future.set_result(ServiceUnavailable("message bus unavailable; retry", code="bus_unavailable"))

    def _resolve(self, reply: _Reply) -> None:
        fut = self._waiting.pop(reply.q, None)
        if fut is None or fut.done():
            return
        if reply.ok:
            fut.set_result(self.handler.decode_result(bytes(reply.data)))
        else:
            err = reply.error or {}
            exc = ApiError(err.get("message", "error"), err.get("details"), code=err.get("code"))
            exc.status = reply.status or 400
            fut.set_result(exc)

    async def _replies(self, subscribed: asyncio.Event) -> None:
        while True:
            pubsub = subscriber(self.redis)
            try:
                await pubsub.subscribe(self._reply_channel)
                subscribed.set()
                async for msg in pubsub.listen():
                    if msg.get("type") != "message":
                        continue
                    try:
                        replies = self._reply_decoder.decode(msg["data"])
                    except msgspec.DecodeError:
                        log.error("dropping undecodable replies")
                        continue
                    for reply in replies:
                        self._resolve(reply)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                raise
            except (RedisError, OSError) as exc:
                log.warning("reply channel lost (%s); resubscribing", exc)
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                await asyncio.sleep(0.2)
