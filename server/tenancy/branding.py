"""The messenger's branding of an app: colour, launcher position, greeting, team intro and logo.

Stored in `app_branding` (a row appears with the first change; until then the defaults apply) and
the logo's bytes in `app_logos`, addressed by their SHA-256 so the public URL changes with the
content. A change records `branding.updated` in its transaction.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import asyncpg

from server.errors import NotFound
from server.events.record import record
from server.tenancy.images import ImageInfo

DEFAULT_COLOR = "#1F6FEB"
LOGO_PATH = "/v1/app/logo/"
LauncherPosition = Literal["left", "right"]


@dataclass(frozen=True)
class Logo:
    sha256: str
    content_type: str
    width: int
    height: int

    @property
    def url(self) -> str:
        """Relative to the API's base URL (the same on every replica, so the config's ETag is too)."""
        return LOGO_PATH + self.sha256


@dataclass(frozen=True)
class Branding:
    app_id: UUID
    app_name: str
    color: str
    launcher_position: LauncherPosition
    greeting: str
    team_intro: str
    logo: Logo | None
    updated_at: datetime | None


_SELECT = """SELECT a.id AS app_id, a.name AS app_name, coalesce(b.color, $2) AS color,
                    coalesce(b.launcher_position, 'right') AS launcher_position,
                    coalesce(b.greeting, '') AS greeting, coalesce(b.team_intro, '') AS team_intro,
                    b.updated_at, l.sha256, l.content_type, l.width, l.height
             FROM apps a LEFT JOIN app_branding b ON b.app_id = a.id
                         LEFT JOIN app_logos l ON l.app_id = a.id AND l.sha256 = b.logo_sha256
             WHERE a.id = $1"""


def _branding(row: asyncpg.Record) -> Branding:
    logo = Logo(row["sha256"], row["content_type"], row["width"], row["height"]) if row["sha256"] else None
    return Branding(row["app_id"], row["app_name"], row["color"], row["launcher_position"], row["greeting"],
                    row["team_intro"], logo, row["updated_at"])


def event_data(b: Branding) -> dict[str, Any]:
    return {"color": b.color, "launcher_position": b.launcher_position, "greeting": b.greeting,
            "team_intro": b.team_intro, "logo_url": b.logo.url if b.logo else None}


async def get(conn: asyncpg.Pool | asyncpg.Connection, app_id: UUID) -> Branding:
    row = await conn.fetchrow(_SELECT, app_id, DEFAULT_COLOR)
    if row is None:
        raise NotFound("no such app")
    return _branding(row)


_UNCHANGED = object()


async def update(pool: asyncpg.Pool, app_id: UUID, admin_id: UUID | None, *, color: str | None = None,
                 launcher_position: str | None = None, greeting: str | None = None,
                 team_intro: str | None = None, logo: tuple[bytes, ImageInfo] | object | None = _UNCHANGED,
                 ) -> Branding:
    """Change the fields given (None keeps them; `logo` None removes it, a (bytes, info) pair replaces it).
    The replaced logo's bytes are deleted: its URL answers 404 from then on."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("INSERT INTO app_branding (app_id) VALUES ($1) ON CONFLICT (app_id) DO NOTHING", app_id)
        await conn.execute("SELECT 1 FROM app_branding WHERE app_id = $1 FOR UPDATE", app_id)
        old_row = await conn.fetchrow(_SELECT, app_id, DEFAULT_COLOR)
        if old_row is None:
            raise NotFound("no such app")
        old = _branding(old_row)
        sha: str | None = old.logo.sha256 if old.logo else None
        if logo is not _UNCHANGED:
            if logo is None:
                sha = None
            else:
                assert isinstance(logo, tuple)
                data: bytes = logo[0]
                info: ImageInfo = logo[1]
                sha = hashlib.sha256(data).hexdigest()
                await conn.execute(
                    """INSERT INTO app_logos (sha256, app_id, content_type, width, height, bytes)
                       VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (sha256, app_id) DO NOTHING""",
                    sha, app_id, info.content_type, info.width, info.height, data)
        await conn.execute(
            """UPDATE app_branding SET color = coalesce($2, color),
                      launcher_position = coalesce($3, launcher_position),
                      greeting = coalesce($4, greeting), team_intro = coalesce($5, team_intro),
                      logo_sha256 = $6, updated_at = now()
               WHERE app_id = $1""", app_id, color, launcher_position, greeting, team_intro, sha)
        await conn.execute("DELETE FROM app_logos WHERE app_id = $1 AND sha256 IS DISTINCT FROM $2", app_id, sha)
        new = _branding(await conn.fetchrow(_SELECT, app_id, DEFAULT_COLOR))
        before, after = event_data(old), event_data(new)
        changes = [k.removesuffix("_url") for k in after if before[k] != after[k]]
        if changes:
            await record(conn, "branding.updated", app_id, {"branding": after, "changes": changes},
                         admin_id=admin_id)
        else:  # nothing changed: roll back (no event, updated_at kept)
            raise _NoChange(old)
    return new


class _NoChange(Exception):
    def __init__(self, branding: Branding) -> None:
        self.branding = branding


async def apply(pool: asyncpg.Pool, app_id: UUID, admin_id: UUID | None, **fields: Any) -> Branding:
    """update(), where a change to nothing rolls back and answers what is stored."""
    try:
        return await update(pool, app_id, admin_id, **fields)
    except _NoChange as same:
        return same.branding


async def logo_bytes(conn: asyncpg.Pool | asyncpg.Connection, sha256: str) -> tuple[str, bytes] | None:
    row = await conn.fetchrow("SELECT content_type, bytes FROM app_logos WHERE sha256 = $1 LIMIT 1", sha256)
    return (row["content_type"], bytes(row["bytes"])) if row else None
