"""/admin/webhooks: endpoints (CRUD, test ping, secret rotation), their delivery log and replays, and
the event types an endpoint can subscribe to."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import msgspec
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, raw

from server.auth.rbac import current_admin, requires
from server.context import context_of
from server.errors import Conflict, NotFound, ValidationFailed
from server.http.openapi import Operation, document
from server.http.pagination import Cursor
from server.http.payloads import decode_body
from server.http.query_params import int_param
from server.platform import ssrf
from server.webhooks import signing, store
from server.webhooks.deliveries import Body
from server.webhooks.event_types import WEBHOOK_TYPES, schemas
from server.webhooks.schemas import (
    CreatedEndpoint,
    Deleted,
    Delivery,
    DeliveryDetail,
    DeliveryPage,
    Endpoint,
    EndpointList,
    EndpointPatch,
    EventType,
    EventTypeList,
    NewEndpoint,
    PingResult,
    RotatedSecret,
)

bp = Blueprint("admin_webhooks", url_prefix="/admin/webhooks")
_encode = msgspec.json.Encoder().encode
_ID = ("endpoint_id", "path", "webhook endpoint id (uuid)", {"type": "string", "format": "uuid"})
_DELIVERY_ID = ("delivery_id", "path", "delivery id (uuid)", {"type": "string", "format": "uuid"})
_URL_NOTE = ("`url`: absolute http(s), at most 2048 characters. A host that does not resolve, or that resolves "
             "to a loopback, private, link-local or cloud-metadata address, is a 422 `url_not_allowed` (unless "
             "the server runs with WEBHOOKS_ALLOW_PRIVATE). `event_types`: names from GET "
             "/admin/webhooks/event-types, or null for all; an unknown one is a 422 `unknown_event_type`.")

LIST = Operation("GET", "/admin/webhooks", "The workspace's webhook endpoints, with their health", "webhooks",
                 response=EndpointList, auth="admin_jwt", errors=(403,))
CREATE = Operation("POST", "/admin/webhooks", "Add an endpoint; the response is the only time its secret is shown",
                   "webhooks", body=NewEndpoint, response=CreatedEndpoint, auth="admin_jwt", errors=(403,),
                   status=201, extra={"description": _URL_NOTE})
EVENT_TYPES = Operation("GET", "/admin/webhooks/event-types",
                        "The event types an endpoint can subscribe to, each with the JSON Schema of its data",
                        "webhooks", response=EventTypeList, auth="admin_jwt", errors=(403,))
GET = Operation("GET", "/admin/webhooks/{endpoint_id}", "One endpoint, with its health", "webhooks",
                response=Endpoint, auth="admin_jwt", params=(_ID,), errors=(403, 404))
PATCH = Operation("PATCH", "/admin/webhooks/{endpoint_id}",
                  "Change an endpoint's URL, description, event types or enabled flag (enabling clears a "
                  "disablement)", "webhooks", body=EndpointPatch, response=Endpoint, auth="admin_jwt", params=(_ID,),
                  errors=(403, 404), extra={"description": _URL_NOTE})
DELETE = Operation("DELETE", "/admin/webhooks/{endpoint_id}", "Delete an endpoint and its delivery log", "webhooks",
                   response=Deleted, auth="admin_jwt", params=(_ID,), errors=(403, 404))
TEST = Operation("POST", "/admin/webhooks/{endpoint_id}/test",
                 "Send a signed webhook.ping now (once, even to a disabled endpoint) and return the attempt",
                 "webhooks", response=PingResult, auth="admin_jwt", params=(_ID,), errors=(403, 404))
ROTATE = Operation("POST", "/admin/webhooks/{endpoint_id}/rotate-secret",
                   "A new signing secret, shown once; the old one also signs for 24 hours", "webhooks",
                   response=RotatedSecret, auth="admin_jwt", params=(_ID,), errors=(403, 404))
DELIVERIES = Operation(
    "GET", "/admin/webhooks/{endpoint_id}/deliveries", "The endpoint's deliveries, newest first", "webhooks",
    response=DeliveryPage, auth="admin_jwt", errors=(403, 404, 422),
    params=(_ID, ("status", "query", "only deliveries in this state",
                  {"type": "string", "enum": ["pending", "delivered", "failed"]}),
            ("cursor", "query", "next_cursor of the previous page"),
            ("limit", "query", "deliveries per page (1-200, default 50)",
             {"type": "integer", "minimum": 1, "maximum": 200})))
DELIVERY = Operation("GET", "/admin/webhooks/{endpoint_id}/deliveries/{delivery_id}",
                     "One delivery: the body as sent and every attempt (status, latency, response)", "webhooks",
                     response=DeliveryDetail, auth="admin_jwt", params=(_ID, _DELIVERY_ID), errors=(403, 404))
REPLAY = Operation("POST", "/admin/webhooks/{endpoint_id}/deliveries/{delivery_id}/replay",
                   "Send a delivery again now, with the same webhook-id and a fresh schedule of attempts", "webhooks",
                   response=DeliveryDetail, auth="admin_jwt",
                   params=(_ID, _DELIVERY_ID), errors=(403, 404, 409),
                   extra={"description": "409 `endpoint_disabled` while the endpoint is disabled (enable it first); "
                                         "409 `delivery_in_flight` while an attempt of it is under way."})
document(LIST, CREATE, EVENT_TYPES, GET, PATCH, DELETE, TEST, ROTATE, DELIVERIES, DELIVERY, REPLAY)


def _json(value: Any, status: int = 200) -> HTTPResponse:
    return raw(_encode(value), status=status, content_type="application/json")


def _check_types(types: list[str] | None) -> list[str] | None:
    if types is None:
        return None
    unknown = [t for t in types if t not in WEBHOOK_TYPES]
    if unknown:
        raise ValidationFailed("unknown event type: see GET /admin/webhooks/event-types",
                               {"path": "$.event_types", "unknown": unknown[:10]}, code="unknown_event_type")
    return sorted(set(types))


async def _check_url(request: Request, url: str) -> str:
    try:
        return await ssrf.check_url(url, allow_private=context_of(request).settings.webhooks_allow_private)
    except ssrf.UrlRefused as exc:
        raise ValidationFailed(str(exc), {"path": "$.url", "reason": exc.reason}, code="url_not_allowed") from None


async def _endpoint_or_404(request: Request, endpoint_id: UUID) -> Endpoint:
    endpoint = await store.get_endpoint(context_of(request).pool, current_admin(request).app_id, endpoint_id)
    if endpoint is None:
        raise NotFound("no such webhook endpoint", code="webhook_not_found")
    return endpoint


@bp.get("")
@requires("webhooks.read")
async def list_endpoints(request: Request) -> HTTPResponse:
    found = await store.list_endpoints(context_of(request).pool, current_admin(request).app_id)
    return _json(EndpointList(endpoints=found))


@bp.post("")
@requires("webhooks.write")
async def create_endpoint(request: Request) -> HTTPResponse:
    body = decode_body(request, NewEndpoint)
    types = _check_types(body.event_types)
    url = await _check_url(request, body.url)
    me = current_admin(request)
    secret = signing.new_secret()
    endpoint = await store.create_endpoint(context_of(request).pool, me.app_id, me.admin_id, url=url,
                                           description=body.description, event_types=types, enabled=body.enabled,
                                           secret=secret)
    return _json(CreatedEndpoint(endpoint=endpoint, secret=secret), CREATE.status)


@bp.get("/event-types")
@requires("webhooks.read")
async def event_types(request: Request) -> HTTPResponse:
    described = schemas()
    return _json(EventTypeList(event_types=[EventType(type=t, description=d, schema=described[t])
                                            for t, (d, _) in WEBHOOK_TYPES.items()]))


@bp.get("/<endpoint_id:uuid>")
@requires("webhooks.read")
async def get_endpoint(request: Request, endpoint_id: UUID) -> HTTPResponse:
    return _json(await _endpoint_or_404(request, endpoint_id))


@bp.patch("/<endpoint_id:uuid>")
@requires("webhooks.write")
async def update_endpoint(request: Request, endpoint_id: UUID) -> HTTPResponse:
    body = decode_body(request, EndpointPatch)
    changes: dict[str, Any] = {}
    if body.event_types is not msgspec.UNSET:
        changes["event_types"] = _check_types(body.event_types)
    if body.url is not msgspec.UNSET:
        changes["url"] = await _check_url(request, body.url)
    if body.description is not msgspec.UNSET:
        changes["description"] = body.description
    if body.enabled is not msgspec.UNSET:
        changes["enabled"] = body.enabled
    me = current_admin(request)
    endpoint = await store.update_endpoint(context_of(request).pool, me.app_id, me.admin_id, endpoint_id, changes)
    if endpoint is None:
        raise NotFound("no such webhook endpoint", code="webhook_not_found")
    return _json(endpoint)


@bp.delete("/<endpoint_id:uuid>")
@requires("webhooks.write")
async def delete_endpoint(request: Request, endpoint_id: UUID) -> HTTPResponse:
    me = current_admin(request)
    if not await store.delete_endpoint(context_of(request).pool, me.app_id, me.admin_id, endpoint_id):
        raise NotFound("no such webhook endpoint", code="webhook_not_found")
    return _json(Deleted(id=str(endpoint_id)))


@bp.post("/<endpoint_id:uuid>/test")
@requires("webhooks.write")
async def test_endpoint(request: Request, endpoint_id: UUID) -> HTTPResponse:
    ctx, me = context_of(request), current_admin(request)
    now = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    data = msgspec.json.encode({"endpoint_id": str(endpoint_id), "message": "A test ping from ReplyHQ."})
    payload = _encode(Body("webhook.ping", now, msgspec.Raw(data)))
    result = await ctx.webhooks.ping(me.app_id, endpoint_id, payload)
    if result is None:
        raise NotFound("no such webhook endpoint", code="webhook_not_found")
    detail = await store.get_delivery(ctx.pool, me.app_id, endpoint_id, result.job.id)
    if detail is None:  # deleted meanwhile
        raise NotFound("no such webhook endpoint", code="webhook_not_found")
    base = msgspec.structs.asdict(detail)
    for extra in ("payload", "attempt_log"):
        base.pop(extra)
    return _json(PingResult(delivery=Delivery(**base), attempt=detail.attempt_log[-1]))


@bp.post("/<endpoint_id:uuid>/rotate-secret")
@requires("webhooks.write")
async def rotate_secret(request: Request, endpoint_id: UUID) -> HTTPResponse:
    me = current_admin(request)
    secret = signing.new_secret()
    endpoint = await store.rotate_secret(context_of(request).pool, me.app_id, me.admin_id, endpoint_id, secret)
    if endpoint is None:
        raise NotFound("no such webhook endpoint", code="webhook_not_found")
    expires = endpoint.previous_secret_expires_at or datetime.now(UTC) + timedelta(hours=24)
    return _json(RotatedSecret(endpoint=endpoint, secret=secret, previous_secret_expires_at=expires))


@bp.get("/<endpoint_id:uuid>/deliveries")
@requires("webhooks.read")
async def list_deliveries(request: Request, endpoint_id: UUID) -> HTTPResponse:
    status = request.args.get("status") or None
    if status is not None and status not in ("pending", "delivered", "failed"):
        raise ValidationFailed("status must be pending, delivered or failed", {"path": "?status", "value": status[:50]},
                               code="invalid_query")
    cursor = None
    if request.args.get("cursor"):
        try:
            cursor = Cursor.decode(request.args.get("cursor", ""))
        except ValueError:
            raise ValidationFailed("query parameter cursor is not a cursor this API returned", {"path": "?cursor"},
                                   code="invalid_query") from None
    limit = int_param(request, "limit", 50, lo=1, hi=200) or 50
    await _endpoint_or_404(request, endpoint_id)
    found, next_cursor = await store.list_deliveries(context_of(request).pool, current_admin(request).app_id,
                                                     endpoint_id, status=status, cursor=cursor, limit=limit)
    return _json(DeliveryPage(deliveries=found, next_cursor=next_cursor.encode() if next_cursor else None))


@bp.get("/<endpoint_id:uuid>/deliveries/<delivery_id:uuid>")
@requires("webhooks.read")
async def get_delivery(request: Request, endpoint_id: UUID, delivery_id: UUID) -> HTTPResponse:
    detail = await store.get_delivery(context_of(request).pool, current_admin(request).app_id, endpoint_id,
                                      delivery_id)
    if detail is None:
        raise NotFound("no such delivery", code="delivery_not_found")
    return _json(detail)


@bp.post("/<endpoint_id:uuid>/deliveries/<delivery_id:uuid>/replay")
@requires("webhooks.write")
async def replay(request: Request, endpoint_id: UUID, delivery_id: UUID) -> HTTPResponse:
    pool, app_id = context_of(request).pool, current_admin(request).app_id
    endpoint = await _endpoint_or_404(request, endpoint_id)
    if not endpoint.enabled:
        raise Conflict("the endpoint is disabled: enable it, then replay",
                       {"disabled_reason": endpoint.disabled_reason}, code="endpoint_disabled")
    outcome, _ = await store.replay(pool, app_id, endpoint_id, delivery_id)
    if outcome == "not_found":
        raise NotFound("no such delivery", code="delivery_not_found")
    if outcome == "in_flight":
        raise Conflict("an attempt of this delivery is under way", code="delivery_in_flight")
    detail = await store.get_delivery(pool, app_id, endpoint_id, delivery_id)
    if detail is None:
        raise NotFound("no such delivery", code="delivery_not_found")
    return _json(detail)
