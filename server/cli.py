"""Command line: `run` (serve, with embedded Postgres/Redis when none is configured),
`cluster` (N replicas behind one local address), `migrate` (apply migrations only),
`create-workspace` (a workspace and its owner)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import secrets
import sys
from pathlib import Path

import msgspec

from server.settings import Settings, SettingsError, load_settings

log = logging.getLogger("replyhq.cli")


def _fail(message: str) -> None:
    print(f"replyhq: {message}", file=sys.stderr)
    raise SystemExit(2)


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as err:
        _fail(str(err))
        raise  # unreachable


def _with_embedded(settings: Settings):  # type: ignore[no-untyped-def]
    """Start what is missing; returns (settings with URLs, services or None)."""
    if not settings.embedded:
        return settings, None
    from server.dev.embedded import EmbeddedError, EmbeddedServices

    services = EmbeddedServices(Path(settings.data_dir).resolve() / "embedded")
    try:
        pg, rd = services.start(settings.database_url is None, settings.redis_url is None)
    except EmbeddedError as err:
        _fail(f"could not start embedded services: {err}")
    except PermissionError as err:
        _fail(f"could not start embedded services ({err}); set DATABASE_URL and REDIS_URL to use your own servers")
    settings = msgspec.structs.replace(settings, database_url=settings.database_url or pg,
                                       redis_url=settings.redis_url or rd)
    log.info("embedded services: postgres=%s redis=%s", settings.database_url, settings.redis_url)
    return settings, services


async def _bootstrap_demo(settings: Settings) -> None:
    """First start of the embedded default: a demo workspace, with its login printed once."""
    import asyncpg

    from server.tenancy.workspaces import create_workspace, workspace_count

    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    try:
        if await workspace_count(pool):
            return
        password = secrets.token_urlsafe(12)
        ws = await create_workspace(pool, app_name="Demo workspace", email="demo@replyhq.local",
                                    password=password, owner_name="Demo Owner")
    finally:
        await pool.close()
    print(
        "\n"
        "  ReplyHQ demo workspace created (shown once, keep it):\n"
        f"    Dashboard:        {settings.base_url}/\n"
        f"    Login:            {ws.email}\n"
        f"    Password:         {password}\n"
        f"    SDK key:          {ws.publishable_key}\n"
        f"    Server key:       {ws.secret_key}\n"
        f"    Identity secret:  {ws.identity_secret}\n",
        flush=True,
    )


def cmd_run(args: argparse.Namespace) -> None:
    from server.app import create_app
    from server.platform.db.migrate import migrate
    from server.platform.logging_setup import configure_logging
    from server.realtime.transport.admission import AdmittedProtocol

    settings = _settings()
    if args.port is not None:
        settings = msgspec.structs.replace(settings, port=args.port)
    configure_logging(settings.log_level, settings.replica_id)
    embedded_default = settings.embedded
    settings, services = _with_embedded(settings)
    if services is not None:
        services.supervise()  # a Postgres or Redis child that dies is restarted while we serve
    try:
        asyncio.run(migrate(settings.database_url or ""))
        if embedded_default and settings.bootstrap_demo:
            asyncio.run(_bootstrap_demo(settings))
        app = create_app(settings)
        app.run(host=settings.host, port=settings.port, single_process=True, access_log=False,
                motd=False, backlog=4096, protocol=AdmittedProtocol)
    finally:
        if services is not None:
            services.stop()


def cmd_cluster(args: argparse.Namespace) -> None:
    from server.dev.cluster import Cluster, ClusterError
    from server.platform.db.migrate import migrate
    from server.platform.logging_setup import configure_logging

    settings = _settings()
    if args.port is not None:
        settings = msgspec.structs.replace(settings, port=args.port)
    configure_logging(settings.log_level, "cluster")
    if args.replicas < 1:
        _fail("--replicas must be at least 1")
    embedded_default = settings.embedded
    settings, services = _with_embedded(settings)  # once, shared by every replica
    if services is not None:
        services.supervise()
    try:
        asyncio.run(migrate(settings.database_url or ""))
        if embedded_default and settings.bootstrap_demo:
            asyncio.run(_bootstrap_demo(settings))
        try:
            asyncio.run(Cluster(settings, args.replicas, restart=args.restart).run())
        except ClusterError as err:
            _fail(str(err))
    finally:
        if services is not None:
            services.stop()


def cmd_event_workers(args: argparse.Namespace) -> None:
    """The event worker process of one replica, started by it (server/events/worker_process.py)."""
    import uvloop

    from server.app import event_consumers
    from server.events.worker_process import run
    from server.platform.logging_setup import configure_logging

    settings = _settings()
    if settings.embedded:
        _fail("event-workers needs DATABASE_URL and REDIS_URL (the replica that starts it passes them)")
    configure_logging(settings.log_level, f"{settings.replica_id}/events")
    uvloop.run(run(settings, event_consumers(), args.parent_pid))


def cmd_migrate(args: argparse.Namespace) -> None:
    from server.platform.db.migrate import migrate
    from server.platform.logging_setup import configure_logging

    settings = _settings()
    configure_logging(settings.log_level, settings.replica_id)
    settings, services = _with_embedded(settings)
    try:
        applied = asyncio.run(migrate(settings.database_url or ""))
        print(f"applied {len(applied)} migration(s): {applied}" if applied else "database is up to date")
    finally:
        if services is not None:
            services.stop()


def cmd_create_workspace(args: argparse.Namespace) -> None:
    import asyncpg

    from server.errors import ApiError
    from server.platform.db.migrate import migrate
    from server.tenancy.workspaces import create_workspace

    settings = _settings()
    settings, services = _with_embedded(settings)
    password = args.password or getpass.getpass("Owner password: ")
    if len(password) < 8:
        _fail("password must be at least 8 characters")

    async def go() -> None:
        await migrate(settings.database_url or "")
        pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
        try:
            ws = await create_workspace(pool, app_name=args.name, email=args.email, password=password,
                                        owner_name=args.owner_name or "")
        finally:
            await pool.close()
        print(f"workspace {ws.app_id} ({ws.app_name}) created\n  owner: {ws.email}\n"
              f"  SDK key: {ws.publishable_key}\n  server key: {ws.secret_key}\n"
              f"  identity secret: {ws.identity_secret}")

    try:
        asyncio.run(go())
    except ApiError as err:
        _fail(err.message)
    finally:
        if services is not None:
            services.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="replyhq")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="serve REST + Socket.IO")
    run.add_argument("--port", type=int, default=None)
    run.set_defaults(func=cmd_run)
    cluster = sub.add_parser("cluster", help="serve N replicas behind one local address (HOST:PORT)")
    cluster.add_argument("--replicas", "-n", type=int, default=3)
    cluster.add_argument("--port", type=int, default=None)
    cluster.add_argument("--restart", action="store_true", help="restart a replica that exits on its own")
    cluster.set_defaults(func=cmd_cluster)
    sub.add_parser("migrate", help="apply database migrations and exit").set_defaults(func=cmd_migrate)
    ew = sub.add_parser("event-workers", help="(started by each replica) its relay, consumer groups and retention")
    ew.add_argument("--parent-pid", type=int, required=True)
    ew.set_defaults(func=cmd_event_workers)
    cw = sub.add_parser("create-workspace", help="create a workspace and its owner")
    cw.add_argument("--name", required=True)
    cw.add_argument("--email", required=True)
    cw.add_argument("--owner-name", default="")
    cw.add_argument("--password", default=None, help="prompted for when omitted")
    cw.set_defaults(func=cmd_create_workspace)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
