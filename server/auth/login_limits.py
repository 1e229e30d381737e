"""Failed-login throttling in Redis: counters with a TTL, per account email and per client IP."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from server.errors import RateLimited


@dataclass(frozen=True)
class LoginLimits:
    per_account: int = 5  # guesses at one password before it locks for the window
    per_ip: int = 30  # one address trying many accounts (password spraying)
    window: int = 900  # seconds; the counter's TTL starts at the first failure


def _keys(email: str, ip: str) -> tuple[bytes, bytes]:
    # Hash the email so Redis holds no addresses in clear.
    digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
    return f"login-fail:acct:{digest}".encode(), f"login-fail:ip:{ip}".encode()


async def check(redis: Any, limits: LoginLimits, email: str, ip: str) -> None:
    """Raise 429 (with Retry-After) while either counter is at its limit."""
    acct, addr = _keys(email, ip)
    pipe = redis.pipeline(transaction=False)
    pipe.get(acct)
    pipe.ttl(acct)
    pipe.get(addr)
    pipe.ttl(addr)
    n_acct, ttl_acct, n_ip, ttl_ip = await pipe.execute()
    blocked = [ttl for n, ttl, limit in ((n_acct, ttl_acct, limits.per_account), (n_ip, ttl_ip, limits.per_ip))
               if n is not None and int(n) >= limit]
    if blocked:
        retry = max(1, max(int(t) for t in blocked))
        raise RateLimited("too many failed logins; try again later", {"retry_after": retry},
                          code="too_many_attempts", retry_after=retry)


async def record_failure(redis: Any, limits: LoginLimits, email: str, ip: str) -> None:
    pipe = redis.pipeline(transaction=True)
    for key in _keys(email, ip):
        # SET NX starts the window at the first failure; INCR keeps the TTL (works on Redis < 7 too).
        pipe.set(key, 0, ex=limits.window, nx=True)
        pipe.incr(key)
    await pipe.execute()


async def record_success(redis: Any, email: str, ip: str) -> None:
    # The account counter resets; the IP counter keeps counting other accounts' failures.
    await redis.delete(_keys(email, ip)[0])
