"""The consumer runtime: named groups that read domain events at least once and apply each once.

A group reads the `events:domain` stream through a Redis consumer group (one consumer per
replica, so batches spread over replicas; entries a dead replica left pending are claimed by
the others). Whatever arrives, a batch is applied in one Postgres transaction that locks the
group's checkpoint row, skips what the checkpoint already covers (a redelivery has no second
effect), reads from Postgres whatever the stream lacks between the checkpoint and the entry
(Redis restarted empty, FLUSHALL, trimmed), lets the consumer apply the events, and moves the
checkpoint: the effect and the progress commit together. When the stream is quiet, the group
also reads Postgres past its checkpoint, so it never waits on the relay to notice a gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NamedTuple, Protocol

import asyncpg
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from server.events import store
from server.events.catalog import PAYLOADS, STREAM, DomainEvent, event_type
from server.events.store import Position

log = logging.getLogger("replyhq.workers.consumer_groups")
# The group's checkpoint, locked for the batch, with what retention deleted and how far the relay
# got. The effect and the checkpoint commit together, so a commit lost in a Postgres crash loses
# both and those events are applied again, once: the transaction need not wait for the WAL flush.
_CHECKPOINT_SQL = """
SELECT c.tx::text AS tx, c.seq, r.tx::text AS kept_tx, r.seq AS kept_seq, l.tx::text AS relayed_tx,
       l.seq AS relayed_seq, set_config('synchronous_commit', 'off', true) AS async_commit
