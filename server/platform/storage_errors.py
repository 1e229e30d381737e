"""Which exceptions mean Postgres or Redis is out of reach for the moment (restarting, refusing
connections, a connection dropped under a query): a request that meets one is answered 503, to
retry, rather than 500 (server/errors.py, server/realtime/namespace.py)."""

from __future__ import annotations

from asyncpg import exceptions as pg
from redis import exceptions as redis_errors

_UNAVAILABLE: tuple[type[BaseException], ...] = (
    pg.PostgresConnectionError,  # SQLSTATE class 08, and a connection that dropped under a query
    pg.CannotConnectNowError,  # starting up or shutting down
    pg.AdminShutdownError,
    pg.CrashShutdownError,
    pg.TooManyConnectionsError,
    redis_errors.ConnectionError,  # with BusyLoadingError: Redis loading its data
    redis_errors.TimeoutError,
    ConnectionError,  # a refused or reset socket
    TimeoutError,  # no answer in time
)


def storage_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, _UNAVAILABLE):
        return True
    # asyncpg's name for a pooled connection whose server went away before the query was sent
    return isinstance(exc, pg.InterfaceError) and "connection is closed" in str(exc)
