"""Redis: the replica's client, pub/sub subscriptions, and the one pipeline per tick it writes through."""
