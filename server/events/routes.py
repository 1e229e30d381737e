"""GET /admin/api/events: a workspace's recent domain events, for support and debugging."""

from __future__ import annotations

import msgspec
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, raw

from server.auth.rbac import current_admin, requires
from server.context import context_of
from server.errors import ValidationFailed
from server.events import store
from server.events.catalog import EVENT_TYPES, DomainEvent
from server.http.openapi import Operation, document
from server.http.query_params import int_param

bp = Blueprint("admin_events", url_prefix="/admin/api/events")
_encode = msgspec.json.Encoder().encode


class EventPage(msgspec.Struct, kw_only=True):
    events: list[DomainEvent]
    next_cursor: str | None  # pass as ?cursor= for older events; null at the end


LIST_EVENTS = Operation(
    "GET", "/admin/api/events", "The workspace's domain events, newest first", "events",
    response=EventPage, auth="admin_jwt", errors=(403, 422),
    params=(("type", "query", "only these types (comma-separated; see GET /docs/events)"),
            ("cursor", "query", "next_cursor of the previous page"),
            ("limit", "query", "events per page (1-200, default 50)",
             {"type": "integer", "minimum": 1, "maximum": 200})))
document(LIST_EVENTS)


def _types(request: Request) -> list[str] | None:
    raw = request.args.get("type")
    if raw is None or raw == "":
        return None
    types = [t.strip() for t in raw.split(",") if t.strip()]
    unknown = [t for t in types if t not in EVENT_TYPES]
    if unknown or not types:
        raise ValidationFailed("unknown event type: see GET /docs/events for the list",
                               {"path": "?type", "value": raw[:100]}, code="invalid_query")
    return types


def _cursor(request: Request) -> int | None:
    raw = request.args.get("cursor")
    if raw is None or raw == "":
        return None
    digits = raw.removeprefix("evt_")
    if not digits.isdigit() or len(digits) > 18:
        raise ValidationFailed("cursor must be the next_cursor of a previous page",
                               {"path": "?cursor", "value": raw[:50]}, code="invalid_query")
    return int(digits)


@bp.get("")
@requires("events.read")
async def list_events(request: Request) -> HTTPResponse:
    types, before = _types(request), _cursor(request)
    limit = int_param(request, "limit", 50, lo=1, hi=200) or 50
    events = await store.list_for_app(context_of(request).pool, current_admin(request).app_id, types=types,
                                      before=before, limit=limit + 1)
    more = len(events) > limit
    page = events[:limit]
    body = _encode(EventPage(events=page, next_cursor=page[-1].id if more and page else None))
    return raw(body, status=LIST_EVENTS.status, content_type="application/json")
