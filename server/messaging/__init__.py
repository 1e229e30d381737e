"""SDK messaging domain: end users, conversations, messages, receipts, sync."""
