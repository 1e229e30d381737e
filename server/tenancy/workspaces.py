"""Creating a workspace (app) with its owner admin and first pair of API keys."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from uuid import UUID

import asyncpg

from server.auth.passwords import hash_password
from server.errors import Conflict
from server.events.record import record
from server.tenancy import api_keys


@dataclass(frozen=True)
class NewWorkspace:
    app_id: UUID
    app_name: str
    admin_id: UUID
    email: str
    publishable_key: str
    secret_key: str
    identity_secret: str


async def create_workspace(pool: asyncpg.Pool, *, app_name: str, email: str, password: str,
                           owner_name: str = "") -> NewWorkspace:
    identity_secret = secrets.token_urlsafe(32)
    pw_hash = hash_password(password)
    async with pool.acquire() as conn, conn.transaction():
        taken = await conn.fetchval("SELECT 1 FROM admins WHERE lower(email) = lower($1)", email)
        if taken:
            raise Conflict("an account with this email already exists", code="email_taken")
        app_id = await conn.fetchval(
            "INSERT INTO apps (name, identity_secret) VALUES ($1, $2) RETURNING id", app_name, identity_secret)
        admin_id = await conn.fetchval(
            """INSERT INTO admins (app_id, email, name, password_hash, role)
               VALUES ($1, $2, $3, $4, 'owner') RETURNING id""",
            app_id, email, owner_name, pw_hash)
        await record(conn, "workspace.created", app_id, {"workspace": {"id": str(app_id), "name": app_name},
                                                          "owner": {"id": str(admin_id), "email": email}},
                     admin_id=admin_id)
        pk, _ = await api_keys.create(conn, app_id, "publishable", "Default SDK key", created_by=admin_id)
        owner_permissions = await conn.fetchval("SELECT permissions FROM roles WHERE name = 'owner'")
        sk, _ = await api_keys.create(conn, app_id, "secret", "Default server key", scopes=owner_permissions,
                                      created_by=admin_id)
    return NewWorkspace(app_id, app_name, admin_id, email, pk, sk, identity_secret)


async def workspace_count(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM apps"))
