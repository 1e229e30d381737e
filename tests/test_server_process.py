"""The tests' (and the bench's) replicas never outlive the process that started them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support import ROOT

_PARENT = """
import json, sys, time
from pathlib import Path
from tests.support import ServerProcess
srv = ServerProcess(json.loads(sys.argv[1]), log_path=Path(sys.argv[2])).start()
print(srv.proc.pid, flush=True)
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


def test_a_replica_stops_when_the_test_run_that_started_it_is_killed(server_env: dict[str, str],
                                                                      tmp_path: Path) -> None:
    parent = subprocess.Popen([sys.executable, "-c", _PARENT, json.dumps(server_env), str(tmp_path / "server.log")],
                              cwd=ROOT, stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert parent.stdout is not None
    replica = int(parent.stdout.readline())
    assert _alive(replica)
    parent.send_signal(signal.SIGKILL)  # no cleanup of its own can run
    parent.wait()
    deadline = time.monotonic() + 20
    while _alive(replica):
        assert time.monotonic() < deadline, "the replica outlived the process that started it"
        time.sleep(0.1)
