"""Test support: real server processes on real Postgres and Redis."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server.dev.embedded import free_port
from server.platform.supervised_child import terminated_with_parent

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class ServerProcess:
    """One replica: `python -m server run` with the given environment (`module`: another entry point
    that runs the same server, e.g. with a test double of a port not built yet)."""

    env: dict[str, str]
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    module: str = "server"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> ServerProcess:
        self.port = self.port or free_port()
        env = {**os.environ, **self.env, "PORT": str(self.port)}
        assert self.log_path is not None
        logf = open(self.log_path, "ab")
        # SIGTERM when the test run (or the bench) that started it dies, however it dies: a replica
        # left behind keeps retrying its Postgres and Redis, and loads the machine, for good.
        self.proc = subprocess.Popen([sys.executable, "-m", self.module, "run"], cwd=ROOT, env=env,
                                     stdout=logf, stderr=subprocess.STDOUT,
                                     preexec_fn=terminated_with_parent)
        logf.close()
        if wait:
            try:
                self.wait_healthy()
            except BaseException:  # a replica that never came up must not outlive the test run
                self.stop(timeout=5)
                raise
        return self

    def wait_healthy(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.05)
        raise RuntimeError(f"server not healthy in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:] if self.log_path and self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


def http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
         raw: bytes | None = None, timeout: float = 10) -> tuple[int, Any]:
    """A tiny synchronous HTTP client: returns (status, parsed JSON or text)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method, headers={
        "content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, payload = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, payload = err.code, err.read()
    try:
        return status, json.loads(payload) if payload else None
    except ValueError:
        return status, payload.decode(errors="replace")
