"""The cyclic garbage collector tuned for a long-running server process."""

from __future__ import annotations

import gc


def freeze_long_lived() -> None:
    """Call once start-up is done. Everything built so far lives as long as the process: keep it
    out of the cyclic GC's scans, and collect young objects less often. With thousands of sockets
    (a replica) or thousands of events a second (its event worker process), the default thresholds
    spend a large share of CPU re-scanning long-lived objects."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
