"""Group commit across partitions: the batches that every partition worker of this replica has
planned while the previous commit was in flight go to Postgres together, in one statement.

Fewer, larger transactions is what lets one replica sustain thousands of messages a second;
a batch that fails (a resend, a moved fence) is retried alone so it cannot fail its neighbours.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from uuid import UUID

import asyncpg

from server.messaging.commit import ConversationState, DuplicateClientIds, NewMessage, StaleSeq, insert_messages

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
        self.idle_release_s = idle_release_s
        self.metrics = metrics
        self._pending: list[_Submission] = []
        self._wake = asyncio.Event()
        self._tasks = [asyncio.create_task(self._run(), name=f"group-commit-{i}") for i in range(workers)]

    async def commit(self, new: list[NewMessage], base: dict[UUID, ConversationState]) -> None:
        """Returns once `new` is committed; raises what a commit of `new` alone would raise."""
        if not new:
            return
        sub = _Submission(new, base)
        self._pending.append(sub)
        self._wake.set()
        await sub.done

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            if not self._pending:
                self._wake.clear()
                continue
            # A worker keeps its connection while commits keep coming (a pool release costs a
            # reset round trip, as much as a small commit) and gives it back once idle.
            try:
                async with self.pool.acquire() as conn:
                    while self._pending:
                        batch, self._pending = self._pending, []
                        self._wake.clear()
                        await self._commit(conn, batch)
                        if conn.is_closed():
                            break
                        if not self._pending:
                            with contextlib.suppress(TimeoutError):
                                await asyncio.wait_for(self._wake.wait(), self.idle_release_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the pool could not give a connection: Postgres is away
                log.warning("group commit has no connection: %s", exc)
                for sub in self._take_all():
                    _settle(sub, exc)
                await asyncio.sleep(0.2)

    def _take_all(self) -> list[_Submission]:
        batch, self._pending = self._pending, []
        return batch

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


def _settle(sub: _Submission, exc: BaseException | None) -> None:
    with contextlib.suppress(asyncio.InvalidStateError):
        if exc is None:
            sub.done.set_result(None)
        else:
            sub.done.set_exception(exc)
