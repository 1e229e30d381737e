"""Group commit across partitions: the batches that every partition worker of this replica has
planned while the previous commit was in flight go to Postgres together, in one statement.

Fewer, larger transactions is what lets one replica sustain thousands of messages a second;
a batch that fails (a resend, a moved fence) is retried alone so it cannot fail its neighbours.

Its owner (the conversation actor's handler) starts the workers with start() and stops them with
close(): they hold pool connections, so they must stop before the pool closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from uuid import UUID

import asyncpg

from server.conversations.commit import ConversationState, DuplicateClientIds, NewMessage, StaleSeq, insert_messages

log = logging.getLogger("replyhq.messaging.group_commit")
_RETRY_ALONE = (DuplicateClientIds, StaleSeq, asyncpg.UniqueViolationError, asyncpg.DeadlockDetectedError)


@dataclass
class _Submission:
    new: list[NewMessage]
    base: dict[UUID, ConversationState]
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class GroupCommitter:
    def __init__(self, pool: asyncpg.Pool, metrics: object, workers: int = 2, idle_release_s: float = 0.05) -> None:
        self.pool = pool
        self.workers = workers
        self.idle_release_s = idle_release_s
        self.metrics = metrics
        self._pending: list[_Submission] = []
        # Idle workers, each waiting on its own future. Work goes to one that holds a connection,
        # the most recently idle first, so the others stay idle long enough to give theirs back:
        # a pool release costs a reset round trip, as much as a small commit.
        self._hot: list[asyncio.Future[bool]] = []
        self._cold: list[asyncio.Future[bool]] = []
        self._called = False  # a worker is woken for what is pending and has not taken it yet
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Start the commit workers (once)."""
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._run(), name=f"group-commit-{i}") for i in range(self.workers)]

    async def commit(self, new: list[NewMessage], base: dict[UUID, ConversationState]) -> None:
        """Returns once `new` is committed; raises what a commit of `new` alone would raise."""
        if not new:
            return
        if not self._tasks:
            raise RuntimeError("the group committer is not started (or closed): nothing would commit this")
        sub = _Submission(new, base)
        self._pending.append(sub)
        if not self._called:
            self._call_worker()
        await sub.done

    async def close(self) -> None:
        """Stop the workers; they give their pool connections back."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _call_worker(self) -> None:
        for idle in (self._hot, self._cold):
            while idle:
                waiter = idle.pop()
                if not waiter.done():
                    waiter.set_result(True)
                    self._called = True
                    return
        # every worker is committing: the first to finish takes what is pending

    async def _idle(self, idle: list[asyncio.Future[bool]], timeout: float | None) -> bool:
        """Wait to be called; False once `timeout` passes with nothing to do."""
        if self._pending:
            return True
        waiter = asyncio.get_running_loop().create_future()
        idle.append(waiter)
        timer = None if timeout is None else waiter.get_loop().call_later(timeout, _expire, waiter)
        try:
            return await waiter
        finally:
            if timer is not None:
                timer.cancel()
            if waiter in idle:
                idle.remove(waiter)

    async def _next_batch(self) -> list[_Submission]:
        """For a worker holding a connection: what is pending, or [] once idle for idle_release_s."""
        while await self._idle(self._hot, self.idle_release_s):
            batch = self._take_all()
            if batch:
                return batch
        return []

    def _take_all(self) -> list[_Submission]:
        batch, self._pending = self._pending, []
        self._called = False
        return batch

    async def _run(self) -> None:
        while True:
            await self._idle(self._cold, None)
            batch = self._take_all()
            if not batch:
                continue  # a busy worker took it meanwhile
            try:
                async with self.pool.acquire() as conn:
                    while batch:
                        await self._commit(conn, batch)
                        batch = [] if conn.is_closed() else await self._next_batch()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the pool could not give a connection: Postgres is away
                log.warning("group commit has no connection: %s", exc)
                for sub in batch + self._take_all():
                    _settle(sub, exc)
                await asyncio.sleep(0.2)

    async def _commit(self, conn: asyncpg.Connection, batch: list[_Submission]) -> None:
        if len(batch) > 1:
            merged = [m for sub in batch for m in sub.new]
            base = {k: v for sub in batch for k, v in sub.base.items()}
            try:
                with self.metrics.commit_duration.time():  # type: ignore[attr-defined]
                    await insert_messages(conn, merged, base)
            except _RETRY_ALONE:
                pass  # someone's batch is special: commit each alone below
            except Exception as exc:
                for sub in batch:
                    _settle(sub, exc)
                return
            else:
                self.metrics.commit_batch_size.observe(len(merged))  # type: ignore[attr-defined]
                for sub in batch:
                    _settle(sub, None)
                return
        for sub in batch:
            try:
                with self.metrics.commit_duration.time():  # type: ignore[attr-defined]
                    await insert_messages(conn, sub.new, sub.base)
            except Exception as exc:
                _settle(sub, exc)
            else:
                self.metrics.commit_batch_size.observe(len(sub.new))  # type: ignore[attr-defined]
                _settle(sub, None)


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


def _settle(sub: _Submission, exc: BaseException | None) -> None:
    with contextlib.suppress(asyncio.InvalidStateError):
        if exc is None:
            sub.done.set_result(None)
        else:
            sub.done.set_exception(exc)
