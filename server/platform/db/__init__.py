"""Postgres access: the pool and the migration runner (each capability keeps its own migrations/)."""
