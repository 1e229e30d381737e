"""What GET /admin/api/usage answers."""

from __future__ import annotations

import msgspec


class Series(msgspec.Struct, kw_only=True):
    total: int
    daily: list[int]  # one per day of the month (UTC), zeros after today


class Seats(msgspec.Struct, kw_only=True):
    total: int  # members who joined and were not removed, at the end of the month (today for this month)
    pending_invites: int  # invitations not yet accepted (now)
    daily: list[int | None]  # members at the end of each day; null for days still to come


class Messages(msgspec.Struct, kw_only=True):
    total: int
    daily: list[int]
    by_sender: dict[str, Series]  # user, admin (replies), note (private notes), bot, system


class Usage(msgspec.Struct, kw_only=True):
    month: str  # YYYY-MM
    timezone: str  # the days' zone: UTC
    days: list[str]  # YYYY-MM-DD, every day of the month
    seats: Seats
    active_users: Series  # distinct SDK users seen in the month; daily: first seen that day
    conversations: Series  # conversations started
    messages: Messages
    broadcast_recipients: Series
    workflow_runs: Series
    webhook_deliveries: Series  # deliveries created (one per event and endpoint, and pings); not retries
    api_calls: Series  # REST calls made with a secret (server) key
