"""Background work: the runtimes (runtime/) and one module per job (snoozes, event relay, event retention)."""
