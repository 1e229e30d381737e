"""What the webhook routes take and answer (msgspec Structs)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from server.conversations.models import NO_NUL

WebhookUrl = Annotated[str, Meta(min_length=1, max_length=2048, pattern=NO_NUL)]
Description = Annotated[str, Meta(max_length=500, pattern=NO_NUL)]
EventTypeName = Annotated[str, Meta(min_length=1, max_length=100, pattern=NO_NUL)]
EventTypes = Annotated[list[EventTypeName], Meta(min_length=1, max_length=50)]
DeliveryStatus = Literal["pending", "delivered", "failed"]


class NewEndpoint(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    url: WebhookUrl
    description: Description = ""
    event_types: EventTypes | None = None  # null or absent: every type (GET /admin/webhooks/event-types)
    enabled: bool = True


class EndpointPatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    url: WebhookUrl | msgspec.UnsetType = msgspec.UNSET
    description: Description | msgspec.UnsetType = msgspec.UNSET
    event_types: EventTypes | msgspec.UnsetType | None = msgspec.UNSET
    enabled: bool | msgspec.UnsetType = msgspec.UNSET


class Health(msgspec.Struct, kw_only=True):
    recent_attempts: int  # of the endpoint's last 50 attempts
    success_rate: float | None  # share of them answered 2xx; null before the first attempt
    last_attempt_at: datetime | None
    last_status: int | None  # HTTP status of the last attempt (null: no answer)
    failing_since: datetime | None  # start of an unbroken run of failures (5 days of it disables)
    pending: int  # deliveries waiting for their next attempt


class Endpoint(msgspec.Struct, kw_only=True):
    id: str
    url: str
    description: str
    event_types: list[str] | None
    enabled: bool
    disabled_reason: str | None  # gone (answered 410), failing (5 days of failures), or null
    previous_secret_expires_at: datetime | None  # until then deliveries carry both signatures
    created_at: datetime
    updated_at: datetime
    health: Health


class EndpointList(msgspec.Struct, kw_only=True):
    endpoints: list[Endpoint]


class CreatedEndpoint(msgspec.Struct, kw_only=True):
    endpoint: Endpoint
    secret: str  # whsec_...: the only time it is shown


class RotatedSecret(msgspec.Struct, kw_only=True):
    endpoint: Endpoint
    secret: str  # the new secret, shown once
    previous_secret_expires_at: datetime  # the old one keeps signing (second signature) until then


class Deleted(msgspec.Struct, kw_only=True):
    id: str
    deleted: bool = True


class Attempt(msgspec.Struct, kw_only=True):
    attempt: int  # 1, 2, ...
    status_code: int | None  # null: no HTTP answer (timed out, refused, unreachable)
    error: str | None
    latency_ms: int
    response: str  # the first KB of the answer's body
    created_at: datetime


class Delivery(msgspec.Struct, kw_only=True):
    id: str
    endpoint_id: str
    webhook_id: str  # the webhook-id header: the same on every attempt
    event_id: str | None  # evt_<n> (GET /admin/api/events); null for a ping
    event_type: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None  # when pending
    last_status: int | None
    created_at: datetime
    updated_at: datetime


class DeliveryPage(msgspec.Struct, kw_only=True):
    deliveries: list[Delivery]
    next_cursor: str | None  # pass as ?cursor= for older deliveries; null at the end


class DeliveryDetail(Delivery, kw_only=True):
    payload: Any  # the body as sent: {type, timestamp, data}
    attempt_log: list[Attempt]


class PingResult(msgspec.Struct, kw_only=True):
    delivery: Delivery
    attempt: Attempt


class EventType(msgspec.Struct, kw_only=True):
    type: str
    description: str
    schema: dict[str, Any]  # JSON Schema of the body's `data`


class EventTypeList(msgspec.Struct, kw_only=True):
    event_types: list[EventType]
