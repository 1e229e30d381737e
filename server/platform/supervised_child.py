"""A child process that lives as long as its parent: started, restarted when it exits on its own
(with a growing pause), and stopped (SIGTERM, then SIGKILL after a grace period).

The child must end itself when the parent dies without stopping it (a SIGKILL): see
`exit_with_parent`, which it calls first thing.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence

log = logging.getLogger("replyhq.supervised_child")
_PR_SET_PDEATHSIG = 1


class SupervisedChild:
    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], *, grace_s: float = 10.0,
                 on_restart: Callable[[], None] | None = None, min_pause_s: float = 0.5,
                 max_pause_s: float = 10.0) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.grace_s = grace_s
        self.on_restart = on_restart
        self.min_pause_s = min_pause_s
        self.max_pause_s = max_pause_s
        self.process: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        await self._spawn()
        self._task = asyncio.create_task(self._watch(), name=f"supervise-{self.name}")

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        proc = self.process
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), self.grace_s)
        except TimeoutError:
            log.warning("%s did not stop within %.0f s: killing it", self.name, self.grace_s)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    async def _spawn(self) -> None:
        self.process = await asyncio.create_subprocess_exec(*self.argv, env=self.env,
                                                            stdin=asyncio.subprocess.DEVNULL)
        log.info("%s started (pid %s)", self.name, self.process.pid)

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        pause = self.min_pause_s
        while True:
            assert self.process is not None
            started = loop.time()
            code = await self.process.wait()
            if self._stopping:
                return
            if loop.time() - started > 30:  # it ran a while: a new failure, not a crash loop
                pause = self.min_pause_s
            log.error("%s exited with %s: restarting it in %.1f s", self.name, code, pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, self.max_pause_s)
            try:
                await self._spawn()
            except OSError:
                log.exception("%s could not be started", self.name)
                continue
            if self.on_restart is not None:
                self.on_restart()


def die_with_parent(sig: int) -> None:
    """Ask Linux to send `sig` to this process when its parent dies (elsewhere: nothing)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, sig)


def terminated_with_parent() -> None:
    """A `preexec_fn` (or a child's first step): SIGTERM when the parent dies, so a child stops
    cleanly whether the process that started it exits, crashes or is killed."""
    die_with_parent(signal.SIGTERM)


def exit_with_parent(parent_pid: int) -> None:
    """In the child: receive SIGTERM when the parent dies, and exit now if it already has."""
    terminated_with_parent()
    if not parent_alive(parent_pid):
        raise SystemExit(f"parent {parent_pid} is gone")


def parent_alive(parent_pid: int) -> bool:
    """Where PDEATHSIG is missing, the child polls this: an orphan is adopted by another process."""
    return os.getppid() == parent_pid
