"""Webhooks: signed deliveries of domain events to a workspace's endpoints (docs/webhooks.md)."""
