"""Usage: what each workspace used per UTC day and month (seats, active users, conversations,
messages by sender kind, broadcast recipients, workflow runs, webhook deliveries, secret-key API
calls), counted as it happens and read by GET /admin/api/usage."""
