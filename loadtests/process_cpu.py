"""CPU seconds used so far by a set of processes, for the benchmarks' CPU-per-message figures."""

from __future__ import annotations

import psutil


def cpu_seconds(procs: list[psutil.Process]) -> float:
    """User plus system time of `procs`; a process that has exited counts nothing."""
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total
