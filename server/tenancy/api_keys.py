"""API keys: generated once, stored only as a hash; lookup by short prefix, verify by hash."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from uuid import UUID

import asyncpg

KeyKind = Literal["publishable", "secret"]
_PREFIX = {"publishable": "rhq_pk_", "secret": "rhq_sk_"}
PREFIX_LEN = 15  # "rhq_pk_" + 8 random characters: enough to find the row, useless to an attacker


@dataclass(frozen=True)
class ApiKey:
    id: UUID
    app_id: UUID
    kind: KeyKind
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def hash_key(key: str) -> str:
    # Keys are 256-bit random: a fast hash is enough, no salt/stretching needed.
    return hashlib.sha256(key.encode()).hexdigest()


def new_key(kind: KeyKind) -> str:
    return _PREFIX[kind] + secrets.token_urlsafe(32)


_COLUMNS = "id, app_id, kind, name, prefix, created_at, last_used_at, revoked_at"
# The domain event of a key change, in the statement of the change (CTE `k`: the changed key).
_RECORD_KEY_EVENT = """INSERT INTO domain_events (type, app_id, data)
    SELECT '{type}', k.app_id, jsonb_build_object('api_key', jsonb_build_object(
        'id', k.id, 'kind', k.kind, 'name', k.name, 'prefix', k.prefix)) FROM k RETURNING 1"""


async def create(conn: asyncpg.Connection | asyncpg.Pool, app_id: UUID, kind: KeyKind,
                 name: str = "") -> tuple[str, ApiKey]:
    """Returns the plaintext key (shown once) and its stored record."""
    key = new_key(kind)
    row = await conn.fetchrow(
        f"""WITH k AS (INSERT INTO api_keys (app_id, kind, name, prefix, api_key_hash)
                       VALUES ($1, $2, $3, $4, $5) RETURNING {_COLUMNS}),
                 ev AS ({_RECORD_KEY_EVENT.format(type="api_key.created")})
            SELECT * FROM k""",
        app_id, kind, name, key[:PREFIX_LEN], hash_key(key))
    return key, ApiKey(**dict(row))


async def verify(conn: asyncpg.Connection | asyncpg.Pool, presented: str) -> ApiKey | None:
    """The live key matching `presented`, or None. Legacy plaintext rows still validate."""
    if not presented or len(presented) > 200:
        return None
    digest = hash_key(presented)
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS}, api_key_hash, api_key FROM api_keys
            WHERE (prefix = $1 OR api_key = $2) AND revoked_at IS NULL""",
        presented[:PREFIX_LEN], presented)
    for row in rows:
        legacy = row["api_key"]
        if hmac.compare_digest(row["api_key_hash"], digest) or (
                legacy is not None and hmac.compare_digest(legacy, presented)):
            data = dict(row)
            data.pop("api_key_hash")
            data.pop("api_key")
            return ApiKey(**data)
    return None


async def touch(conn: asyncpg.Connection | asyncpg.Pool, key_ids: list[UUID]) -> None:
    """Record that these keys were used now (server/tenancy/key_usage.py batches the calls)."""
    # Coarse: at most one write a minute per key, whichever replica saw it.
    await conn.execute(
        """UPDATE api_keys SET last_used_at = now()
           WHERE id = ANY($1::uuid[])
             AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')""",
        key_ids)


async def list_for_app(conn: asyncpg.Connection | asyncpg.Pool, app_id: UUID) -> list[ApiKey]:
    rows = await conn.fetch(f"SELECT {_COLUMNS} FROM api_keys WHERE app_id = $1 ORDER BY created_at",
                            app_id)
    return [ApiKey(**dict(r)) for r in rows]


async def revoke(conn: asyncpg.Connection | asyncpg.Pool, app_id: UUID, key_id: UUID) -> bool:
    revoked = await conn.fetchval(
        f"""WITH k AS (UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND app_id = $2 AND revoked_at IS NULL
                       RETURNING {_COLUMNS}),
                 ev AS ({_RECORD_KEY_EVENT.format(type="api_key.revoked")})
            SELECT count(*) FROM k""",
        key_id, app_id)
    return bool(revoked)


async def get(conn: asyncpg.Connection | asyncpg.Pool, app_id: UUID, key_id: UUID) -> ApiKey | None:
    """One of the app's keys (revoked or not); another app's key id is None, like an unknown one."""
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM api_keys WHERE id = $1 AND app_id = $2", key_id, app_id)
    return ApiKey(**dict(row)) if row else None
