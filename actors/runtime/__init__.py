"""The generic actor runtime: partitions, leases, the host feeding each partition's commands. No domain here."""
