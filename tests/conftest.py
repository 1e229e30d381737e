"""Fixtures: one embedded Postgres + Redis per session; a fresh database and Redis DB per test."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import os
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
import redis.asyncio as aioredis

from server.dev.embedded import EmbeddedServices
from server.platform.db.migrate import migrate
from server.platform.db.pool import init_connection
from server.tenancy.workspaces import NewWorkspace, create_workspace
from tests.support import ServerProcess

CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-default-apps",
                 "--disable-extensions", "--metrics-recording-only",
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost"]
TEST_JWT_SECRET = "test-secret-" + "x" * 40
T = TypeVar("T")
_counter = itertools.count(1)


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run on a fresh thread: sync Playwright keeps a loop running on the main thread."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):  # type: ignore[no-untyped-def]
    return {**browser_type_launch_args, "executable_path": "/usr/bin/chromium", "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServices]:
    root = tmp_path_factory.mktemp("embedded")
    os.chmod(root, 0o755)
    for parent in root.parents:  # the unprivileged Postgres user must reach its data dir
        if str(parent).startswith("/tmp") and parent != Path("/tmp"):
            os.chmod(parent, 0o755)
    svc = EmbeddedServices(root)
    svc.start(True, True)
    yield svc
    svc.stop()


@pytest.fixture(scope="session")
def pg_admin_url(services: EmbeddedServices) -> str:
    assert services.postgres is not None
    return services.postgres.url


@pytest.fixture(scope="session")
def template_db(pg_admin_url: str) -> str:
    """A migrated database each test database is cloned from (CREATE DATABASE ... TEMPLATE)."""
    async def go() -> None:
        conn = await asyncpg.connect(pg_admin_url)
        await conn.execute("DROP DATABASE IF EXISTS replyhq_template")
        await conn.execute("CREATE DATABASE replyhq_template")
        await conn.close()
        await migrate(pg_admin_url.rsplit("/", 1)[0] + "/replyhq_template")

    run_sync(go())
    return "replyhq_template"


@contextlib.contextmanager
def cloned_database(pg_admin_url: str, template_db: str, name: str) -> Iterator[str]:
    """A database cloned from the migrated template for as long as the block runs; its URL."""
    async def sql(statement: str) -> None:
        conn = await asyncpg.connect(pg_admin_url)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    run_sync(sql(f'CREATE DATABASE "{name}" TEMPLATE {template_db}'))
    try:
        yield pg_admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        run_sync(sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# Redis logical DBs from this one up (of 16) are the module servers' (`module_server`); a test's own
# DB (`redis_url`) is one below it. Shared, a module server still running flushes what the test
# wrote (the usage meter's batches) or the test flushes the server's.
MODULE_REDIS_DB_FIRST = 12


@contextlib.contextmanager
def module_server(services: EmbeddedServices, database_url: str, tmp: Path, *, redis_db: int,
                  module: str = "server", **env: str) -> Iterator[ServerProcess]:
    """One real server process for a test module (its own database, a Redis logical DB flushed first
    (throttle counters of an earlier module), its own socket channel), started for the block; `env`
    adds or overrides settings."""
    assert services.redis is not None and redis_db >= MODULE_REDIS_DB_FIRST
    redis_url = f"redis://127.0.0.1:{services.redis.port}/{redis_db}"

    async def flush() -> None:
        r = aioredis.from_url(redis_url)
        await r.flushdb()
        await r.aclose()

    run_sync(flush())
    server = ServerProcess({"DATABASE_URL": database_url, "REDIS_URL": redis_url,
                            "REPLYHQ_ENV": "test", "JWT_SECRET": TEST_JWT_SECRET, "DATA_DIR": str(tmp / "data"),
                            "SOCKETIO_CHANNEL": f"sio-{tmp.name}", "HOST": "127.0.0.1", **env},
                           log_path=tmp / "server.log", module=module)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def db_url(pg_admin_url: str, template_db: str) -> Iterator[str]:
    with cloned_database(pg_admin_url, template_db, f"t_{os.getpid()}_{next(_counter)}") as url:
        yield url


@pytest.fixture
def redis_url(services: EmbeddedServices) -> str:
    """A Redis logical DB per test, flushed first (pub/sub channels are separated by name)."""
    assert services.redis is not None
    index = next(_counter) % MODULE_REDIS_DB_FIRST
    url = f"redis://127.0.0.1:{services.redis.port}/{index}"

    async def flush() -> None:
        r = aioredis.from_url(url)
        await r.flushdb()
        await r.aclose()

    run_sync(flush())
    return url


@pytest.fixture
def server_env(db_url: str, redis_url: str, tmp_path: Path) -> dict[str, str]:
    return {"DATABASE_URL": db_url, "REDIS_URL": redis_url, "REPLYHQ_ENV": "test",
            "JWT_SECRET": TEST_JWT_SECRET, "DATA_DIR": str(tmp_path / "data"), "LOG_LEVEL": "INFO",
            "SOCKETIO_CHANNEL": f"sio-{tmp_path.name}", "HOST": "127.0.0.1"}


@pytest.fixture
def start_server(server_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start replicas of the real server; all are stopped after the test."""
    started: list[ServerProcess] = []

    def start(wait: bool = True, module: str = "server", **env: str) -> ServerProcess:
        n = len(started) + 1
        proc = ServerProcess({**server_env, "REPLICA_ID": f"replica-{n}", **env},
                             log_path=tmp_path / f"server-{n}.log", module=module)
        started.append(proc)
        return proc.start(wait=wait)

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def server(start_server: Callable[..., ServerProcess]) -> ServerProcess:
    return start_server()


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=4, init=init_connection)
    assert pool is not None
    yield pool
    await pool.close()


@pytest.fixture
async def workspace(db: asyncpg.Pool) -> NewWorkspace:
    n = next(_counter)
    return await create_workspace(db, app_name=f"Acme {n}", email=f"owner{n}@acme.test",
                                  password="correct horse battery", owner_name="Olive Owner")


@pytest.fixture
async def other_workspace(db: asyncpg.Pool) -> NewWorkspace:
    n = next(_counter)
    return await create_workspace(db, app_name=f"Globex {n}", email=f"owner{n}@globex.test",
                                  password="correct horse battery", owner_name="Gus Owner")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests last: sync Playwright keeps an event loop running on the main thread for the
    rest of the session, and async tests collected after it would fail to start their loop."""
    items.sort(key=lambda item: "page" in getattr(item, "fixturenames", ()))
