"""The per-broadcast actor: owns the runs of the broadcasts in its partitions and sends them.

Kind `broadcast`, key = broadcast id, on the actor runtime (one owner replica per partition, moved
when it dies). Commands (start, pause, resume, cancel) go through the partition's mailbox and are
quick: they change statuses in Postgres and start or stop the broadcast's *runner*, a task on the
owner that does the long work outside the mailbox:

1. snapshot: the audience copied into `broadcast_recipients` in keyset pages of users;
2. send: `ord` ranges under a token bucket at the broadcast's rate, each batch one transaction
   guarded by the run's checkpoint (server/broadcasts/runs.py); only after its commit is anything
   emitted: `broadcast:message` to the recipients online (sockets here first, other replicas' only
   for users connected there), `broadcast:progress` to the workspace's admins at most twice a second.

Whatever the owner was doing survives in Postgres: a new owner (or this one, on any partition it
gains) carries on every pending, snapshotting or sending run from its checkpoint, and a periodic
sweep does the same for a start command that never arrived (Redis lost it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

import asyncpg
import msgspec

from actors.runtime.partitions import partition_of
from server.broadcasts import runs
from server.broadcasts.audience import AudienceGone
from server.broadcasts.deliveries import MessageTemplate, iso
from server.broadcasts.ports import BroadcastFanout
from server.errors import ApiError, ServiceUnavailable
from server.platform.metrics import Metrics

log = logging.getLogger("replyhq.actors.broadcast")
SNAPSHOT_PAGE = 20_000  # users per snapshot transaction
PROGRESS_INTERVAL_S = 0.5  # broadcast:progress at most twice a second per run
ONLINE_TTL_S = 0.5  # how stale the list of connected users may be
SWEEP_INTERVAL_S = 2.0  # look for runs nobody carries on (a lost start command)
BATCHES_PER_S = 5  # a slow rate sends small batches often rather than a burst a second
_STORAGE_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)
_encoder = msgspec.json.Encoder()


class BroadcastCommand(msgspec.Struct, frozen=True):
    op: Literal["start", "pause", "resume", "cancel"]
    app_id: str
    broadcast_id: str
    run_id: str | None = None


_command_decoder = msgspec.json.Decoder(BroadcastCommand)


class TokenBucket:
    """`rate` tokens a second, at most `capacity` saved up; `take` waits for what it asks."""

    def __init__(self, rate: float, capacity: int) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = float(capacity)
        self.at = time.monotonic()

    def wait_for(self, n: int) -> float:
        """Seconds until `n` tokens are there (0: now); spends them when they are."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= n:
            self.tokens -= n
            return 0.0
        return (n - self.tokens) / self.rate


@dataclass
class _Runner:
    broadcast_id: UUID
    app_id: UUID
    partition: int
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


@dataclass
class _Copying:
    """A snapshot in progress beside the sends: `grew` when a page committed (or it ended)."""

    grew: asyncio.Event
    halt: asyncio.Event  # the sends stopped: stop copying too
    task: asyncio.Task[bool] = field(init=False)


