"""Every use ReplyHQ makes of redis-py's internals, in one place (tests/test_library_adapters.py).

Tested with redis-py 8.1.x (pinned `>=8.1,<8.2` in pyproject.toml). An upgrade that moves one of
these fails a named test there before it reaches a replica.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.connection import HiredisRespSerializer  # not exported by redis-py: an internal class

_packer = HiredisRespSerializer()


class _HiredisPacking:
    """redis-py's synchronous client packs commands with hiredis (C) when it is installed; its
    asyncio client always uses the Python packer, about 5 µs per stream entry against 0.7. The
    bytes and the DataError for a bad argument are the same."""

    def pack_command(self, *args: Any) -> list[bytes]:
        return _packer.pack(*args)


def with_hiredis_packing(client: aioredis.Redis) -> aioredis.Redis:
    """`client`, its connections (of whatever class its URL chose) packing with hiredis.

    redis-py 8.1: the pool builds connections of `pool.connection_class` (set here to a subclass
    overriding `pack_command`, which `pack_commands`, hence pipelines, calls too), and the packer
    is `redis.connection.HiredisRespSerializer().pack(*args)`. Bound once, when the client is made.
    """
    pool = client.connection_pool
    base = pool.connection_class
    if not issubclass(base, _HiredisPacking):
        pool.connection_class = type(f"Hiredis{base.__name__}", (_HiredisPacking, base), {})
    return client


def drop_queued_commands(pipe: Any, start: int) -> None:
    """Forget the commands queued on `pipe` from index `start` on (one producer's share that failed
    to queue). redis-py 8.1 keeps a pipeline's queued commands in the list `pipe.command_stack`,
    which `len(pipe)` counts; there is no public way to take some back."""
    del pipe.command_stack[start:]
