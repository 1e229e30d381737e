"""`python -m server cluster`: N replicas on one Postgres and Redis behind one local address.

Each replica is its own `python -m server run` process (its own Socket.IO server and actor host)
on a free local port; the balancer (server/dev/balancer.py) listens on HOST:PORT in front of them.
Replicas get their own session (a terminal Ctrl-C reaches only the supervisor, which stops them
in order) and a parent-death signal (they never outlive it). A replica that exits on its own is
logged, and restarted when asked to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field

from server.dev.balancer import Backend, Balancer, check_health
from server.dev.embedded import free_port
from server.platform.supervised_child import terminated_with_parent
from server.settings import Settings

log = logging.getLogger("replyhq.cluster")
_RESTART_BACKOFF_MAX = 30.0


class ClusterError(RuntimeError):
    """A replica could not start."""


@dataclass
class Replica:
    index: int
    port: int
    env: dict[str, str]
    proc: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    restarts: int = 0
    backend: Backend = field(init=False)

    def __post_init__(self) -> None:
        self.backend = Backend("127.0.0.1", self.port, name=self.name, sid_prefix=self.name)

    @property
    def name(self) -> str:
        return f"r{self.index}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def replica_env(settings: Settings, index: int, port: int) -> dict[str, str]:
    """The environment of replica `index`: the cluster's shared services and secret, its own port,
    id and sid prefix, and links that point at the balancer."""
    name = f"r{index}"
    return {
        **os.environ,
        "DATABASE_URL": settings.database_url or "",
        "REDIS_URL": settings.redis_url or "",
        "JWT_SECRET": settings.jwt_secret or "",  # every replica must verify every other's tokens
        "DATA_DIR": os.path.abspath(settings.data_dir),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "REPLICA_ID": name,
        "SOCKETIO_SID_PREFIX": name,
        "PUBLIC_URL": settings.base_url,
        "ACTOR_PARTITIONS": str(settings.actor_partitions),
        "BOOTSTRAP_DEMO": "false",
    }


class Cluster:
    def __init__(self, settings: Settings, replicas: int, *, restart: bool = False,
                 start_timeout: float = 60.0) -> None:
        if replicas < 1:
            raise ValueError("a cluster needs at least one replica")
        self.settings = settings
        self.restart = restart
        self.start_timeout = start_timeout
        self.replicas = [Replica(i, port, replica_env(settings, i, port))
                         for i, port in ((i, free_port()) for i in range(1, replicas + 1))]
        self.balancer = Balancer([r.backend for r in self.replicas], settings.host, settings.port)
        self._stopping = asyncio.Event()
        self._watchers: list[asyncio.Task[None]] = []

    async def run(self) -> None:
        """Start everything, serve until SIGINT/SIGTERM (or stop()), then stop everything."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stopping.set)
        try:
            await self.start()
            await self._stopping.wait()
        finally:
            await self.shutdown()

    def stop(self) -> None:
        self._stopping.set()

    async def start(self) -> None:
        self._check_address()
        for replica in self.replicas:
            await self._spawn(replica)
        await asyncio.gather(*(self._wait_healthy(r) for r in self.replicas))
        try:
            await self.balancer.start()
        except OSError as exc:
            raise ClusterError(f"cannot listen on {self.settings.host}:{self.settings.port}: {exc.strerror}") from None
        self._watchers = [asyncio.create_task(self._watch(r), name=f"watch-{r.name}") for r in self.replicas]
        lines = [f"\n  ReplyHQ cluster: {len(self.replicas)} replicas behind {self.settings.base_url}"]
        lines += [f"    {r.name}  pid {r.proc.pid if r.proc else '-'}  {r.url}" for r in self.replicas]
        print("\n".join(lines) + "\n  Ctrl-C stops everything.\n", flush=True)
        log.info("cluster of %s replicas serving on %s", len(self.replicas), self.settings.base_url)

    def _check_address(self) -> None:
        """Fail before starting replicas when HOST:PORT is taken."""
        try:
            with socket.create_server((self.settings.host, self.settings.port), reuse_port=False):
                pass
        except OSError as exc:
            raise ClusterError(f"cannot listen on {self.settings.host}:{self.settings.port}: {exc.strerror}") from None

    async def _spawn(self, replica: Replica) -> None:
        replica.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "server", "run", env=replica.env, start_new_session=True,
            preexec_fn=terminated_with_parent)
        replica.started_at = time.monotonic()
        log.info("replica %s started (pid %s, port %s)", replica.name, replica.proc.pid, replica.port)

    async def _wait_healthy(self, replica: Replica) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            assert replica.proc is not None
            if replica.proc.returncode is not None:
                raise ClusterError(f"replica {replica.name} exited with {replica.proc.returncode} while starting")
            if await check_health(replica.backend):
                replica.backend.healthy = True
                return
            await asyncio.sleep(0.1)
        raise ClusterError(f"replica {replica.name} did not answer /healthz within {self.start_timeout:.0f}s")

    async def _watch(self, replica: Replica) -> None:
        """Log a replica that exits on its own; restart it (same port and prefix) when asked to."""
        backoff = 1.0
        while True:
            assert replica.proc is not None
            code = await replica.proc.wait()
            if self._stopping.is_set():
                return
            replica.backend.healthy = False
            ran = time.monotonic() - replica.started_at
            log.error("replica %s (pid %s) exited with %s after %.0fs", replica.name, replica.proc.pid, code, ran)
            if not self.restart:
                return
            backoff = 1.0 if ran > _RESTART_BACKOFF_MAX else min(backoff * 2, _RESTART_BACKOFF_MAX)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), backoff)
            if self._stopping.is_set():
                return
            replica.restarts += 1
            await self._spawn(replica)  # the balancer takes it back once /healthz answers

    async def shutdown(self) -> None:
        self._stopping.set()
        await self.balancer.stop()
        for task in self._watchers:
            task.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        running = [r.proc for r in self.replicas if r.proc is not None and r.proc.returncode is None]
        for proc in running:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        await asyncio.gather(*(self._reap(proc) for proc in running))
        log.info("cluster stopped")

    async def _reap(self, proc: asyncio.subprocess.Process) -> None:
        grace = self.settings.graceful_shutdown_timeout + 10
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            log.warning("replica pid %s did not stop in %.0fs; killing it", proc.pid, grace)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