class BroadcastHandler:
    kind = "broadcast"

    def __init__(self, pool: asyncpg.Pool, fanout: BroadcastFanout, metrics: Metrics, *, partitions: int,
                 batch_size: int, base_url: str, signing_key: str) -> None:
        self.pool = pool
        self.fanout = fanout
        self.metrics = metrics
        self.partitions = partitions
        self.batch_size = batch_size
        self.base_url = base_url
        self.signing_key = signing_key
        self._owned: set[int] = set()
        self._runners: dict[UUID, _Runner] = {}
        self._sweep_now = asyncio.Event()
        self._sweeper: asyncio.Task[None] | None = None
        self._online: dict[UUID, tuple[float, dict[str, bool]]] = {}
        self._progress_at: dict[UUID, float] = {}
        self._closing = False

    # ---- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep(), name="broadcast-sweep")

    async def close(self) -> None:
        """After the actor host stopped (its partitions are given back): let the runners finish the
        batch in flight, so what committed is also emitted."""
        self._closing = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        tasks = []
        for runner in self._runners.values():
            runner.stop.set()
            if runner.task is not None:
                tasks.append(runner.task)
        if tasks:
            await asyncio.wait(tasks, timeout=5)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # ---- partitions (from the actor host's lease loop: nothing here may block) ----------------------
    def partition_acquired(self, partition: int) -> None:
        self._owned.add(partition)
        self._sweep_now.set()

    def partition_lost(self, partition: int) -> None:
        self._owned.discard(partition)
        for runner in self._runners.values():
            if runner.partition == partition:
                runner.stop.set()

    # ---- codec --------------------------------------------------------------------------------
    def key(self, command: BroadcastCommand) -> str:
        return command.broadcast_id

    def encode(self, command: BroadcastCommand) -> bytes:
        return _encoder.encode(command)

    def decode(self, data: bytes) -> BroadcastCommand:
        return _command_decoder.decode(data)

    def encode_result(self, result: Any) -> bytes:
        return _encoder.encode(result)

    def decode_result(self, data: bytes) -> Any:
        return msgspec.json.decode(data)

    # ---- commands -----------------------------------------------------------------------------
    async def process(self, partition: int, commands: list[BroadcastCommand]) -> list[Any]:
        results: list[Any] = []
        for command in commands:
            try:
                results.append(await self._apply(partition, command))
            except ApiError as exc:
                results.append(exc)
            except (*_STORAGE_ERRORS, ValueError) as exc:
                log.warning("broadcast command %s failed: %s", command.op, exc)
                results.append(ServiceUnavailable("storage unavailable; retry", code="storage"))
        return results

    async def after_process(self, partition: int, results: list[Any]) -> asyncio.Future[None] | None:
        return None

    async def _apply(self, partition: int, command: BroadcastCommand) -> str | None:
        app_id, broadcast_id = UUID(command.app_id), UUID(command.broadcast_id)
        if command.op == "start":
            await self._run(broadcast_id, app_id, partition)
            return None
        if command.op == "pause":
            status, paused = await runs.pause(self.pool, app_id, broadcast_id)
            await self._halt(broadcast_id)
            await self._announce(app_id, paused)
        elif command.op == "cancel":
            status, cancelled = await runs.cancel(self.pool, app_id, broadcast_id)
            await self._halt(broadcast_id)
            await self._announce(app_id, cancelled)
        else:
            status, resumed = await runs.resume(self.pool, app_id, broadcast_id)
            if resumed:
                await self._halt(broadcast_id)  # a runner still finishing its last batch
                await self._run(broadcast_id, app_id, partition)
        return status

    async def _announce(self, app_id: UUID, run_ids: list[UUID]) -> None:
        for run_id in run_ids:
            with contextlib.suppress(*_STORAGE_ERRORS):
                data = await runs.progress(self.pool, run_id)
                if data is not None:
                    await self.fanout.broadcast_progress(str(app_id), data)

    async def _halt(self, broadcast_id: UUID) -> None:
        """Stop the broadcast's runner after its batch in flight, and wait for it (briefly)."""
        runner = self._runners.get(broadcast_id)
        if runner is None:
            return
        runner.stop.set()
        if runner.task is not None and not runner.task.done():
            await asyncio.wait([runner.task], timeout=5)

    async def _run(self, broadcast_id: UUID, app_id: UUID, partition: int) -> None:
        """Make sure the broadcast has a runner here (if its partition is still ours)."""
        if self._closing or partition not in self._owned:
            return
        runner = self._runners.get(broadcast_id)
        if runner is not None and runner.task is not None and not runner.task.done():
            if not runner.stop.is_set():
                return
            await asyncio.wait([runner.task], timeout=5)
        runner = _Runner(broadcast_id, app_id, partition)
        self._runners[broadcast_id] = runner
        runner.task = asyncio.create_task(self._drive(runner), name=f"broadcast-{broadcast_id}")

    async def _sweep(self) -> None:
        """Start a runner for every active run of an owned partition that has none."""
        # Not `while True`: on 3.11 a cancel that lands as `_sweep_now` is set is swallowed by
        # `wait_for`, and `close` would wait for this loop forever.
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._sweep_now.wait(), SWEEP_INTERVAL_S)
            self._sweep_now.clear()
            if not self._owned:
                continue
            try:
                active = await runs.active_broadcasts(self.pool)
            except _STORAGE_ERRORS as exc:
                log.warning("cannot look for broadcast runs to carry on: %s", exc)
                continue
            for broadcast_id, app_id in active:
                partition = partition_of(str(broadcast_id), self.partitions)
                runner = self._runners.get(broadcast_id)
                if partition in self._owned and (runner is None or runner.task is None or runner.task.done()):
                    await self._run(broadcast_id, app_id, partition)

    # ---- the runner ---------------------------------------------------------------------------
    async def _drive(self, runner: _Runner) -> None:
        """Carry the broadcast's runs on, one after another, until none is left or told to stop."""
        delay = 0.2
        run: runs.Run | None = None
        try:
            while not runner.stop.is_set():
                try:
                    run = await runs.next_run(self.pool, runner.broadcast_id)
                    if run is None:
                        return
                    await self._carry_on(runner, run)
                    delay = 0.2
                except AudienceGone as exc:
                    if run is not None:
                        with contextlib.suppress(*_STORAGE_ERRORS):
                            await runs.fail(self.pool, run, str(exc))
                            await self._progress(run, force=True)
                except _STORAGE_ERRORS as exc:
                    log.warning("broadcast %s: %s; retrying in %.1fs", runner.broadcast_id, exc, delay)
                    await _sleep(runner.stop, delay)
                    delay = min(delay * 2, 5.0)
                except Exception:
                    log.exception("broadcast %s runner failed; retrying", runner.broadcast_id)
                    await _sleep(runner.stop, delay)
                    delay = min(delay * 2, 5.0)
        finally:
            if self._runners.get(runner.broadcast_id) is runner:
                del self._runners[runner.broadcast_id]

    async def _carry_on(self, runner: _Runner, run: runs.Run) -> None:
        """One step of the run (begin; or the snapshot with the sends alongside; or the sends), or
        return for the caller to re-read it."""
        broadcast = await runs.load_broadcast(self.pool, run.broadcast_id)
        if broadcast is None:
            return
        if run.status == "pending":
            await runs.begin(self.pool, run)
            return
        if run.status != "snapshotting":
            await self._send(runner, run, broadcast, None)
            return
        # What is copied is sent while the rest is copied: the two take about as long each.
        copying = _Copying(asyncio.Event(), asyncio.Event())
        copying.task = asyncio.create_task(self._snapshot(runner, run, broadcast, copying))
        try:
            await self._send(runner, run, broadcast, copying)
        finally:
            copying.halt.set()
            await asyncio.wait([copying.task])
        if not copying.task.cancelled() and copying.task.exception() is not None:
            raise copying.task.exception()  # type: ignore[misc]

    async def _snapshot(self, runner: _Runner, run: runs.Run, broadcast: runs.Broadcast, copying: _Copying) -> bool:
        """Copy the audience page by page; True once the snapshot is complete."""
        try:
            while not runner.stop.is_set() and not copying.halt.is_set():
                moved = await runs.snapshot_page(self.pool, run, broadcast, SNAPSHOT_PAGE)
                if moved is None:
                    return False
                run, copied = moved
                copying.grew.set()
                if copied < SNAPSHOT_PAGE:
                    done = await runs.finish_snapshot(self.pool, run) is not None
                    await self._progress(run, force=True)
                    return done
            return False
        finally:
            copying.grew.set()

    async def _send(self, runner: _Runner, run: runs.Run, broadcast: runs.Broadcast, copying: _Copying | None) -> None:
        """Send the run's recipients in batches under the token bucket; while `copying`, only those
        copied so far, waiting for more. Completes the run when all are sent."""
        total = await runs.targeted(self.pool, run.id) if copying is None else 0
        rate = max(1, broadcast.rate_per_s)
        batch = max(1, min(self.batch_size, math.ceil(rate / BATCHES_PER_S)))
        bucket = TokenBucket(rate, batch)
        template = MessageTemplate(str(run.broadcast_id), broadcast.message, broadcast.sender_name, self.base_url,
                                   self.signing_key)
        through = run.sent_through
        while True:
            if copying is not None:
                copying.grew.clear()  # before reading: a page committed after this read sets it again
                if copying.task.done():
                    if copying.task.cancelled() or copying.task.exception() is not None or not copying.task.result():
                        return  # the caller re-reads the run (or raises what the snapshot met)
                    copying = None
                    total = await runs.targeted(self.pool, run.id)
                else:
                    total = await runs.snapshotted(self.pool, run.id)
            if through >= total:
                if copying is None:
                    break
                if await _wait(copying.grew, runner.stop, 1.0):
                    return
                continue
            n = min(batch, total - through)
            wait = bucket.wait_for(n)
            while wait > 0:
                if await _sleep(runner.stop, wait):
                    return
                wait = bucket.wait_for(n)
            if runner.stop.is_set():
                return
            now = datetime.now(UTC)
            try:
                sent = await runs.send_batch(self.pool, run, through, through + n, now)
            except _STORAGE_ERRORS:
                # The commit's answer may be what was lost: if this very attempt committed, its
                # recipients are still owed their live message.
                sent = await self._committed_anyway(runner, run, through, through + n, now)
                if sent is None:
                    raise
            if sent is None:
                return  # the run moved on (paused, cancelled, or another owner did this batch): re-read it
            through += n
            await self._deliver(run, template, sent.sent, now)
            await self._progress(run)
        if await runs.complete(self.pool, run) is not None:
            await self._progress(run, force=True)

    async def _committed_anyway(self, runner: _Runner, run: runs.Run, old: int, new: int,
                                now: datetime) -> runs.Batch | None:
        delay = 0.2
        while not runner.stop.is_set():
            try:
                return await runs.batch_committed(self.pool, run, old, new, now)
            except _STORAGE_ERRORS:
                await _sleep(runner.stop, delay)
                delay = min(delay * 2, 5.0)
        return None

    # ---- emitting -------------------------------------------------------------------------------
    async def _online_users(self, app_id: UUID) -> dict[str, bool]:
        cached = self._online.get(app_id)
        now = time.monotonic()
        if cached is not None and now - cached[0] < ONLINE_TTL_S:
            return cached[1]
        try:
            users = await self.fanout.online_users(str(app_id))
        except Exception as exc:  # Redis away: nobody is reached live; sync has it all
            log.warning("cannot list the connected users of %s: %s", app_id, exc)
            users = {}
        self._online[app_id] = (now, users)
        return users

    async def _deliver(self, run: runs.Run, template: MessageTemplate, sent: list[tuple[int, UUID]],
                       now: datetime) -> None:
        """broadcast:message to the batch's recipients connected now (the others get it from sync)."""
        if not sent:
            return
        online = await self._online_users(run.app_id)
        if not online:
            return
        reached = [(ord_, uid, remote) for ord_, uid in sent if (remote := online.get(str(uid))) is not None]
        if not reached:
            return
        try:
            users = await runs.recipients_of(self.pool, [uid for _, uid, _ in reached])
        except _STORAGE_ERRORS as exc:  # committed already: they find it in sync
            log.warning("broadcast %s: no live delivery for a batch: %s", run.broadcast_id, exc)
            return
        sent_at = iso(now)
        for ord_, uid, remote in reached:
            user = users.get(uid)
            if user is not None:
                payload = msgspec.to_builtins(template.render(run.id, ord_, user, sent_at))
                await self.fanout.broadcast_message(str(uid), payload, remote=remote)

    async def _progress(self, run: runs.Run, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._progress_at.get(run.id, 0.0) < PROGRESS_INTERVAL_S:
            return
        self._progress_at[run.id] = now
        try:
            data = await runs.progress(self.pool, run.id)
        except _STORAGE_ERRORS as exc:
            log.debug("no progress for run %s: %s", run.id, exc)
            return
        if data is None:
            return
        if data["status"] not in runs.ACTIVE:
            self._progress_at.pop(run.id, None)
        await self.fanout.broadcast_progress(str(run.app_id), data)


async def _wait(event: asyncio.Event, stop: asyncio.Event, seconds: float) -> bool:
    """Wait for `event` (at most `seconds`) unless told to stop; True if told to stop."""
    if not stop.is_set():
        waiters = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(stop.wait())]
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        for w in waiters:
            w.cancel()
    return stop.is_set()


async def _sleep(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep, or less when told to stop; True if told to stop."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


class BroadcastCommandsClient:
    """The routes' and the scheduler's way to the actor (server/broadcasts/ports.py BroadcastCommands)."""

    def __init__(self, host: Any) -> None:
        self.host = host  # actors/runtime/host.py ActorHost[BroadcastCommand]

    async def start(self, app_id: UUID, broadcast_id: UUID, run_id: UUID) -> None:
        await self.host.call(BroadcastCommand("start", str(app_id), str(broadcast_id), str(run_id)))

    async def pause(self, app_id: UUID, broadcast_id: UUID) -> str:
        return str(await self.host.call(BroadcastCommand("pause", str(app_id), str(broadcast_id))))

    async def resume(self, app_id: UUID, broadcast_id: UUID) -> str:
        return str(await self.host.call(BroadcastCommand("resume", str(app_id), str(broadcast_id))))

    async def cancel(self, app_id: UUID, broadcast_id: UUID) -> str:
        return str(await self.host.call(BroadcastCommand("cancel", str(app_id), str(broadcast_id))))
