"""A Postgres of the test's own, to stop and start under a running server (the shared one serves
every other test)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from server.dev.embedded import EmbeddedPostgres
from server.platform.db.migrate import migrate
from server.tenancy.workspaces import NewWorkspace, create_workspace
from tests.admin_helpers import PASSWORD


@dataclass
class OwnPostgres:
    pg: EmbeddedPostgres
    url: str
    workspace: NewWorkspace

    async def stop(self) -> None:
        await asyncio.to_thread(self.pg.stop)  # every pooled connection dies here

    async def start(self) -> None:
        """Again, on the same port and data."""
        await asyncio.to_thread(self.pg.start)

    async def restart(self, pause: float = 1.0) -> None:
        port = self.pg.port
        await self.stop()
        await asyncio.sleep(pause)
        self.pg.port = port
        await self.start()


@contextlib.asynccontextmanager
async def own_postgres(folder: Path, app_name: str) -> AsyncIterator[OwnPostgres]:
    """Started in `folder`, migrated, with one workspace (its owner's password: PASSWORD); stopped after."""
    os.chmod(folder, 0o755)  # the unprivileged Postgres user must reach its data dir
    pg = EmbeddedPostgres(folder / "postgres")
    url = await asyncio.to_thread(pg.start)
    try:
        await migrate(url)
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
        slug = app_name.lower().replace(" ", "-")
        ws = await create_workspace(pool, app_name=app_name, email=f"owner@{slug}.test", password=PASSWORD,
                                    owner_name="Olive Owner")
        await pool.close()
        yield OwnPostgres(pg, url, ws)
    finally:
        pg.stop()
