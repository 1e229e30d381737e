"""A test double of the broadcast actor's port (server/broadcasts/ports.py), for the routes' and the
scheduler's tests: it notes every call and moves the broadcast's status as the actor answers it
(pause -> paused, resume -> sending or scheduled, cancel -> cancelled; a started run leaves `pending`), without
sending anything.

`python -m tests.broadcast_port run` is the real server with this double wired in place of the actor;
calls are appended to the Redis list CALLS as "start <app> <broadcast> <run>" or "<command> <app> <broadcast>".
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

CALLS = "test:broadcast-port:calls"


class RecordedCommands:
    def __init__(self, pool: asyncpg.Pool | None = None, redis: Any = None) -> None:
        self.pool = pool
        self.redis = redis
        self.calls: list[tuple[str, ...]] = []
        self.fail_start = False  # the actor is unreachable: start raises

    async def _note(self, *call: str) -> None:
        self.calls.append(call)
        if self.redis is not None:
            await self.redis.rpush(CALLS, " ".join(call))

    async def start(self, app_id: UUID, broadcast_id: UUID, run_id: UUID) -> None:
        await self._note("start", str(app_id), str(broadcast_id), str(run_id))
        if self.fail_start:
            raise ConnectionError("actor unreachable (test)")
        if self.pool is not None:  # taken up, as the actor's snapshot would (no longer pending)
            await self.pool.execute("UPDATE broadcast_runs SET status = 'snapshotting' WHERE id = $1 "
                                    "AND status = 'pending'", run_id)

    async def _move(self, command: str, app_id: UUID, broadcast_id: UUID, status: str) -> str:
        await self._note(command, str(app_id), str(broadcast_id))
        assert self.pool is not None
        await self.pool.execute(
            """UPDATE broadcasts SET status = $3,
                   next_run_at = CASE WHEN $3 = 'cancelled' THEN NULL ELSE next_run_at END
               WHERE app_id = $1 AND id = $2""", app_id, broadcast_id, status)
        return status

    async def pause(self, app_id: UUID, broadcast_id: UUID) -> str:
        return await self._move("pause", app_id, broadcast_id, "paused")

    async def resume(self, app_id: UUID, broadcast_id: UUID) -> str:
        assert self.pool is not None
        running = await self.pool.fetchval(
            "SELECT 1 FROM broadcast_runs WHERE broadcast_id = $1 AND status IN ('snapshotting', 'sending', 'paused')",
            broadcast_id)
        return await self._move("resume", app_id, broadcast_id, "sending" if running else "scheduled")

    async def cancel(self, app_id: UUID, broadcast_id: UUID) -> str:
        return await self._move("cancel", app_id, broadcast_id, "cancelled")


def _wire() -> None:
    from sanic import Sanic

    from server.broadcasts import capability
    from server.context import AppContext

    real_setup = capability.setup

    def setup(app: Sanic, ctx: AppContext) -> None:
        real_setup(app, ctx)

        async def start() -> None:
            ctx.broadcast_commands = RecordedCommands(ctx.pool, ctx.redis)
            # The double stands in for the actor, so the real one must not drive runs itself: its
            # sweep (every 2 s) carries on any run it finds active, and finished a run the double
            # had moved to `snapshotting` while a test was still pausing and resuming it.
            handler = getattr(ctx, "broadcast_handler", None)
            if handler is not None:
                await handler.close()

        ctx.lifecycle.add("test-broadcast-port", start)

    capability.setup = setup  # type: ignore[assignment]  # the app factory calls capability.setup by name


if __name__ == "__main__":
    from server.cli import main

    _wire()
    main()
