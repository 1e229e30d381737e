"""Failed-login throttling in Redis: counters with a TTL per (account, address), per address and
per account across all addresses.

A wrong guess from one address must not lock the owner out everywhere: the tight limit is per
(account, address); the per-account limit is looser and spans addresses, so a brute force spread
over many addresses still stays impractical.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from server.errors import RateLimited


@dataclass(frozen=True)
class LoginLimits:
    per_account_address: int = 5  # guesses at one password from one address, per `window`
    per_address: int = 30  # one address trying many accounts (password spraying), per `window`
    window: int = 900  # seconds; a counter's TTL starts at its first failure
    per_account: int = 100  # guesses at one password from all addresses together, per `account_window`
    account_window: int = 3600


def _keys(email: str, address: str) -> tuple[bytes, bytes, bytes]:
    """(account+address, address, account) counter keys."""
    # Hash the email so Redis holds no addresses in clear.
    digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
    return (f"login-fail:acct-addr:{digest}:{address}".encode(), f"login-fail:ip:{address}".encode(),
            f"login-fail:acct:{digest}".encode())


def _limits(limits: LoginLimits) -> tuple[tuple[int, int], ...]:
    return ((limits.per_account_address, limits.window), (limits.per_address, limits.window),
            (limits.per_account, limits.account_window))


async def check(redis: Any, limits: LoginLimits, email: str, address: str) -> None:
    """Raise 429 (with Retry-After) while any counter is at its limit."""
    keys = _keys(email, address)
    pipe = redis.pipeline(transaction=False)
    for key in keys:
        pipe.get(key)
        pipe.ttl(key)
    replies = await pipe.execute()
    blocked = [int(ttl) for (n, ttl), (limit, _) in zip(zip(replies[::2], replies[1::2], strict=True),
                                                        _limits(limits), strict=True)
               if n is not None and int(n) >= limit]
    if blocked:
        retry = max(1, max(blocked))
        raise RateLimited("too many failed logins; try again later", {"retry_after": retry},
                          code="too_many_attempts", retry_after=retry)


async def record_failure(redis: Any, limits: LoginLimits, email: str, address: str) -> None:
    pipe = redis.pipeline(transaction=True)
    for key, (_, ttl) in zip(_keys(email, address), _limits(limits), strict=True):
        # SET NX starts the window at the first failure; INCR keeps the TTL (works on Redis < 7 too).
        pipe.set(key, 0, ex=ttl, nx=True)
        pipe.incr(key)
    await pipe.execute()


async def record_success(redis: Any, email: str, address: str) -> None:
    # Only this (account, address) counter resets: the address keeps counting other accounts'
    # failures, and the account keeps counting guesses from elsewhere.
    await redis.delete(_keys(email, address)[0])