FROM event_consumers c, event_retention r, event_relay l
WHERE c.name = $1 AND r.id = 1 AND l.id = 1
FOR UPDATE OF c
"""


# The batch's checkpoint move when this replica knows where the checkpoint is (it moved it last)
# and the batch follows on from it: the row is locked and moved in one statement, fenced on the
# position it should still have; the effect follows in the same transaction. Nothing updated: the
# checkpoint moved under us (another replica, or a commit lost in a crash), so the batch is redone
# the careful way above.
_MOVE_SQL = """
UPDATE event_consumers c SET tx = $4::text::xid8, seq = $5, applied = c.applied + $6, updated_at = now()
FROM event_retention r, event_relay l, (SELECT set_config('synchronous_commit', 'off', true)) AS off
WHERE c.name = $1 AND c.tx = $2::text::xid8 AND c.seq = $3 AND r.id = 1 AND l.id = 1
RETURNING r.tx::text AS kept_tx, r.seq AS kept_seq, l.tx::text AS relayed_tx, l.seq AS relayed_seq
"""


# One event in this many has its delay observed (replyhq_event_consumer_delay_seconds).
DELAY_SAMPLE_EVERY = 32

# The least time between two refreshes of what a consumer's `relevant` knows (see Consumer).
REFRESH_EVERY_S = 1.0

# How long a group may move past batches with nothing for it before its checkpoint is written.
SKIP_SAVE_S = 1.0

# The lag gauge: events between the group's checkpoint and the relay's, counted at most this often
# (a statement of its own) and up to LAG_COUNT_MAX (a group further behind shows that many).
LAG_EVERY_S = 1.0
LAG_COUNT_MAX = 100_000


class _CheckpointMoved(Exception):
    """The fenced move found the checkpoint elsewhere: roll back and redo the batch carefully."""


class Consumer(Protocol):
    """What a group does with events: runs inside the transaction that moves its checkpoint.

    A consumer may also define `committed(events)`, called after that transaction committed (never
    after a rollback): the place to remember what is now certainly stored; `types`, the event
    types it has any effect for (absent: all). A batch with none of them has no effect to commit:
    the group moves past it in memory and writes its checkpoint at most every SKIP_SAVE_S (a
    successor that starts from an older checkpoint reads those events again, to no effect);
    `relevant(events)`, instead of `types`, for a finer test: False only if the batch certainly has
    no effect. It sees every event this replica's group reaches through the stream, in order, so it
    may learn from them (webhooks: which workspaces have an endpoint); what it cannot have seen
    (events another replica applied, a restart) is made up for by `refresh(conn)`, called before
    `relevant` is asked again once a batch's locked checkpoint was past the last event this replica
    saw (and before the first time), at most every REFRESH_EVERY_S: until then such batches are
    applied;
    `by_reference`: True if it takes message.created's data by reference (server/events/store.py
    `referenced_message`), as the stream carries it, rather than the message itself, which the
    runtime otherwise builds for each batch it applies (one statement); and
    `interval_s`, the least time between its batches while it keeps up (absent: 0, a batch per
    relay cycle). A consumer whose effect may wait that long (counters, statistics) commits one
    transaction per interval instead of one per relay cycle; a backlog is still read at full speed.
    `forget()`, if defined, is called when the group loses Postgres or Redis: what `committed`
    remembered may be gone (a group commits asynchronously: a crash of Postgres may lose its last
    transactions, each effect with its checkpoint, and those events are then applied again).

    `passes(types)`, True if events of only these types certainly have no effect and nothing to
    learn from (absent: derived from `types`): a stream entry names its events' types (`ts`), so a
    batch of such entries is passed over on their fields alone, nothing read or decoded (webhooks:
    while no workspace has an endpoint).

    A consumer whose effect is a statement over the events (counters) defines
    `apply_range(conn, after, upto)` instead of `apply`: apply every event after position `after`
    up to and including `upto`, reading them from Postgres (server/events/store.py `RANGE_ROWS`).
    All of them are committed and visible. The group then builds no events at
    all: a stream entry gives only how far the range goes, so nothing is decoded in Python and
    the cost is per row of `event_rows` in Postgres, not per event in the worker process
    (`types`, `relevant`, `by_reference` and `committed` do not apply)."""

    name: str

    async def apply(self, conn: asyncpg.Connection, events: list[DomainEvent]) -> None: ...


class ConsumerGroup:
    def __init__(self, pool: asyncpg.Pool, redis: aioredis.Redis, consumer: Consumer, *, replica_id: str,
                 metrics: Any = None, batch: int = 1000, block_ms: int = 200, claim_idle_ms: int = 10_000,
                 idle_catch_up_s: float = 1.0) -> None:
        self.pool = pool
        self.redis = redis
        self.consumer = consumer
        self.name = consumer.name
        self.replica_id = replica_id
        self.metrics = metrics
        self.batch = batch
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.idle_catch_up_s = idle_catch_up_s
        self._task: asyncio.Task[None] | None = None
        self._warned_retention = False
        self._next_claim = 0.0  # loop time of the next look for entries a dead replica left
        # How far this replica has applied (None: unknown, read the checkpoint locked), and the
        # checkpoint as it last committed it: behind the cursor while batches with nothing for the
        # consumer are passed over without a transaction.
        self._cursor: Position | None = None
        self._saved: Position | None = None
        self._saved_at = 0.0
        self._passed = 0  # events passed over since the last save
        self._counted = 0  # events applied so far, modulo DELAY_SAMPLE_EVERY: which to sample next
        # Whether a batch may have an effect: the consumer's own test, or one from its `types`.
        self._relevant: Callable[[list[DomainEvent]], bool] | None = getattr(consumer, "relevant", None)
        types = getattr(consumer, "types", None)
        # Whether entries of only these event types (their `ts` field) certainly have nothing for
        # the consumer: then they are passed over without being read at all.
        self._passes: Callable[[frozenset[str]], bool] | None = getattr(consumer, "passes", None)
        if self._relevant is None and types is not None:
            wanted = frozenset(types)
            self._relevant = lambda todo: not wanted.isdisjoint(map(event_type, todo))  # looped in C
            if self._passes is None:
                self._passes = wanted.isdisjoint
        self._refresh = getattr(consumer, "refresh", None)
        # Events up to the cursor went by unseen here (another replica applied them, or a restart),
        # so what `relevant` learned may be short of them until the next refresh.
        self._unseen = True
        self._refreshed_at = float("-inf")
        # Entries applied but not yet acknowledged: the acknowledgement rides on the next read.
        self._unacked: list[bytes] = []
        # One connection held by the running loop (a pool round trip resets the connection, a
        # statement of its own, on every release); handle() and catch_up() called from outside
        # take one from the pool.
        self._conn: asyncpg.Connection | None = None
        self._committed = getattr(consumer, "committed", None)
        self._forget = getattr(consumer, "forget", None)
        self._interval = float(getattr(consumer, "interval_s", 0.0))
        # Stream entries per read: the relay's hold about 100 events each (workers/event_relay.py).
        # A group that waits between batches reads an interval's entries at once (about 75 a second
        # at 5,000 events/s): one read and one transaction an interval, not two.
        self.read_entries = max(1, batch // (5 if self._interval else 20))
        self._by_reference = bool(getattr(consumer, "by_reference", False))
        self._apply_range: Callable[[asyncpg.Connection, Position, Position], Awaitable[None]] | None = getattr(
            consumer, "apply_range", None)
        # Labelled metric children, looked up once rather than on every batch.
        self._m_applied = self._m_delay = self._m_lag = self._m_behind = None
        self._lag_at = float("-inf")  # monotonic time the lag was last counted
        if metrics is not None:
            self._m_applied = metrics.event_consumer_applied.labels(self.name)
            self._m_delay = metrics.event_consumer_delay.labels(self.name)
            self._m_lag = metrics.event_consumer_lag.labels(self.name)
            self._m_behind = metrics.event_consumer_behind_retention.labels(self.name)

    async def start(self) -> None:
        await self.pool.execute(
            """INSERT INTO event_consumers (name, tx, seq)
               SELECT $1, tx, seq FROM event_retention WHERE id = 1 ON CONFLICT (name) DO NOTHING""", self.name)
        self._task = asyncio.create_task(self._run(), name=f"event-consumer-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._release()

    async def _release(self) -> None:
        conn, self._conn = self._conn, None
        self._cursor = self._saved = None
        self._passed = 0
        self._unacked = []  # still pending: claimed later, and skipped by the checkpoint
        if conn is not None:
            try:
                await self.pool.release(conn)
            except Exception as exc:  # a broken connection: the pool replaces it
                log.debug("event consumer %s: releasing its connection: %r", self.name, exc)

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        if self._conn is not None:
            yield self._conn
        else:
            async with self.pool.acquire() as conn:
                yield conn

    async def _ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(STREAM, self.name, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        quiet_since = loop.time()
        group_ready = False
        while True:
            try:
                if not group_ready:
                    await self._ensure_group()
                    group_ready = True
                if self._conn is None:
                    self._conn = await self.pool.acquire()
                started = loop.time()
                entries = await self._read()
                if entries:
                    await self.handle(entries, ack=False)
                    quiet_since = loop.time()
                    if self._interval and len(entries) < self.read_entries:  # caught up: let the next batch gather
                        await asyncio.sleep(self._interval - (quiet_since - started))
                elif loop.time() - quiet_since >= self.idle_catch_up_s:
                    await self.catch_up()
                    quiet_since = loop.time()
            except asyncio.CancelledError:
                raise
            except ResponseError as exc:
                self._unacked = []
                if "NOGROUP" in str(exc):  # Redis lost the stream and its groups: make them again
                    group_ready = False
                    continue
                log.warning("event consumer %s: %r; retrying", self.name, exc)
                await asyncio.sleep(0.5)
            except Exception as exc:  # Postgres or Redis away: the checkpoint keeps our place
                log.warning("event consumer %s: %r; retrying", self.name, exc)
                group_ready = False
                if self._forget is not None:
                    self._forget()
                await self._release()
                await asyncio.sleep(0.5)

    async def _read(self) -> list[tuple[bytes, dict[bytes, bytes]]]:
        # Entries another replica took and never acknowledged (it died): looked for now and then,
        # not on every read (they can be claimed only claim_idle_ms after they were taken anyway).
        now = asyncio.get_running_loop().time()
        if now >= self._next_claim:
            self._next_claim = now + self.claim_idle_ms / 4000
            claimed: Any = await self.redis.xautoclaim(STREAM, self.name, self.replica_id, self.claim_idle_ms,
                                                       start_id="0-0", count=self.read_entries)
            if claimed and claimed[1]:
                self._next_claim = now  # there may be more
                return [e for e in claimed[1] if e[1]]
        acks, self._unacked = self._unacked, []
        found: Any
        if acks:  # the last batch's acknowledgement and the next read: one round trip
            pipe = self.redis.pipeline(transaction=False)
            pipe.xack(STREAM, self.name, *acks)
            pipe.xreadgroup(self.name, self.replica_id, {STREAM: ">"}, count=self.read_entries, block=self.block_ms)
            _, found = await pipe.execute()
        else:
            found = await self.redis.xreadgroup(self.name, self.replica_id, {STREAM: ">"}, count=self.read_entries,
                                                block=self.block_ms)
        return list(found[0][1]) if found else []  # RESP2: [[stream, [(id, fields), ...]]]

    async def handle(self, entries: list[tuple[bytes, dict[bytes, bytes]]], *, ack: bool = True) -> int:
        """Apply a batch of stream entries once; returns how many events were applied. Without
        `ack`, the entries are acknowledged with the next read."""
        passed = await self._pass_over(entries)
        if passed is not None:
            applied = passed
        elif self._apply_range is not None:
            applied = await self._ranges_upto(max(map(_entry_last, entries))) if entries else 0
        else:
            runs = await self._runs(entries)
            applied = await self._apply(sorted(runs, key=lambda run: run.last))
        ids = [entry_id for entry_id, _ in entries]
        if ack:
            await self.redis.xack(STREAM, self.name, *ids)
        else:
            self._unacked += ids
        return applied

    async def _pass_over(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> int | None:
        """Pass over entries whose types (`ts`) the consumer has no use for, from their fields alone:
        nothing decoded, nothing read from Redis or Postgres (the checkpoint written at most every
        SKIP_SAVE_S, as for any batch with nothing for the consumer). Returns how many events, or
        None, having done nothing, unless every entry follows on from this replica's cursor and
        can be passed over (then the usual path decides)."""
        if self._passes is None or self._cursor is None or self._saved is None or not await self._up_to_date():
            return None
        cursor = self._cursor
        spans: list[tuple[int, float]] = []  # (events, the oldest one's commit time) an entry
        for _, fields in sorted(entries, key=_entry_last):
            pos, prev, n, at, ts = (fields.get(k) for k in (b"pos", b"prev", b"n", b"at", b"ts"))
            if pos is None or prev is None or n is None or at is None or ts is None:
                return None  # an entry as older relays appended it
            last = Position.parse(pos)
            if last <= cursor:
                continue  # applied before
            if Position.parse(prev) != cursor or not self._passes(frozenset(ts.decode().split(","))):
                return None
            spans.append((int(n), float(at)))
            cursor = last
        total = sum(n for n, _ in spans)
        self._cursor = cursor
        self._passed += total
        self._applied_counts(spans)
        if time.monotonic() - self._saved_at >= SKIP_SAVE_S:
            try:
                await self._apply_following(self._saved, cursor, [], idle=True)
            except _CheckpointMoved:
                self._cursor = self._saved = None
        return total

    async def _runs(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> list[_Run]:
        """The entries' events: from this process's cache (the relay here put them there, or another
        group read them), else from PAYLOADS, one round trip for all; an entry whose envelopes are
        gone from Redis (trimmed, flushed) is a run without events, read from Postgres."""
        runs: list[_Run] = []
        missing: list[tuple[bytes, dict[bytes, bytes]]] = []
        for entry_id, fields in entries:
            run = _decoded(self.redis, entry_id, fields)
            if run is None:
                missing.append((entry_id, fields))
            else:
                runs.append(run)
        if missing:
            pipe = self.redis.pipeline(transaction=False)
            for entry_id, _ in missing:
                pipe.xrange(PAYLOADS, entry_id, entry_id, count=1)
            for (entry_id, fields), found in zip(missing, await pipe.execute(), strict=True):
                run = _decoded(self.redis, entry_id, fields, found[0][1]) if found else None
                runs.append(run or _Run(Position.parse(fields[b"prev"]), Position.parse(fields[b"pos"]), None))
        return runs

    async def catch_up(self) -> int:
        """Apply what Postgres holds past the checkpoint (the stream may have lost it)."""
        if self._cursor is not None and self._saved is not None and self._cursor != self._saved:
            # Write the checkpoint past what was passed over first: read from the older one, all of
            # that would be read and handed to the consumer again (a quiet second after a backlog
            # passed over in memory: up to a second of it).
            try:
                await self._apply_following(self._saved, self._cursor, [], idle=True)
            except _CheckpointMoved:
                self._cursor = self._saved = None
        if self._apply_range is not None:
            return await self._ranges_upto(None)
        total = 0
        while True:
            applied = await self._apply(None)
            total += applied
            if applied < self.batch:
                return total

    async def _ranges_upto(self, upto: Position | None) -> int:
        """A range consumer's batches: every event past the checkpoint up to `upto` (None: as far as
        Postgres has them visible), `batch` rows of `event_rows` a transaction."""
        total = 0
        while True:
            applied, more = await self._apply_one_range(upto)
            total += applied
            if not more:
                return total

    async def _apply_one_range(self, upto: Position | None) -> tuple[int, bool]:
        """One transaction: lock the checkpoint, apply the rows after it (up to `upto`), move it.
        Returns how many events, and whether more rows may follow within `upto`."""
        assert self._apply_range is not None
        async with self._connection() as conn, conn.transaction():
            row = await conn.fetchrow(_CHECKPOINT_SQL, self.name)
            checkpoint = Position(int(row["tx"]), row["seq"])
            await self._observe(conn, checkpoint, row)
            if upto is not None and upto <= checkpoint:
                return 0, False  # applied before: a redelivery, or the relay appending again
            spans = await store.spans_after(conn, checkpoint, upto, self.batch)
            if not spans:
                return 0, False
            cursor = Position(spans[-1].tx, spans[-1].last)
            applied = sum(span.last - span.first + 1 for span in spans)
            await self._apply_range(conn, checkpoint, cursor)
            await conn.execute(
                """UPDATE event_consumers SET tx = $2::text::xid8, seq = $3, applied = applied + $4,
                   updated_at = now() WHERE name = $1""", self.name, str(cursor.tx), cursor.n, applied)
        self._saved_here(cursor)
        self._applied_counts([(span.last - span.first + 1, span.at) for span in spans])
        return applied, len(spans) >= self.batch

    async def _apply(self, runs: list[_Run] | None) -> int:
        if runs is not None and self._cursor is not None and self._saved is not None:
            todo, cursor = _follows_on(self._cursor, runs)
            if todo is not None:  # the usual case: the next events, none lacking
                if not todo:
                    return 0  # all applied before (a redelivery, or the relay appending again)
                idle = await self._nothing_for_consumer(todo)
                if idle and time.monotonic() - self._saved_at < SKIP_SAVE_S:
                    self._cursor = cursor
                    self._passed += len(todo)
                    self._applied(todo, committed=False)
                    return len(todo)
                try:
                    return await self._apply_following(self._saved, cursor, todo, idle)
                except _CheckpointMoved:
                    self._cursor = self._saved = None
        async with self._connection() as conn, conn.transaction():
            row = await conn.fetchrow(_CHECKPOINT_SQL, self.name)  # one round trip: it is on every batch
            checkpoint = Position(int(row["tx"]), row["seq"])
            await self._observe(conn, checkpoint, row)
            if self._cursor is None or checkpoint > self._cursor:
                self._unseen = True  # events up to the checkpoint were applied without this replica
            todo = []
            cursor = checkpoint
            if runs is None:
                todo = await store.read_after(conn, cursor, self.batch, by_reference=True)
                if todo:
                    cursor = Position.parse(todo[-1].position)
            else:
                for run in runs:
                    if run.last <= cursor:
                        continue  # applied before: a redelivery, or the relay appending again
                    if run.events is None:
                        # Its envelopes are gone from Redis: Postgres has them, and all before
                        # them (up to and including `last`: nothing lies between it and n + 1).
                        todo += await _all_between(conn, cursor, Position(run.last.tx, run.last.n + 1))
                        cursor = run.last
                        continue
                    if run.prev > cursor:
                        # The stream lacks what lies between: every event before a relayed one is
                        # committed and visible, so Postgres has it all.
                        todo += await _all_between(conn, cursor, Position.parse(run.events[0].position))
                    todo += _past(run, cursor)
                    cursor = run.last
            if todo:
                # A group behind the stream's trimmed tail reads it all here: a batch certainly
                # without effect still costs no message built and no apply.
                if not await self._nothing_for_consumer(todo):
                    await self._consume(conn, todo)
                await conn.execute(
                    """UPDATE event_consumers SET tx = $2::text::xid8, seq = $3, applied = applied + $4,
                       updated_at = now() WHERE name = $1""", self.name, str(cursor.tx), cursor.n, len(todo))
        self._saved_here(cursor)
        self._applied(todo)
        return len(todo)

    async def _consume(self, conn: asyncpg.Connection, todo: list[DomainEvent]) -> None:
        # Events come by reference whatever the path (the stream, Postgres): the messages are built
        # here, once a batch, for a consumer that takes them.
        await self.consumer.apply(conn, todo if self._by_reference else await store.resolve(conn, todo))

    async def _nothing_for_consumer(self, todo: list[DomainEvent]) -> bool:
        if self._relevant is None or not await self._up_to_date():
            return False
        return not self._relevant(todo)

    async def _up_to_date(self) -> bool:
        """Whether what the consumer learned covers what this replica did not see: refreshed if it
        is due. At most one refresh every REFRESH_EVERY_S (with replicas taking turns, a batch seldom
        follows on from the last one here); until then a batch is applied, and the transaction
        decides, as for a consumer that cannot tell."""
        if self._unseen and self._refresh is not None:
            if time.monotonic() - self._refreshed_at < REFRESH_EVERY_S:
                return False
            async with self._connection() as conn:
                await self._refresh(conn)
            self._refreshed_at, self._unseen = time.monotonic(), False
        return True

    def _saved_here(self, cursor: Position) -> None:
        self._cursor = self._saved = cursor
        self._saved_at = time.monotonic()
        self._passed = 0

    async def _apply_following(self, checkpoint: Position, cursor: Position, todo: list[DomainEvent],
                               idle: bool) -> int:
        """Apply events that follow on from `checkpoint`, where this replica saved it (what lies between
        it and `todo` was passed over: nothing for the consumer), up to `cursor`; `idle`: `todo` has
        nothing for the consumer either (only the checkpoint moves)."""
        async with self._connection() as conn, conn.transaction():
            row = await conn.fetchrow(_MOVE_SQL, self.name, str(checkpoint.tx), checkpoint.n, str(cursor.tx),
                                      cursor.n, len(todo) + self._passed)
            if row is None:
                raise _CheckpointMoved
            await self._observe(conn, checkpoint, row)
            if not idle:
                await self._consume(conn, todo)
        self._saved_here(cursor)
        self._applied(todo)
        return len(todo)

    async def _observe(self, conn: asyncpg.Connection, checkpoint: Position, row: asyncpg.Record) -> None:
        self._check_retention(checkpoint, Position(int(row["kept_tx"]), row["kept_seq"]))
        now = time.monotonic()
        if self._m_lag is not None and now - self._lag_at >= LAG_EVERY_S:
            self._lag_at = now
            relayed = Position(int(row["relayed_tx"]), row["relayed_seq"])
            self._m_lag.set(await store.count_between(conn, checkpoint, relayed, LAG_COUNT_MAX)
                            if relayed > checkpoint else 0)

    def _applied(self, todo: list[DomainEvent], *, committed: bool = True) -> None:
        if not todo:
            return
        if committed and self._committed is not None:
            self._committed(todo)
        if self._m_applied is not None and self._m_delay is not None:
            self._m_applied.inc(len(todo))
            # Every DELAY_SAMPLE_EVERY-th event, counted across batches: each sample stands for as
            # many events, so the histogram's quantiles are the events' (parsing every event's time
            # cost more than applying it; sampling per batch would weigh a small batch like a big one).
            now = time.time()
            first = -self._counted % DELAY_SAMPLE_EVERY
            for e in todo[first::DELAY_SAMPLE_EVERY]:
                self._m_delay.observe(e.age_s(now))
            self._counted = (self._counted + len(todo)) % DELAY_SAMPLE_EVERY

    def _applied_counts(self, counts: list[tuple[int, float]]) -> None:
        """Metrics for events applied or passed over without being read: (how many, when the
        oldest of them was committed) a row or an entry."""
        if self._m_applied is None or self._m_delay is None:
            return
        self._m_applied.inc(sum(n for n, _ in counts))
        # As _applied samples: every DELAY_SAMPLE_EVERY-th event, each sharing its row's (entry's) time.
        now, counted = time.time(), self._counted
        for n, at in counts:
            counted += n
            while counted >= DELAY_SAMPLE_EVERY:
                self._m_delay.observe(max(0.0, now - at))
                counted -= DELAY_SAMPLE_EVERY
        self._counted = counted

    def _check_retention(self, checkpoint: Position, mark: Position) -> None:
        behind = checkpoint < mark
        if self._m_behind is not None:
            self._m_behind.set(1 if behind else 0)
        if behind and not self._warned_retention:
            log.error("EVENT CONSUMER %s FELL BEHIND RETENTION: its checkpoint %s is older than the events "
                      "already deleted (up to %s); the events in between are lost to it. Raise "
                      "EVENT_RETENTION_DAYS or fix the consumer.", self.name, checkpoint, mark)
        self._warned_retention = behind


class _Run(NamedTuple):
    """Consecutive events from one stream entry: every committed event after `prev` up to `last`
    (None: the entry's envelopes were not found in Redis)."""

    prev: Position
    last: Position
    events: list[DomainEvent] | None


# Entries decoded lately, shared by the groups of a replica: each group reads every entry, and
# decoding an entry (about a hundred events) was a replica's largest cost per event after the
# transactions; so was reading its envelopes from Redis once per group, which is why they live on
# PAYLOADS and the relay leaves what it appended here, undecoded until a group needs it. Keyed by the
# Redis client, the entry id and the positions it spans, so groups of another stream (another
# test's server in the same process) never share one. Consumers must treat events as read-only.
# Enough entries for the groups that read once a second (interval_s) to find what the group that
# reads on every relay cycle decoded: about 75 entries a second at 5,000 events/s, since the relay
# appends 2 to 3 entries every 40 ms. At 64 the interval groups found almost none and decoded each
# entry again (256 entries of about 100 events: about 15 MB; more only if commits of over 100
# messages a workspace fill them, an entry being one row at most of the ROW_SPAN a row may hold).
# An OrderedDict: dropping a plain dict's first key walks past every slot deleted before it.
_DECODED: OrderedDict[tuple[int, bytes, bytes, bytes], _Run | str] = OrderedDict()
_DECODED_MAX = 256


def remember_payload(redis: aioredis.Redis, entry_id: bytes | str, prev: str, pos: str, rows: str) -> None:
    """The relay's side: the rows (server/events/store.py RowForm, a JSON array) of the entry it
    appended to the stream."""
    key = (id(redis), entry_id.encode() if isinstance(entry_id, str) else entry_id, prev.encode(), pos.encode())
    _remember(key, rows)


def _remember(key: tuple[int, bytes, bytes, bytes], value: _Run | str) -> None:
    if key not in _DECODED and len(_DECODED) >= _DECODED_MAX:
        _DECODED.popitem(last=False)  # the oldest
    _DECODED[key] = value


def _decoded(redis: aioredis.Redis, entry_id: bytes, fields: dict[bytes, bytes],
             payload: dict[bytes, bytes] | None = None) -> _Run | None:
    """The entry's events, if this process has them or `payload` (the entry's fields on PAYLOADS,
    or, as older relays appended them, the entry itself) carries them."""
    single = fields.get(b"e")
    if single is not None:  # one event (`e`) per entry
        event = store.decode_event(single)
        return _Run(Position.parse(fields[b"prev"]), Position.parse(event.position), [event])
    # What the relay appends: consecutive events, up to the entry's `pos`.
    key = (id(redis), entry_id, fields[b"prev"], fields[b"pos"])
    found = _DECODED.get(key)
    if isinstance(found, tuple):
        return found
    prev = Position.parse(fields[b"prev"])
    carried = payload if payload is not None else fields
    if found is not None:
        events = store.decode_rows(found, prev)
    elif b"rs" in carried:  # rows of `event_rows`
        events = store.decode_rows(carried[b"rs"], prev)
    elif b"es" in carried:  # envelopes, as relays before the rows appended them
        events = store.decode_events(carried[b"es"])
    else:
        return None
    run = _Run(prev, Position.parse(fields[b"pos"]), events)
    _remember(key, run)
    return run


def _entry_last(entry: tuple[bytes, dict[bytes, bytes]]) -> Position:
    """The position of an entry's last event, from its fields (an entry of one event: that event's)."""
    fields = entry[1]
    pos = fields.get(b"pos")
    return Position.parse(pos) if pos is not None else Position.parse(store.decode_event(fields[b"e"]).position)


def _past(run: _Run, cursor: Position) -> list[DomainEvent]:
    """The run's events after `cursor` (at or after the run's `prev`); the run has its events."""
    assert run.events is not None
    if run.prev >= cursor:
        return run.events
    return [e for e in run.events if Position.parse(e.position) > cursor]  # applied in part before


def _follows_on(cursor: Position, runs: list[_Run]) -> tuple[list[DomainEvent] | None, Position]:
    """The events of `runs` (ordered) past `cursor`, and the position after them, if they follow on
    from it with none lacking; None if some are lacking."""
    todo: list[DomainEvent] = []
    for run in runs:
        if run.last <= cursor:
            continue
        if run.prev > cursor or run.events is None:
            return None, cursor
        todo += _past(run, cursor)
        cursor = run.last
    return todo, cursor


async def _all_between(conn: asyncpg.Connection, after: Position, before: Position) -> list[DomainEvent]:
    out: list[DomainEvent] = []
    while True:
        page = await store.read_between(conn, after, before, 5000)
        out += page
        if len(page) < 5000:
            return out
        after = Position.parse(page[-1].position)
