"""Actor runtime on Redis Streams: partitions leased one replica at a time, a command stream per
partition, group processing, replies to whichever replica is waiting."""
