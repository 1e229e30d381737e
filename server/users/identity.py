"""SDK identity: which app and which end user a request or socket speaks for.

An API key names the app; the caller names the user by the app's own `user_id` (external id)
or an SDK-generated `anonymous_id`. A publishable key naming a `user_id` is checked against the
app's identity verification mode: `user_hash` = HMAC-SHA256(identity_secret, user_id) in hex, so one
user cannot pose as another. `off` ignores it; `log_only` accepts a missing or wrong hash but logs it
(at most once a minute per app) and counts it in replyhq_identity_unverified_total; `enforce` refuses
it (401 invalid_user_hash). For a while after a rotation the previous secret verifies too. A secret
(server) key may act for any user of its app, within its scopes (RBAC permission names:
conversations.read, conversations.reply, users.read, users.write).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import asyncpg

from server.conversations.models import EndUser
from server.errors import Unauthorized, ValidationFailed
from server.tenancy.api_keys import ApiKey
from server.tenancy.key_checks import KeyVerifier, require_scope
from server.tenancy.key_usage import KeyUsage
from server.users import store as users

if TYPE_CHECKING:
    from server.platform.metrics import Metrics

log = logging.getLogger("replyhq.identity")
UNVERIFIED_LOG_EVERY = 60.0  # seconds: log_only logs an app's unverified users at most this often

APP_CACHE_TTL = 2.0  # seconds: a settings change (verification on/off, new secret) applies this fast


@dataclass(frozen=True)
class AppIdentity:
    mode: str  # off | log_only | enforce
    identity_secret: str
    previous_secret: str | None = None  # still verifies until previous_until (a rotation's grace)
    previous_until: datetime | None = None

    def verifies(self, external_id: str, presented: Any) -> bool:
        if not isinstance(presented, str):
            return False
        given = presented.strip().lower().encode()
        if hmac.compare_digest(user_hash(self.identity_secret, external_id).encode(), given):
            return True
        return (self.previous_secret is not None and self.previous_until is not None
                and self.previous_until.timestamp() > time.time()
                and hmac.compare_digest(user_hash(self.previous_secret, external_id).encode(), given))


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

    def __init__(self, pool: asyncpg.Pool, keys: KeyVerifier, usage: KeyUsage | None = None,
                 metrics: Metrics | None = None) -> None:
        self.pool = pool
        self.keys = keys
        self.usage = usage
        self.metrics = metrics
        self._apps: dict[UUID, tuple[float, AppIdentity]] = {}
        self._logged: dict[UUID, float] = {}  # app -> when log_only last logged an unverified user

    async def _app(self, app_id: UUID) -> AppIdentity:
        now = time.monotonic()
        hit = self._apps.get(app_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        row = await self.pool.fetchrow(
            """SELECT identity_verification, identity_secret, previous_identity_secret,
                      previous_identity_secret_expires_at FROM apps WHERE id = $1""", app_id)
        if row is None:
            raise Unauthorized("unknown or revoked API key", code="invalid_api_key")
        app = AppIdentity(row["identity_verification"], row["identity_secret"], row["previous_identity_secret"],
                          row["previous_identity_secret_expires_at"])
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
            if app.mode != "off" and not app.verifies(external_id, presented_hash):
                if app.mode == "enforce":
                    raise Unauthorized("user_hash does not match user_id", code="invalid_user_hash")
                self._unverified(key.app_id, "missing" if presented_hash is None else "wrong")
        return SdkCaller(key.app_id, key.id, key.kind, external_id, anonymous_id, key.scopes,
                         key.expires_at)

    async def key(self, api_key: Any, address: str | None = None) -> ApiKey:
        """The live key presented (either kind), its use noted; no user needed (the app's config)."""
        if not isinstance(api_key, str) or not api_key:
            raise Unauthorized("an API key is required in the X-API-Key header", code="missing_api_key")
        key = await self.keys.verify(api_key)
        if self.usage is not None:
            self.usage.seen(key.id, address)
        return key

    def _unverified(self, app_id: UUID, reason: str) -> None:
        """log_only: accepted, but counted, and logged at most once a minute per app."""
        if self.metrics is not None:
            self.metrics.identity_unverified.labels(reason).inc()
        now = time.monotonic()
        if now - self._logged.get(app_id, -UNVERIFIED_LOG_EVERY) >= UNVERIFIED_LOG_EVERY:
            self._logged[app_id] = now
            log.warning("identity verification (log_only): app %s accepted a user with a %s user_hash; "
                        "it would be refused in enforce mode", app_id, reason)

    async def user(self, caller: SdkCaller) -> EndUser:
        """The caller's end user, created on first sight (every SDK call identifies implicitly)."""
        found = await users.find(self.pool, caller.app_id, external_id=caller.external_id,
                                 anonymous_id=caller.anonymous_id)
        if found is not None:
            return found
        return await users.identify(self.pool, caller.app_id, external_id=caller.external_id,
                                    anonymous_id=caller.anonymous_id)
