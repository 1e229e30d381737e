"""Ordered start and reverse-ordered stop of a replica's resources.

Each capability adds its steps when it is set up; a step that started is stopped, in the
reverse order, even when a later step failed to start (so nothing opened is left open).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger("replyhq.lifecycle")
Step = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class _Step:
    name: str
    start: Step | None
    stop: Step | None


class Lifecycle:
    def __init__(self) -> None:
        self._steps: list[_Step] = []
        self._started: list[_Step] = []

    def add(self, name: str, start: Step | None = None, stop: Step | None = None) -> None:
        self._steps.append(_Step(name, start, stop))

    @property
    def names(self) -> list[str]:
        return [s.name for s in self._steps]

    async def start(self) -> None:
        for step in self._steps:
            # Counted as started before it runs: a step that fails halfway still gets its stop.
            self._started.append(step)
            if step.start is not None:
                await step.start()

    async def stop(self) -> None:
        while self._started:
            step = self._started.pop()
            if step.stop is None:
                continue
            try:
                await step.stop()
            except Exception:  # one failing stop must not leave the later resources open
                log.exception("stopping %s failed", step.name)
