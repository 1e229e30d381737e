"""Conversations: messages, receipts, the inbox and snoozes, for SDK users (/v1, /client) and agents (/admin)."""
