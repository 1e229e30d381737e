"""API keys: generated once, stored only as a hash, found by the hash of the presented key.

Format: `rhq_pk_` (publishable) or `rhq_sk_` (secret) + 32 random base62 characters + a 6-character
base62 CRC32 of everything before it, so a mistyped key is refused before any lookup. Keys made
before the checksum (`rhq_xx_` + 43 URL-safe characters) are looked up as they are. A legacy
plaintext key (the `api_key` column of pre-hash installs) is hashed on its first use and its
plaintext dropped; with LEGACY_AUTH=off a key not of the `rhq_pk_`/`rhq_sk_` kind is refused
without any lookup (hashed or not).

Secret keys carry scopes: the RBAC permissions (roles table) their calls may use.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import string
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from uuid import UUID

import asyncpg

from server.errors import Conflict, NotFound

KeyKind = Literal["publishable", "secret"]
KeyStatus = Literal["active", "expiring", "expired", "revoked"]
_PREFIX = {"publishable": "rhq_pk_", "secret": "rhq_sk_"}
PREFIX_LEN = 15  # "rhq_pk_" + 8 random characters: enough to recognise the key, useless to an attacker
MAX_KEY_LEN = 200
_B62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
RANDOM_LEN = 32  # ~190 bits
CHECK_LEN = 6  # 62**6 > 2**32
_CHECKSUMMED = re.compile(rf"^rhq_(?:pk|sk)_[0-9A-Za-z]{{{RANDOM_LEN + CHECK_LEN}}}$")
MAX_GRACE_S = 7 * 24 * 3600
DEFAULT_GRACE_S = 24 * 3600


@dataclass(frozen=True)
class ApiKey:
    id: UUID
    app_id: UUID
    kind: KeyKind
    name: str
    prefix: str
    scopes: tuple[str, ...] | None  # secret keys only
    created_by: UUID | None
    created_at: datetime
    last_used_at: datetime | None
    last_used_ip: str | None
    expires_at: datetime | None
    revoked_at: datetime | None
    rotated_from: UUID | None

    def status(self, now: datetime) -> KeyStatus:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None:
            return "expired" if self.expires_at <= now else "expiring"
        return "active"

    def usable(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


@dataclass(frozen=True)
class ListedKey:
    key: ApiKey
    creator_email: str | None
    creator_name: str | None


def hash_key(key: str) -> str:
    # Keys are 190-bit random: a fast hash is enough, no salt/stretching needed.
    return hashlib.sha256(key.encode()).hexdigest()


def _base62(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, r = divmod(n, 62)
        out.append(_B62[r])
    return "".join(reversed(out))


def checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), CHECK_LEN)


def new_key(kind: KeyKind) -> str:
    body = _PREFIX[kind] + "".join(secrets.choice(_B62) for _ in range(RANDOM_LEN))
    return body + checksum(body)


KeyShape = Literal["checksummed", "unchecked", "bad_checksum", "other"]


def shape(presented: str) -> KeyShape:
    """What the key looks like, without any lookup: `bad_checksum` is a typo (refuse it);
    `unchecked` a key made before checksums; `other` can only be a legacy plaintext key."""
    if _CHECKSUMMED.match(presented):
        cut = len(presented) - CHECK_LEN
        return "checksummed" if checksum(presented[:cut]) == presented[cut:] else "bad_checksum"
    if presented.startswith(("rhq_pk_", "rhq_sk_")):
        return "unchecked"
    return "other"


_COLUMNS = """id, app_id, kind, name, prefix, scopes, created_by, created_at, last_used_at, last_used_ip,
              expires_at, revoked_at, rotated_from"""


def _key(row: asyncpg.Record) -> ApiKey:
    scopes = row["scopes"]
    return ApiKey(id=row["id"], app_id=row["app_id"], kind=row["kind"], name=row["name"], prefix=row["prefix"],
                  scopes=tuple(scopes) if scopes is not None else None, created_by=row["created_by"],
                  created_at=row["created_at"], last_used_at=row["last_used_at"], last_used_ip=row["last_used_ip"],
                  expires_at=row["expires_at"], revoked_at=row["revoked_at"], rotated_from=row["rotated_from"])


# The domain event of a key change, in the statement of the change (CTE `k`: the changed key).
_RECORD_KEY_EVENT = """INSERT INTO event_rows (type, app_id, admin_id, data)
    SELECT '{type}', k.app_id, {admin}, jsonb_build_object('api_key', jsonb_build_object(
        'id', k.id, 'kind', k.kind, 'name', k.name, 'prefix', k.prefix, 'scopes', k.scopes,
        'expires_at', k.expires_at, 'revoked_at', k.revoked_at){extra}) FROM k RETURNING 1"""


def _event(type: str, admin: str = "NULL", extra: str = "") -> str:
    return _RECORD_KEY_EVENT.format(type=type, admin=admin, extra=extra)


async def create(conn: asyncpg.Connection | asyncpg.Pool, app_id: UUID, kind: KeyKind, name: str = "", *,
                 scopes: Iterable[str] | None = None, created_by: UUID | None = None,
                 expires_at: datetime | None = None) -> tuple[str, ApiKey]:
    """Returns the plaintext key (shown once) and its stored record."""
    key = new_key(kind)
    row = await conn.fetchrow(
        f"""WITH k AS (INSERT INTO api_keys (app_id, kind, name, prefix, api_key_hash, scopes, created_by,
                                             expires_at)
                       VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {_COLUMNS}),
                 ev AS ({_event("api_key.created", "$7::uuid")})
            SELECT * FROM k""",
        app_id, kind, name, key[:PREFIX_LEN], hash_key(key),
        sorted(set(scopes)) if scopes is not None else None, created_by, expires_at)
    return key, _key(row)


async def find(conn: asyncpg.Connection | asyncpg.Pool, presented: str, *, legacy: bool) -> ApiKey | None:
    """The unrevoked key whose hash is the presented key's (expired ones too: the caller says why it
    refuses). With `legacy`, a plaintext legacy row matching the key is hashed now, its plaintext
    dropped (one statement, with its event)."""
    digest = hash_key(presented)
    if not legacy:
        row = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM api_keys WHERE api_key_hash = $1 AND revoked_at IS NULL", digest)
        return _key(row) if row else None
    row = await conn.fetchrow(
        f"""SELECT {_COLUMNS}, api_key IS NOT NULL AS legacy FROM api_keys
            WHERE (api_key_hash = $1 OR api_key = $2) AND revoked_at IS NULL
            ORDER BY api_key IS NULL DESC LIMIT 1""", digest, presented)
    if row is None:
        return None
    if not row["legacy"]:
        return _key(row)
    migrated = await conn.fetchrow(
        f"""WITH k AS (UPDATE api_keys SET api_key_hash = $2, prefix = left($3, {PREFIX_LEN}), api_key = NULL
                       WHERE id = $1 AND api_key = $3 RETURNING {_COLUMNS}),
                 ev AS ({_event("api_key.updated", extra=", 'changes', jsonb_build_array('hashed')")})
            SELECT * FROM k""", row["id"], digest, presented)
    return _key(migrated) if migrated else _key(row)


async def touch(conn: asyncpg.Connection | asyncpg.Pool, seen: dict[UUID, str | None]) -> None:
    """Record that these keys were used now, from these addresses (server/tenancy/key_usage.py
    batches the calls). Coarse: at most one write a minute per key, whichever replica saw it."""
    await conn.execute(
        """UPDATE api_keys k SET last_used_at = now(), last_used_ip = coalesce(u.ip, k.last_used_ip)
           FROM unnest($1::uuid[], $2::text[]) AS u(id, ip)
           WHERE k.id = u.id AND (k.last_used_at IS NULL OR k.last_used_at < now() - interval '1 minute')""",
        list(seen), [v[:64] if v else None for v in seen.values()])


async def list_for_app(conn: asyncpg.Connection | asyncpg.Pool, app_id: UUID) -> list[ListedKey]:
    rows = await conn.fetch(
        f"""SELECT k.*, a.email AS creator_email, a.name AS creator_name
            FROM (SELECT {_COLUMNS} FROM api_keys WHERE app_id = $1) k LEFT JOIN admins a ON a.id = k.created_by
            ORDER BY k.created_at, k.id""", app_id)
    return [ListedKey(_key(r), r["creator_email"], r["creator_name"]) for r in rows]


async def get(conn: asyncpg.Connection | asyncpg.Pool, app_id: UUID, key_id: UUID) -> ApiKey | None:
    """One of the app's keys (revoked or not); another app's key id is None, like an unknown one."""
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM api_keys WHERE id = $1 AND app_id = $2", key_id, app_id)
    return _key(row) if row else None


async def by_ids(conn: asyncpg.Connection | asyncpg.Pool, key_ids: list[UUID]) -> dict[UUID, ApiKey]:
    rows = await conn.fetch(f"SELECT {_COLUMNS} FROM api_keys WHERE id = ANY($1::uuid[])", key_ids)
    return {r["id"]: _key(r) for r in rows}


async def _locked(conn: asyncpg.Connection, app_id: UUID, key_id: UUID) -> asyncpg.Record:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS}, expires_at <= now() AS expired FROM api_keys WHERE id = $1 AND app_id = $2 FOR UPDATE",
        key_id, app_id)
    if row is None:
        raise NotFound("no such API key", code="api_key_not_found")
    if row["revoked_at"] is not None:
        raise Conflict("this API key is already revoked", {"revoked_at": row["revoked_at"].isoformat()},
                       code="api_key_revoked")
    return row


async def revoke(pool: asyncpg.Pool, app_id: UUID, key_id: UUID, admin_id: UUID | None) -> ApiKey:
    """Revoke now (a key in its rotation grace too: that ends the grace). A second revoke is a 409."""
    async with pool.acquire() as conn, conn.transaction():
        await _locked(conn, app_id, key_id)
        row = await conn.fetchrow(
            f"""WITH k AS (UPDATE api_keys SET revoked_at = now() WHERE id = $1 RETURNING {_COLUMNS}),
                     ev AS ({_event("api_key.revoked", "$2::uuid")})
                SELECT * FROM k""", key_id, admin_id)
    return _key(row)


async def update(pool: asyncpg.Pool, app_id: UUID, key_id: UUID, admin_id: UUID | None, *,
                 name: str | None, scopes: list[str] | None) -> ApiKey:
    """Rename and/or re-scope a live key; scopes only on secret keys (checked by the caller)."""
    async with pool.acquire() as conn, conn.transaction():
        old = await _locked(conn, app_id, key_id)
        if old["expired"]:
            raise Conflict("this API key has expired", code="api_key_expired")
        new_scopes = sorted(set(scopes)) if scopes is not None else old["scopes"]
        changes = [f for f, changed in (("name", name is not None and name != old["name"]),
                                        ("scopes", scopes is not None and new_scopes != list(old["scopes"] or [])))
                   if changed]
        if not changes:
            return _key(old)
        row = await conn.fetchrow(
            f"""WITH k AS (UPDATE api_keys SET name = coalesce($2, name), scopes = $3 WHERE id = $1
                           RETURNING {_COLUMNS}),
                     ev AS ({_event("api_key.updated", "$4::uuid", ", 'changes', to_jsonb($5::text[])")})
                SELECT * FROM k""", key_id, name, new_scopes, admin_id, changes)
    return _key(row)


async def rotate(pool: asyncpg.Pool, app_id: UUID, key_id: UUID, admin_id: UUID | None,
                 grace_s: int) -> tuple[str, ApiKey, ApiKey]:
    """A new key like the old one (kind, name, scopes); the old one works `grace_s` more seconds
    (0: it stops now). Returns (the new plaintext, shown once; the new key; the old key)."""
    async with pool.acquire() as conn, conn.transaction():
        old = await _locked(conn, app_id, key_id)
        if await conn.fetchval("SELECT 1 FROM api_keys WHERE rotated_from = $1", key_id):
            raise Conflict("this API key was already rotated: rotate its replacement", code="api_key_rotated")
        if old["expired"]:
            raise Conflict("this API key has expired", code="api_key_expired")
        plaintext = new_key(old["kind"])
        new = await conn.fetchrow(
            f"""INSERT INTO api_keys (app_id, kind, name, prefix, api_key_hash, scopes, created_by, rotated_from)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {_COLUMNS}""",
            app_id, old["kind"], old["name"], plaintext[:PREFIX_LEN], hash_key(plaintext), old["scopes"],
            admin_id, key_id)
        prev = await conn.fetchrow(
            f"""WITH k AS (UPDATE api_keys SET expires_at = least(coalesce(expires_at, 'infinity'),
                                                                now() + make_interval(secs => $2))
                           WHERE id = $1 RETURNING {_COLUMNS}),
                     ev AS ({_event("api_key.rotated", "$3::uuid", ", 'replaced_by', jsonb_build_object("
                                    "'id', $4::uuid, 'prefix', $5::text)")})
                SELECT * FROM k""", key_id, float(grace_s), admin_id, new["id"], new["prefix"])
    return plaintext, _key(new), _key(prev)
