"""/admin/api/segments: saved audience filters (CRUD) and the preview of a filter (count and sample)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, raw

from server.auth.rbac import current_admin, requires
from server.context import context_of
from server.errors import NotFound
from server.http.openapi import Operation, document
from server.http.payloads import decode_body
from server.segments import audience, store
from server.segments.filters import parse_filter
from server.segments.schemas import (
    Deleted,
    NewSegment,
    Preview,
    PreviewRequest,
    Segment,
    SegmentList,
    SegmentPatch,
)

bp = Blueprint("admin_segments", url_prefix="/admin/api/segments")
_encode = msgspec.json.Encoder().encode
_ID = ("segment_id", "path", "segment id (uuid)", {"type": "string", "format": "uuid"})
_FILTER_NOTE = ("A filter that fails validation (unknown field, an op the field does not take, a value of the wrong "
                "type, deeper than 4, over 50 conditions or 50 groups) is a 422 whose details.path names the node, "
                "e.g. $.filter.all[2].value. Fields and ops: docs/broadcasts.md, Segments.")

LIST = Operation("GET", "/admin/api/segments", "The app's segments (saved audience filters), newest first",
                 "segments", response=SegmentList, auth="admin_jwt", errors=(403,))
CREATE = Operation("POST", "/admin/api/segments", "Save a segment: a name and a filter", "segments",
                   body=NewSegment, response=Segment, auth="admin_jwt", errors=(403,), status=201,
                   extra={"description": _FILTER_NOTE})
PREVIEW = Operation("POST", "/admin/api/segments/preview",
                    "How many users a filter selects now, and the 20 most recently seen of them", "segments",
                    body=PreviewRequest, response=Preview, auth="admin_jwt", errors=(403,),
                    extra={"description": _FILTER_NOTE})
GET = Operation("GET", "/admin/api/segments/{segment_id}", "One segment", "segments", response=Segment,
                auth="admin_jwt", params=(_ID,), errors=(403, 404))
PATCH = Operation("PATCH", "/admin/api/segments/{segment_id}", "Rename a segment or change its filter", "segments",
                  body=SegmentPatch, response=Segment, auth="admin_jwt", params=(_ID,), errors=(403, 404),
                  extra={"description": _FILTER_NOTE})
DELETE = Operation("DELETE", "/admin/api/segments/{segment_id}", "Delete a segment", "segments", response=Deleted,
                   auth="admin_jwt", params=(_ID,), errors=(403, 404))
document(LIST, CREATE, PREVIEW, GET, PATCH, DELETE)


def _json(value: Any, status: int = 200) -> HTTPResponse:
    return raw(_encode(value), status=status, content_type="application/json")


def _not_found() -> NotFound:
    return NotFound("no such segment", code="segment_not_found")


@bp.get("")
@requires("broadcasts.read")
async def list_segments(request: Request) -> HTTPResponse:
    found = await store.list_segments(context_of(request).pool, current_admin(request).app_id)
    return _json(SegmentList(segments=found))


@bp.post("")
@requires("broadcasts.write")
async def create_segment(request: Request) -> HTTPResponse:
    body = decode_body(request, NewSegment)
    f = parse_filter(body.filter)
    me = current_admin(request)
    segment = await store.create_segment(context_of(request).pool, me.app_id, me.admin_id, name=body.name, f=f)
    return _json(segment, CREATE.status)


@bp.post("/preview")
@requires("broadcasts.read")
async def preview(request: Request) -> HTTPResponse:
    body = decode_body(request, PreviewRequest)
    f = parse_filter(body.filter)
    ctx, me = context_of(request), current_admin(request)
    out = await audience.preview(ctx.pool, me.app_id, f, online=await ctx.online.online_user_ids(me.app_id))
    return _json(out)


@bp.get("/<segment_id:uuid>")
@requires("broadcasts.read")
async def get_segment(request: Request, segment_id: UUID) -> HTTPResponse:
    segment = await store.get_segment(context_of(request).pool, current_admin(request).app_id, segment_id)
    if segment is None:
        raise _not_found()
    return _json(segment)


@bp.patch("/<segment_id:uuid>")
@requires("broadcasts.write")
async def update_segment(request: Request, segment_id: UUID) -> HTTPResponse:
    body = decode_body(request, SegmentPatch)
    f = parse_filter(body.filter) if body.filter is not msgspec.UNSET else None
    name = body.name if body.name is not msgspec.UNSET else None
    me = current_admin(request)
    segment = await store.update_segment(context_of(request).pool, me.app_id, me.admin_id, segment_id, name=name, f=f)
    if segment is None:
        raise _not_found()
    return _json(segment)


@bp.delete("/<segment_id:uuid>")
@requires("broadcasts.write")
async def delete_segment(request: Request, segment_id: UUID) -> HTTPResponse:
    me = current_admin(request)
    if not await store.delete_segment(context_of(request).pool, me.app_id, me.admin_id, segment_id):
        raise _not_found()
    return _json(Deleted(id=str(segment_id)))
