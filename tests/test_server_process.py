"""The tests' (and the bench's) replicas, and the bench's Node driver, never outlive the process that
started them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import ROOT

_PARENT = """
import json, sys, time
from pathlib import Path
from tests.support import ServerProcess
srv = ServerProcess(json.loads(sys.argv[1]), log_path=Path(sys.argv[2])).start()
print(srv.proc.pid, flush=True)
time.sleep(600)
"""

# The bench's driver aimed at a port nobody listens on: it keeps trying to connect until stopped.
_BENCH = """
import time
from loadtests.bench import _driver
driver = _driver({"mode": "storm", "urls": ["http://127.0.0.1:9"], "apiKey": "k", "clients": 1, "holdS": 600})
print(driver.pid, flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purpose; its parent (init) reaps it.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _killed_leaves_nothing(parent: subprocess.Popen[bytes], what: str) -> None:
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert _alive(child)
    parent.send_signal(signal.SIGKILL)  # no cleanup of its own can run
    parent.wait()
    deadline = time.monotonic() + 20
    while _alive(child):
        assert time.monotonic() < deadline, f"the {what} outlived the process that started it"
        time.sleep(0.1)


def test_a_replica_stops_when_the_test_run_that_started_it_is_killed(server_env: dict[str, str],
                                                                      tmp_path: Path) -> None:
    parent = subprocess.Popen([sys.executable, "-c", _PARENT, json.dumps(server_env), str(tmp_path / "server.log")],
                              cwd=ROOT, stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    _killed_leaves_nothing(parent, "replica")


@pytest.mark.skipif(not (ROOT / "static" / "node_modules" / "socket.io-client").exists(),
                    reason="needs the bench's Node client (npm ci --prefix static)")
def test_the_bench_driver_stops_when_the_bench_that_started_it_is_killed() -> None:
    parent = subprocess.Popen([sys.executable, "-c", _BENCH], cwd=ROOT, stdout=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    _killed_leaves_nothing(parent, "bench driver")
