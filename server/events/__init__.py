"""Domain events: recorded in Postgres with the change they describe, relayed to a Redis Stream,
consumed by named groups that apply each once (see docs/events.md)."""
