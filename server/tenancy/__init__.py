"""Tenancy: apps (workspaces), their API keys and admins."""
