"""Opaque refresh tokens: stored as sha256, rotated on every use, a reused token kills its family."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from uuid import UUID

import asyncpg

from server.errors import Unauthorized

_PREFIX = "rhq_rt_"


@dataclass(frozen=True)
class RefreshGrant:
    """A refresh token was accepted: for this admin, with this replacement token."""

    admin_id: UUID
    app_id: UUID
    token: str
    family_id: UUID  # the session: access tokens name it, and die with it


def _hash(token: str) -> str:
    # 256-bit random tokens: a fast unsalted hash is enough (same reasoning as API keys).
    return hashlib.sha256(token.encode()).hexdigest()


async def issue(conn: asyncpg.Pool | asyncpg.Connection, admin_id: UUID, app_id: UUID, ttl: int,
                family_id: UUID | None = None) -> tuple[str, UUID]:
    """A new token (plaintext returned once) in `family_id`, or in a new family for a fresh login."""
    token = _PREFIX + secrets.token_urlsafe(32)
    token_id = await conn.fetchval(
        """INSERT INTO admin_refresh_tokens (admin_id, app_id, family_id, token_hash, expires_at)
           VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5)) RETURNING id""",
        admin_id, app_id, family_id or uuid.uuid4(), _hash(token), float(ttl))
    return token, token_id


async def rotate(pool: asyncpg.Pool, presented: str, ttl: int) -> RefreshGrant:
    """Swap `presented` for a new token of its family; raise Unauthorized if it may not be used."""
    reused = False
    async with pool.acquire() as conn, conn.transaction():
        # FOR UPDATE: two refreshes racing with one token serialise; the loser counts as reuse.
        row = await conn.fetchrow(
            """SELECT t.id, t.admin_id, t.app_id, t.family_id, t.revoked_at, t.replaced_by,
                      t.expires_at < now() AS expired, a.disabled_at IS NOT NULL AS disabled
               FROM admin_refresh_tokens t JOIN admins a ON a.id = t.admin_id
               WHERE t.token_hash = $1 FOR UPDATE OF t""", _hash(presented))
        if row is None:
            raise Unauthorized("unknown refresh token", code="invalid_refresh_token")
        if row["replaced_by"] is not None:
            # Already rotated once: whoever holds it now is not the legitimate client, or both are.
            await conn.execute(
                "UPDATE admin_refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL",
                row["family_id"])
            reused = True
        elif row["revoked_at"] is not None or row["disabled"]:
            raise Unauthorized("refresh token revoked", code="invalid_refresh_token")
        elif row["expired"]:
            raise Unauthorized("refresh token expired", code="refresh_token_expired")
        else:
            token, new_id = await issue(conn, row["admin_id"], row["app_id"], ttl, row["family_id"])
            await conn.execute(
                "UPDATE admin_refresh_tokens SET revoked_at = now(), replaced_by = $2 WHERE id = $1",
                row["id"], new_id)
            return RefreshGrant(row["admin_id"], row["app_id"], token, row["family_id"])
    # Raised after the commit so the family revocation sticks.
    assert reused
    raise Unauthorized("refresh token was already used; this session has been revoked",
                       code="refresh_token_reused")


async def revoke_family_of(conn: asyncpg.Pool | asyncpg.Connection, presented: str) -> bool:
    """Logout: end the session `presented` belongs to. False when the token is unknown."""
    family = await conn.fetchval("SELECT family_id FROM admin_refresh_tokens WHERE token_hash = $1",
                                 _hash(presented))
    if family is None:
        return False
    await conn.execute(
        "UPDATE admin_refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL", family)
    return True


async def revoke_all_for(conn: asyncpg.Pool | asyncpg.Connection, admin_id: UUID) -> None:
    """A removed admin keeps no session anywhere."""
    await conn.execute(
        "UPDATE admin_refresh_tokens SET revoked_at = now() WHERE admin_id = $1 AND revoked_at IS NULL", admin_id)
