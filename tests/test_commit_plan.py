"""The group commit's plan stays an index probe per message however small the tables were when
Postgres settled on its generic plan (it did a full scan of `messages` per commit, so commits
slowed down as a new installation filled up)."""

from __future__ import annotations

import asyncpg

from server.conversations.commit import _COMMIT_SQL


async def generic_plan(conn: asyncpg.Connection, sql: str) -> str:
    # asyncpg binds a value to each placeholder even here; EXPLAIN (GENERIC_PLAN) ignores them
    return "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN (GENERIC_PLAN) {sql}", None, None, None))


async def test_the_generic_commit_plan_probes_messages_by_index_on_an_empty_database(db: asyncpg.Pool) -> None:
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM messages") == 0
        plan = await generic_plan(conn, _COMMIT_SQL)
    assert "Seq Scan on messages" not in plan, plan
    assert "messages_conversation_id_client_id_key" in plan, plan
