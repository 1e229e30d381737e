"""Broadcasts: one message to every user of an audience, now, at a time or on a cron (docs/broadcasts.md)."""
