"""SDK identity: which app and which end user a request or socket speaks for.

An API key names the app; the caller names the user by the app's own `user_id` (external id)
or an SDK-generated `anonymous_id`. When the app requires identity verification, a publishable
key must come with `user_hash` = HMAC-SHA256(identity_secret, user_id) in hex, so one user
cannot pose as another; a secret (server) key may act for any user of its app, within its scopes
(RBAC permission names: conversations.read, conversations.reply, users.read, users.write).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from server.conversations.models import EndUser
from server.errors import Unauthorized, ValidationFailed
from server.tenancy.key_checks import KeyVerifier, require_scope
from server.tenancy.key_usage import KeyUsage
from server.users import store as users

APP_CACHE_TTL = 2.0  # seconds: a settings change (verification on/off, new secret) applies this fast


@dataclass(frozen=True)
class AppIdentity:
    identity_verification_required: bool
    identity_secret: str


@dataclass(frozen=True)
class SdkCaller:
    app_id: UUID
    key_id: UUID
    key_kind: str  # "publishable" | "secret"
    external_id: str | None
    anonymous_id: str | None
    scopes: tuple[str, ...] | None = None  # a secret key's scopes (None: a publishable key)
    key_expires_at: datetime | None = None  # the end of the key's rotation grace


def user_hash(identity_secret: str, external_id: str) -> str:
    return hmac.new(identity_secret.encode(), external_id.encode(), hashlib.sha256).hexdigest()


class SdkIdentity:
    """Resolves (key, user id, hash) to an SdkCaller; app identity settings cached briefly."""

    def __init__(self, pool: asyncpg.Pool, keys: KeyVerifier, usage: KeyUsage | None = None) -> None:
        self.pool = pool
        self.keys = keys
        self.usage = usage
        self._apps: dict[UUID, tuple[float, AppIdentity]] = {}

    async def _app(self, app_id: UUID) -> AppIdentity:
        now = time.monotonic()
        hit = self._apps.get(app_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        row = await self.pool.fetchrow(
            "SELECT identity_verification_required, identity_secret FROM apps WHERE id = $1", app_id)
        if row is None:
            raise Unauthorized("unknown or revoked API key", code="invalid_api_key")
        app = AppIdentity(row["identity_verification_required"], row["identity_secret"])
        self._apps[app_id] = (now + APP_CACHE_TTL, app)
        return app

    async def authenticate(self, api_key: Any, *, external_id: Any, anonymous_id: Any,
                           presented_hash: Any, scope: str, address: str | None = None) -> SdkCaller:
        """`scope`: the permission the call needs when made with a secret key (403 outside its scopes)."""
        if not isinstance(api_key, str) or not api_key:
            raise Unauthorized("an API key is required (X-API-Key header or api_key in the handshake)",
                               code="missing_api_key")
        key = await self.keys.verify(api_key)
        if self.usage is not None:
            self.usage.seen(key.id, address)
        require_scope(key, scope)
        for name, value in (("user_id", external_id), ("anonymous_id", anonymous_id)):
            if value is not None and (not isinstance(value, str) or not 1 <= len(value) <= 255):
                raise ValidationFailed(f"{name} must be a string of 1 to 255 characters",
                                       {"path": f"$.{name}"}, code="invalid_user_id")
        if external_id is None and anonymous_id is None:
            raise Unauthorized("a user_id or anonymous_id is required", code="missing_user_id")
        if external_id is not None and key.kind != "secret":
            app = await self._app(key.app_id)
            if app.identity_verification_required:
                expected = user_hash(app.identity_secret, external_id)
                if not isinstance(presented_hash, str) or not hmac.compare_digest(
                        expected.encode(), presented_hash.strip().lower().encode()):
                    raise Unauthorized("user_hash does not match user_id", code="invalid_user_hash")
        return SdkCaller(key.app_id, key.id, key.kind, external_id, anonymous_id, key.scopes,
                         key.expires_at)

    async def user(self, caller: SdkCaller) -> EndUser:
        """The caller's end user, created on first sight (every SDK call identifies implicitly)."""
        found = await users.find(self.pool, caller.app_id, external_id=caller.external_id,
                                 anonymous_id=caller.anonymous_id)
        if found is not None:
            return found
        return await users.identify(self.pool, caller.app_id, external_id=caller.external_id,
                                    anonymous_id=caller.anonymous_id)
