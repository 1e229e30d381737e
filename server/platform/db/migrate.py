"""Ordered plain-SQL migrations, recorded in schema_migrations, serialised by an advisory lock."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

log = logging.getLogger("replyhq.migrate")
# Each capability keeps the migrations of the tables it owns in its own `migrations/` folder;
# version numbers are global, so the union still applies in one order.
SERVER_DIR = Path(__file__).resolve().parents[2]
_LOCK_KEY = 0x5245504C59  # "REPLY": one lock id for every replica of every version
_NAME = re.compile(r"^(\d{3,})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(root: Path = SERVER_DIR) -> list[Migration]:
    found = []
    for path in sorted(root.glob("*/migrations/*.sql"), key=lambda p: p.name):
        m = _NAME.match(path.name)
        if not m:
            raise ValueError(f"migration file name must look like 001_name.sql: {path.name}")
        found.append(Migration(int(m.group(1)), m.group(2), path.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError("two migrations share a version number")
    return found


async def migrate(dsn: str, root: Path = SERVER_DIR) -> list[int]:
    """Apply pending migrations; returns the versions applied by this call."""
    conn = await asyncpg.connect(dsn)
    try:
        # Session lock: a second replica waits here, then sees everything applied.
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        try:
            await conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       version integer PRIMARY KEY,
                       name text NOT NULL,
                       checksum text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
            applied = {r["version"]: r["checksum"] for r in rows}
            done: list[int] = []
            for mig in discover(root):
                if mig.version in applied:
                    if applied[mig.version] != mig.checksum:
                        log.warning("migration %03d_%s changed after it was applied", mig.version, mig.name)
                    continue
                async with conn.transaction():
                    await conn.execute(mig.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                        mig.version, mig.name, mig.checksum)
                log.info("applied migration %03d_%s", mig.version, mig.name)
                done.append(mig.version)
            return done
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    finally:
        await conn.close()
