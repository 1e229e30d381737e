"""What the broadcast routes take and answer (msgspec Structs); the stored jsonb uses the same shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from msgspec import Meta

from server.conversations.models import NO_NUL

Status = Literal["draft", "scheduled", "sending", "paused", "completed", "cancelled", "failed"]
RunStatus = Literal["pending", "snapshotting", "sending", "paused", "completed", "cancelled", "failed"]
RecipientState = Literal["queued", "sent", "delivered", "read", "failed"]
RECIPIENT_STATES: tuple[RecipientState, ...] = ("queued", "sent", "delivered", "read", "failed")  # index = stored

Name = Annotated[str, Meta(min_length=1, max_length=200, pattern=NO_NUL)]
Text = Annotated[str, Meta(min_length=1, max_length=5000, pattern=NO_NUL)]
ButtonUrl = Annotated[str, Meta(min_length=1, max_length=2048, pattern=NO_NUL)]
ButtonLabel = Annotated[str, Meta(min_length=1, max_length=40, pattern=NO_NUL)]
Timezone = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_+\-/]+$",
                               description="an IANA time zone name, e.g. Europe/Paris or UTC")]
LocalTime = Annotated[str, Meta(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}$",
                                description="a local wall-clock time in `timezone`, YYYY-MM-DDTHH:MM")]
Cron = Annotated[str, Meta(min_length=9, max_length=200, pattern=r"^[0-9A-Za-z*/,\-?#L ]+$",
                           description="5 cron fields: minute hour day-of-month month day-of-week")]
Rate = Annotated[int, Meta(ge=1, le=1_000_000, description="recipients per second (at most BROADCAST_MAX_RATE)")]
AwareTime = Annotated[datetime, Meta(tz=True)]


class Message(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    text: Text  # {{user.name|fallback}}, {{user.email}}, {{user.external_id}}, {{user.custom.<name>}}
    sender_admin_id: UUID | None = None  # a teammate; the caller when absent
    button_url: ButtonUrl | None = None  # absolute http(s)
    button_label: ButtonLabel | None = None  # with button_url


class Audience(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """Exactly one of: a segment of the workspace, or an inline filter (docs/broadcasts.md, Segments)."""
    segment_id: UUID | None = None
    filter: dict[str, Any] | None = None


class Now(msgspec.Struct, tag="now", tag_field="kind", forbid_unknown_fields=True):
    pass


class Once(msgspec.Struct, tag="once", tag_field="kind", forbid_unknown_fields=True, kw_only=True):
    at: LocalTime
    timezone: Timezone


class Recurring(msgspec.Struct, tag="recurring", tag_field="kind", forbid_unknown_fields=True, kw_only=True):
    cron: Cron
    timezone: Timezone
    end_at: AwareTime | None = None  # no occurrence after this instant
    every_occurrence: bool = False  # false: a user gets only the first occurrence that reaches them


Schedule = Now | Once | Recurring


class NewBroadcast(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Name
    message: Message
    audience: Audience
    schedule: Schedule = msgspec.field(default_factory=Now)
    rate_per_s: Rate | None = None  # BROADCAST_DEFAULT_RATE when absent


class BroadcastPatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A draft's fields, each replaced whole when given."""
    name: Name | msgspec.UnsetType = msgspec.UNSET
    message: Message | msgspec.UnsetType = msgspec.UNSET
    audience: Audience | msgspec.UnsetType = msgspec.UNSET
    schedule: Schedule | msgspec.UnsetType = msgspec.UNSET
    rate_per_s: Rate | msgspec.UnsetType = msgspec.UNSET


class Stats(msgspec.Struct, kw_only=True):
    targeted: int = 0
    sent: int = 0
    delivered: int = 0
    read: int = 0
    replied: int = 0
    clicked: int = 0
    failed: int = 0


class RunProgress(msgspec.Struct, kw_only=True):
    """The broadcast's current (or last) run, for a progress bar."""
    id: str
    status: RunStatus
    scheduled_for: datetime
    targeted: int
    sent: int
    snapshot_done: bool
    error: str | None


class Broadcast(msgspec.Struct, kw_only=True):
    id: str
    name: str
    status: Status
    message: Message
    audience: Audience
    schedule: Schedule
    rate_per_s: int
    next_run_at: datetime | None
    created_by: str | None
    created_at: datetime
    updated_at: datetime
    stats: Stats  # totals over every run
    current_run: RunProgress | None


class BroadcastItem(msgspec.Struct, kw_only=True):
    id: str
    name: str
    status: Status
    schedule_kind: Literal["now", "once", "recurring"]
    next_run_at: datetime | None
    created_at: datetime
    updated_at: datetime
    stats: Stats
    current_run: RunProgress | None


class BroadcastList(msgspec.Struct, kw_only=True):
    broadcasts: list[BroadcastItem]
    next_cursor: str | None  # pass as ?cursor= for older broadcasts; null at the end


class Deleted(msgspec.Struct, kw_only=True):
    id: str
    deleted: bool = True


class Run(msgspec.Struct, kw_only=True):
    id: str
    scheduled_for: datetime
    status: RunStatus
    snapshot_done: bool
    sent_through: int
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    stats: Stats


class RunList(msgspec.Struct, kw_only=True):
    runs: list[Run]  # newest occurrence first
    next_cursor: str | None


class FunnelStep(msgspec.Struct, kw_only=True):
    step: Literal["targeted", "sent", "delivered", "read", "clicked", "replied"]
    count: int
    rate: float | None  # of targeted (null while nothing is targeted)


class MinuteBucket(msgspec.Struct, kw_only=True):
    minute: datetime
    sent: int
    delivered: int
    read: int
    replied: int
    clicked: int
    failed: int


class BroadcastStats(msgspec.Struct, kw_only=True):
    broadcast_id: str
    run_id: str | None  # the run asked for (?run_id), null for totals over every run
    totals: Stats
    funnel: list[FunnelStep]
    minutes: list[MinuteBucket]  # oldest first, at most the last 1,440 minutes with activity


class Recipient(msgspec.Struct, kw_only=True):
    delivery_id: str  # "<run_id>.<ord>"
    run_id: str
    ord: int
    user_id: str
    external_id: str | None
    name: str | None
    email: str | None
    state: RecipientState
    sent_at: datetime | None
    delivered_at: datetime | None
    read_at: datetime | None
    clicked_at: datetime | None
    replied_at: datetime | None
    conversation_id: str | None
    failed_reason: str | None


class RecipientPage(msgspec.Struct, kw_only=True):
    run_id: str | None  # the run listed (?run_id, or the latest run); null before the first run
    recipients: list[Recipient]
    next_cursor: str | None


class CronPreviewRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    cron: Cron
    timezone: Timezone
    count: Annotated[int, Meta(ge=1, le=50)] = 5


class CronTime(msgspec.Struct, kw_only=True):
    utc: str  # 2026-03-30T07:00:00Z
    local: str  # 2026-03-30T09:00:00+02:00


class CronPreview(msgspec.Struct, kw_only=True):
    cron: str  # normalised (single spaces)
    timezone: str
    times: list[CronTime]
    min_interval_s: int  # BROADCAST_MIN_INTERVAL
    meets_min_interval: bool  # false: scheduling this cron would be refused (422 interval_too_short)
