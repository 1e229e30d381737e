"""The asyncpg pool, with JSON codecs so jsonb columns come back as Python objects."""

from __future__ import annotations

import asyncpg
import msgspec

from server.settings import Settings

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode


async def init_connection(conn: asyncpg.Connection) -> None:
    for typ in ("json", "jsonb"):
        await conn.set_type_codec(typ, encoder=lambda v: _encode(v).decode(), decoder=_decode,
                                  schema="pg_catalog")


async def create_pool(settings: Settings, dsn: str, *, application_name: str = "replyhq",
                      generic_plans: bool = False) -> asyncpg.Pool:
    """`application_name` names the pool's backends in `pg_stat_activity` (an operator tells the
    replicas' connections from their event workers'; the bench splits Postgres's CPU by it).
    `generic_plans`: every prepared statement runs on its generic plan (`plan_cache_mode`), never
    planned again for its parameters: for a pool whose statements are written so that plan is
    right whatever the parameters (the event workers': each a range of the primary key)."""
    server_settings = {"application_name": application_name}
    if generic_plans:
        server_settings["plan_cache_mode"] = "force_generic_plan"
    pool = await asyncpg.create_pool(dsn, min_size=settings.db_pool_min, max_size=settings.db_pool_max,
                                     init=init_connection, command_timeout=30, server_settings=server_settings,
                                     # Re-prepared every 30 s, statements get plans for the
                                     # tables as they are now, not as they were at start-up.
                                     max_cached_statement_lifetime=30)
    assert pool is not None
    return pool
