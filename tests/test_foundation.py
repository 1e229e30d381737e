"""Foundation: start-up, shutdown, health, readiness, migrations, settings, error bodies, sockets."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import asyncpg
import psutil
import pytest

from server.auth.passwords import verify_password
from server.auth.tokens import issue_access_token
from server.dev.embedded import EmbeddedRedis
from server.platform.db.migrate import discover, migrate
from server.settings import SettingsError, load_settings, settings_env
from tests.conftest import TEST_JWT_SECRET
from tests.sockets import open_socket, refused_handshake
from tests.support import ROOT, ServerProcess, http


def test_healthz_reports_the_replica_on_uvloop(server: ServerProcess) -> None:
    status, body = http("GET", server.url + "/healthz")
    assert status == 200
    assert body["status"] == "ok" and body["replica"] == "replica-1"
    assert body["loop"] == "uvloop"


def test_readyz_is_ready_when_postgres_and_redis_answer(server: ServerProcess) -> None:
    status, body = http("GET", server.url + "/readyz")
    assert status == 200
    assert body == {"status": "ready", "checks": {"postgres": "ok", "redis": "ok"}}


def test_readyz_fails_naming_redis_when_redis_is_stopped(start_server, tmp_path: Path) -> None:
    own_redis = EmbeddedRedis(tmp_path / "redis")
    url = own_redis.start()
    try:
        srv = start_server(REDIS_URL=url)
        assert http("GET", srv.url + "/readyz")[0] == 200
        own_redis.stop()
        status, body = http("GET", srv.url + "/readyz")
        assert status == 503
        assert body["status"] == "unavailable"
        assert body["checks"]["postgres"] == "ok"
        assert body["checks"]["redis"].startswith("error")
        # the process itself is still alive
        assert http("GET", srv.url + "/healthz")[0] == 200
    finally:
        own_redis.stop()


def test_metrics_are_prometheus_text_with_request_counts(server: ServerProcess) -> None:
    http("GET", server.url + "/healthz")
    status, text = http("GET", server.url + "/metrics")
    assert status == 200
    assert 'replyhq_http_requests_total{method="GET",route="healthz",status="200"}' in text
    assert "replyhq_http_request_duration_seconds_bucket" in text


def test_unknown_route_gets_a_json_404_body(server: ServerProcess) -> None:
    status, body = http("GET", server.url + "/v1/does-not-exist")
    assert status == 404
    assert body["error"]["code"] == "not_found"


def test_wrong_method_gets_a_json_405_body(server: ServerProcess) -> None:
    status, body = http("POST", server.url + "/healthz", body={})
    assert status == 405
    assert body["error"]["code"] == "method_not_allowed"


def test_request_id_is_echoed(server: ServerProcess) -> None:
    import urllib.request

    req = urllib.request.Request(server.url + "/healthz", headers={"x-request-id": "abc123"})
    with urllib.request.urlopen(req) as resp:
        assert resp.headers["x-request-id"] == "abc123"


def test_openapi_document_is_served(server: ServerProcess) -> None:
    status, doc = http("GET", server.url + "/openapi.json")
    assert status == 200
    assert doc["openapi"].startswith("3.")
    assert "/healthz" in doc["paths"] and "/readyz" in doc["paths"]


def test_sigterm_stops_the_server_cleanly(server: ServerProcess) -> None:
    assert server.stop(signal.SIGTERM) == 0


async def test_migrations_applied_twice_change_nothing(db_url: str) -> None:
    # db_url is cloned from the migrated template: everything is applied already
    assert await migrate(db_url) == []
    conn = await asyncpg.connect(db_url)
    versions = [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations ORDER BY 1")]
    await conn.close()
    assert versions == [m.version for m in discover()]


async def test_two_processes_migrating_at_once_apply_each_migration_once(pg_admin_url: str,
                                                                          tmp_path: Path) -> None:
    conn = await asyncpg.connect(pg_admin_url)
    await conn.execute("DROP DATABASE IF EXISTS race_db")
    await conn.execute("CREATE DATABASE race_db")
    await conn.close()
    url = pg_admin_url.rsplit("/", 1)[0] + "/race_db"
    env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": "redis://127.0.0.1:1/0", "REPLYHQ_ENV": "test",
           "JWT_SECRET": TEST_JWT_SECRET, "DATA_DIR": str(tmp_path)}
    procs = [subprocess.Popen([sys.executable, "-m", "server", "migrate"], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(2)]
    outputs = [p.communicate(timeout=60)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert sum("up to date" in o for o in outputs) == 1  # the second waited on the lock, then found all done
    conn = await asyncpg.connect(url)
    rows = await conn.fetch("SELECT version, count(*) AS n FROM schema_migrations GROUP BY version")
    await conn.close()
    assert all(r["n"] == 1 for r in rows) and len(rows) == len(discover())


@pytest.mark.parametrize(("env", "variable"), [
    ({"PORT": "eighty"}, "PORT"),
    ({"PORT": "70000"}, "PORT"),
    ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
    ({"REPLYHQ_ENV": "production", "DATABASE_URL": "postgresql://x/y", "REDIS_URL": "redis://x"}, "JWT_SECRET"),
])
def test_bad_settings_stop_start_up_with_one_line_naming_the_variable(env: dict[str, str], variable: str,
                                                                      tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=f"^{variable}:"):
        load_settings({"DATA_DIR": str(tmp_path), **env})
    full_env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    result = subprocess.run([sys.executable, "-m", "server", "run"], cwd=ROOT, capture_output=True,
                            env={**full_env, "DATA_DIR": str(tmp_path), **env}, timeout=30)
    assert result.returncode == 2
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"replyhq: {variable}:")


def test_settings_turned_back_into_an_environment_load_as_the_same_settings(tmp_path: Path) -> None:
    """What a replica hands its event worker process: every field, exactly."""
    settings = load_settings({"DATA_DIR": str(tmp_path), "DATABASE_URL": "postgresql://db/x", "REDIS_URL": "redis://r",
                              "LEGACY_AUTH": "off", "EVENT_RELAY_INTERVAL": "0.25", "EVENT_WORKERS": "inline",
                              "STRIPE_API_BASE": "http://127.0.0.1:9/"})
    assert load_settings(settings_env(settings)) == settings


def test_development_jwt_secret_is_generated_once_and_kept(tmp_path: Path) -> None:
    first = load_settings({"DATA_DIR": str(tmp_path)})
    second = load_settings({"DATA_DIR": str(tmp_path)})
    assert first.jwt_secret and first.jwt_secret == second.jwt_secret
    assert (tmp_path / "secrets.json").stat().st_mode & 0o077 == 0


def test_embedded_default_serves_bootstraps_a_login_and_ctrl_c_leaves_no_process(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "JWT_SECRET")}
    from server.dev.embedded import free_port

    port = free_port()
    env.update({"DATA_DIR": str(tmp_path / "data"), "PORT": str(port)})
    os.chmod(tmp_path, 0o755)
    proc = subprocess.Popen([sys.executable, "-m", "server", "run"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    srv = ServerProcess(env, port=port, proc=proc)
    out = b""
    drain: threading.Thread | None = None
    try:
        deadline = time.monotonic() + 60
        while b"Server key:" not in out and time.monotonic() < deadline:
            assert proc.stdout is not None
            out += proc.stdout.readline()
        # Keep reading what it writes: a full pipe would block the server (even on its way out).
        rest: list[bytes] = []
        assert proc.stdout is not None
        drain = threading.Thread(target=lambda: rest.extend(iter(proc.stdout.readline, b"")), daemon=True)  # type: ignore[union-attr]
        drain.start()
        try:
            srv.wait_healthy()
        except RuntimeError as exc:  # its output went to the pipe, not a log file: show it
            raise RuntimeError(f"{exc}\n{(out + b''.join(rest)).decode(errors='replace')[-5000:]}") from None
        text = out.decode()
        login = re.search(r"Login:\s+(\S+)", text)
        password = re.search(r"Password:\s+(\S+)", text)
        pg_url = re.search(r"postgres=(postgresql://\S+?) ", text)
        assert login and password and pg_url, text
        children = psutil.Process(proc.pid).children(recursive=True)
        names = {c.name() for c in children}
        assert "postgres" in names and any("redis" in n or "valkey" in n for n in names), names

        async def check_login() -> None:
            conn = await asyncpg.connect(pg_url.group(1))
            row = await conn.fetchrow("SELECT password_hash FROM admins WHERE email = $1", login.group(1))
            await conn.close()
            assert row is not None and verify_password(row["password_hash"], password.group(1))

        asyncio.run(check_login())
        proc.send_signal(signal.SIGINT)  # what Ctrl-C delivers
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            said = b"".join(rest).decode(errors="replace")[-5000:]
            raise AssertionError(f"no exit 30 s after SIGINT:\n{said}") from None
        assert code == 0, b"".join(rest).decode(errors="replace")[-5000:]
        time.sleep(0.2)
        assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    finally:
        if proc.poll() is None:
            proc.kill()
        if drain is not None:
            drain.join(timeout=10)  # the pipe's end once the server and its children are gone
        if proc.stdout:
            proc.stdout.close()


async def test_socketio_clients_connect_to_both_namespaces(server: ServerProcess, workspace) -> None:
    async with open_socket(server.url, "/client", transports=["websocket"],
                           auth={"api_key": workspace.publishable_key, "user_id": "u-1"}) as client:
        assert client.connected and "/client" in client.sio.namespaces

    status, signed_in = http("POST", server.url + "/admin/auth/login",
                             {"email": workspace.email, "password": "correct horse battery"})
    assert status == 200, signed_in
    token = signed_in["access_token"]
    async with open_socket(server.url, "/admin", transports=["polling"], auth={"admin_token": token}) as admin:
        assert "/admin" in admin.sio.namespaces


async def test_socketio_refuses_bad_credentials_with_an_error_body(server: ServerProcess, workspace) -> None:
    for namespace, auth, code in (("/client", {"api_key": "rhq_pk_nope"}, "invalid_api_key"),
                                  ("/client", {}, "missing_api_key"),
                                  ("/admin", {"admin_token": "not-a-jwt"}, "invalid_token")):
        error = await refused_handshake(server.url, namespace, auth=auth)
        assert error["data"]["error"]["code"] == code, (namespace, error)
    expired, _ = issue_access_token(TEST_JWT_SECRET, admin_id=workspace.admin_id, app_id=workspace.app_id,
                                    role="owner", ttl=-10, session_id=uuid.uuid4())
    error = await refused_handshake(server.url, "/admin", auth={"admin_token": expired})
    assert error["data"]["error"]["code"] == "token_expired", error
