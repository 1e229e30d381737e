"""Checking a presented API key on every replica, fast, and hearing at once of keys that changed.

KeyVerifier: the shape and checksum first (a typo never reaches Postgres), then a per-replica
cache of keys found by hash, each entry trusted for CACHE_TTL_S at most: a revoked key is refused
on every replica within that time even if a change notice were lost, and a key in use costs one
indexed read a second per replica, not one per request.

KeyChanges: a revocation, a rotation's grace or a change of scopes is published on Redis
(`<SOCKETIO_CHANNEL>:api-keys`); every replica drops the key from its cache and tells its
listeners (the /client namespace ends the key's sockets and updates their scopes).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
import msgspec
import redis.asyncio as aioredis

from server.errors import Forbidden, ServiceUnavailable, Unauthorized
from server.platform.redis.pubsub import subscriber
from server.tenancy import api_keys
from server.tenancy.api_keys import ApiKey

log = logging.getLogger("replyhq.api_keys")

CACHE_TTL_S = 1.0  # the longest a replica trusts what it read of a key (revocation: refused within this)
_CACHE_MAX = 50_000


def unknown_key() -> Unauthorized:
    return Unauthorized("unknown or revoked API key", code="invalid_api_key")


def require_scope(key: ApiKey, scope: str) -> None:
    """A secret key's call outside its scopes is a 403 (publishable keys have no scopes: they act for
    their own user only)."""
    if key.scopes is not None and scope not in key.scopes:
        raise Forbidden(f"this API key lacks the {scope} scope", {"scope": scope}, code="scope_denied")


class KeyVerifier:
    def __init__(self, pool: asyncpg.Pool, *, legacy: bool, ttl_s: float = CACHE_TTL_S) -> None:
        self.pool = pool
        self.legacy = legacy
        self.ttl_s = ttl_s
        self._cache: dict[str, tuple[float, ApiKey]] = {}  # presented key -> (trusted until, key)

    async def verify(self, presented: Any) -> ApiKey:
        """The live key, or Unauthorized: malformed_api_key (a typo, no lookup), invalid_api_key
        (unknown or revoked), api_key_expired (rotated, its grace is over)."""
        if not isinstance(presented, str) or not presented:
            raise Unauthorized("an API key is required", code="missing_api_key")
        if len(presented) > api_keys.MAX_KEY_LEN:
            raise unknown_key()
        now = time.monotonic()
        hit = self._cache.get(presented)
        if hit is not None and hit[0] > now:
            key = hit[1]
        else:
            found = api_keys.shape(presented)
            if found == "bad_checksum":
                raise Unauthorized("this API key is mistyped (its checksum does not match)",
                                   code="malformed_api_key")
            if found == "other" and not self.legacy:
                raise unknown_key()
            try:
                key_or_none = await api_keys.find(self.pool, presented, legacy=self.legacy)
            except (asyncpg.PostgresError, OSError) as exc:  # storage away: a clear 503, not a 500
                log.warning("cannot check an API key: %s", exc)
                raise ServiceUnavailable("could not check the API key; retry", code="unavailable") from None
            if key_or_none is None:
                self._cache.pop(presented, None)
                raise unknown_key()
            key = key_or_none
            if len(self._cache) >= _CACHE_MAX:
                self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
                if len(self._cache) >= _CACHE_MAX:
                    self._cache.clear()
            self._cache[presented] = (now + self.ttl_s, key)
        if key.expires_at is not None and key.expires_at <= datetime.now(UTC):
            raise Unauthorized("this API key was rotated and its grace period is over", code="api_key_expired")
        return key

    def forget(self, key_id: UUID) -> None:
        """Read the key again on its next use (it changed)."""
        self._cache = {k: v for k, v in self._cache.items() if v[1].id != key_id}


class KeyChange(msgspec.Struct, kw_only=True):
    """What replicas are told of a changed key: ended (revoked, or expired now), its expiry, its scopes."""

    key_id: UUID
    app_id: UUID
    ended: bool
    expires_at: datetime | None = None
    scopes: list[str] | None = None

    @classmethod
    def of(cls, key: ApiKey) -> KeyChange:
        return cls(key_id=key.id, app_id=key.app_id, ended=not key.usable(datetime.now(UTC)),
                   expires_at=key.expires_at, scopes=list(key.scopes) if key.scopes is not None else None)


Listener = Callable[[KeyChange], Awaitable[None]]
_decode = msgspec.json.Decoder(KeyChange).decode


class KeyChanges:
    def __init__(self, redis: aioredis.Redis, channel: str, verifier: KeyVerifier) -> None:
        self.redis = redis
        self.channel = channel
        self.verifier = verifier
        self.listeners: list[Listener] = []

    def listen(self, listener: Listener) -> None:
        self.listeners.append(listener)

    async def publish(self, key: ApiKey) -> None:
        """Tell every replica (this one at once, the others through Redis). A failed publish is
        logged: caches still expire within CACHE_TTL_S and sockets are rechecked periodically."""
        change = KeyChange.of(key)
        await self._apply(change)
        try:
            await self.redis.publish(self.channel, msgspec.json.encode(change))
        except Exception as exc:
            log.warning("could not publish the change of API key %s: %s", key.id, exc)

    async def _apply(self, change: KeyChange) -> None:
        self.verifier.forget(change.key_id)
        for listener in self.listeners:
            try:
                await listener(change)
            except Exception:
                log.exception("API key change listener failed")

    async def run(self, subscribed: asyncio.Event | None = None) -> None:
        """Receive other replicas' changes until cancelled (resubscribing after Redis errors)."""
        while True:
            pubsub = subscriber(self.redis)
            try:
                await pubsub.subscribe(self.channel)
                if subscribed is not None:
                    subscribed.set()
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None or message.get("type") != "message":
                        continue
                    try:
                        change = _decode(message["data"])
                    except (msgspec.DecodeError, msgspec.ValidationError):
                        log.error("dropping an unreadable API key change")
                        continue
                    await self._apply(change)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("API key changes: subscription lost (%s); resubscribing", exc)
                await asyncio.sleep(0.5)
            finally:
                try:
                    await pubsub.aclose()
                except Exception:
                    pass
