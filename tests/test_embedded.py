"""The embedded default as a new user meets it: the first start from a private (0700) folder on the
newest Python the machine has, and embedded Postgres / Redis children that die being restarted."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
import socketio

from loadtests.sdk_client import ReplyHQClient
from server.dev.embedded import free_port
from server.dev.embedded_paths import LOCATION_FILE
from tests.support import ROOT, ServerProcess, http

COPY_IGNORE = shutil.ignore_patterns(".venv", ".data", "out", "node_modules", ".git", "__pycache__", "*.egg-info",
                                     ".mypy_cache", ".ruff_cache", ".pytest_cache")


def _newest_python() -> str:
    """The newest CPython 3.11+ on this machine (pyenv's included), the running one if none is newer."""
    found = {sys.version_info[:2]: sys.executable}
    candidates = [shutil.which(f"python3.{minor}") for minor in range(11, 20)]
    candidates += [str(p) for p in Path.home().glob(".pyenv/versions/3.*/bin/python3")]
    for exe in filter(None, candidates):
        probe = subprocess.run([exe, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True,
                               text=True, check=False)
        if probe.returncode == 0:
            major, minor = map(int, probe.stdout.split())
            if (major, minor) >= (3, 11):
                found.setdefault((major, minor), exe)
    return found[max(found)]


def _embedded_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "REDIS_URL", "JWT_SECRET", "DATA_DIR", "REPLYHQ_ENV", "VIRTUAL_ENV")}
    return {**env, "LOG_LEVEL": "INFO", **extra}


class FirstStart:
    """`python -m server run` on the embedded default; reads the demo login it prints once."""

    def __init__(self, python: str, cwd: Path, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.logf = open(self.log_path, "wb")
        self.proc = subprocess.Popen([python, "-m", "server", "run"], cwd=cwd, stdout=self.logf,
                                     stderr=subprocess.STDOUT, env={**env, "PORT": str(self.port)})
        self.server = ServerProcess(env, port=self.port, proc=self.proc, log_path=self.log_path)

    def demo(self, timeout: float = 120) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.server.log()
            if self.proc.poll() is not None:
                raise AssertionError(f"the server exited with {self.proc.returncode}:\n{text}")
            if "Identity secret:" in text:
                self.server.wait_healthy(timeout=60)
                names = ("Login", "Password", "SDK key", "Identity secret")
                fields = {k: re.search(rf"{k}:\s+(\S+)", text) for k in names}
                assert all(fields.values()), text
                return {k: m.group(1) for k, m in fields.items() if m}
            time.sleep(0.2)
        raise AssertionError(f"no demo login printed in {timeout}s:\n{self.server.log()}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # what Ctrl-C delivers
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.logf.close()
        return self.proc.wait()


async def _sdk_round_trip(url: str, demo: dict[str, str], user_id: str) -> None:
    user_hash = hmac.new(demo["Identity secret"].encode(), user_id.encode(), hashlib.sha256).hexdigest()
    phone = ReplyHQClient(url, demo["SDK key"], user_id=user_id, user_hash=user_hash)
    laptop = ReplyHQClient(url, demo["SDK key"], user_id=user_id, user_hash=user_hash)
    for client in (phone, laptop):
        for attempt in range(3):
            try:
                await client.connect()
                break
            except socketio.exceptions.ConnectionError:
                # Right after a Postgres restart the pool may still hand out a dead connection once:
                # the handshake is refused as `unavailable`, and an SDK reconnects.
                if attempt == 2:
                    raise
                await asyncio.sleep(0.5)
    try:
        conversation = (await phone.create_conversation(subject="first start"))["conversation"]
        sent = await phone.send(conversation["id"], "hello from a fresh clone")
        while True:
            _, message = await laptop.receive("message:new")
            if message["id"] == sent["id"]:
                break
        assert message["body"] == "hello from a fresh clone" and message["seq"] == sent["seq"]
    finally:
        await phone.close()
        await laptop.close()


@pytest.fixture
def private_folder(tmp_path: Path) -> Iterator[Path]:
    """A 0700 folder, as a root user's home is: nobody else can reach anything inside it."""
    folder = tmp_path / "home"
    folder.mkdir(mode=0o700)
    folder.chmod(0o700)
    yield folder
    for pointer in tmp_path.rglob(LOCATION_FILE):  # clusters placed outside (server/dev/embedded_paths.py)
        shutil.rmtree(pointer.read_text().strip(), ignore_errors=True)


def test_first_start_from_a_private_folder_on_the_newest_python(private_folder: Path) -> None:
    """A clone in a 0700 folder, installed into its own .venv with the newest Python the machine has,
    starts on the embedded default, prints a working login, and carries an SDK round trip."""
    python = _newest_python()
    checkout = private_folder / "replyhq"
    shutil.copytree(ROOT, checkout, ignore=COPY_IGNORE)
    venv_python = checkout / ".venv" / "bin" / "python"
    subprocess.run([python, "-m", "venv", str(checkout / ".venv")], check=True)
    install = subprocess.run([str(venv_python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                              f"{checkout}[embedded]"], capture_output=True, text=True, check=False)
    assert install.returncode == 0, install.stdout + install.stderr
    start = FirstStart(str(venv_python), checkout, _embedded_env(), private_folder / "server.log")
    try:
        demo = start.demo()
        version = subprocess.run([str(venv_python), "-c", "import sys; print(sys.version)"], capture_output=True,
                                 text=True, check=True).stdout
        assert version.split()[0] == subprocess.run([python, "-c", "import sys; print(sys.version)"],
                                                    capture_output=True, text=True).stdout.split()[0]
        status, body = http("POST", start.server.url + "/admin/auth/login",
                            {"email": demo["Login"], "password": demo["Password"]})
        assert status == 200 and body["access_token"], body  # the printed login signs in
        asyncio.run(_sdk_round_trip(start.server.url, demo, "first-start-user"))
    finally:
        code = start.stop()
    assert code == 0, start.server.log()


def _is(child: psutil.Process, service: str) -> bool:
    names = ("postgres",) if service == "postgres" else ("valkey-server", "redis-server")
    return any(child.name().startswith(n) for n in names)


def _readiness(url: str) -> int:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=3) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return 0


def _wait_until(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_embedded_children_that_die_are_restarted_and_reaped(private_folder: Path) -> None:
    """SIGKILL the embedded Redis, then Postgres: each is restarted on its port and data, readiness
    follows, no <defunct> child is left, and the SDK works again with the same workspace."""
    start = FirstStart(sys.executable, ROOT, _embedded_env(DATA_DIR=str(private_folder / "data")),
                       private_folder / "server.log")
    try:
        demo = start.demo()
        url = start.server.url
        server = psutil.Process(start.proc.pid)
        for name in ("redis", "postgres"):
            child = next(c for c in server.children() if _is(c, name))
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=10)
            _wait_until(lambda name=name: f"embedded {name} restarted" in start.server.log())
            _wait_until(lambda: _readiness(url) == 200)
            zombies = [c for c in server.children() if c.status() == psutil.STATUS_ZOMBIE]
            assert not zombies, zombies
            replacement = next(c for c in server.children() if c.pid != child.pid and _is(c, name))
            assert replacement.is_running()
            asyncio.run(_sdk_round_trip(url, demo, f"after-{name}-restart"))
    finally:
        code = start.stop()
    assert code == 0, start.server.log()
