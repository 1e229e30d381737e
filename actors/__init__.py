"""Actors on Redis Streams: the generic runtime (runtime/) and one module per actor kind (conversation)."""
