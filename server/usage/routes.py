"""GET /admin/api/usage: the workspace's usage for a month, with a daily series of each meter."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

import msgspec
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, raw

from server.auth.rbac import current_admin, requires
from server.context import context_of
from server.errors import ValidationFailed
from server.http.openapi import Operation, document
from server.usage import store
from server.usage.schemas import Usage

bp = Blueprint("admin_usage", url_prefix="/admin/api/usage")
_encode = msgspec.json.Encoder().encode
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")

GET_USAGE = Operation(
    "GET", "/admin/api/usage", "The workspace's usage in a month (UTC days), with daily series", "usage",
    response=Usage, auth="admin_jwt", errors=(403, 422),
    params=(("month", "query", "YYYY-MM (default: the current month, UTC)",
             {"type": "string", "pattern": "^[0-9]{4}-(0[1-9]|1[0-2])$"}),))
document(GET_USAGE)


def month_param(request: Request, today: date) -> date:
    raw_value = request.args.get("month")
    if raw_value is None or raw_value == "":
        return today.replace(day=1)
    found = _MONTH.match(raw_value)
    if found is None or not 2000 <= int(found.group(1)) <= 2999:
        raise ValidationFailed("query parameter month must be a month as YYYY-MM (2000-01 to 2999-12)",
                               {"path": "?month", "value": raw_value[:50]}, code="invalid_query")
    return date(int(found.group(1)), int(found.group(2)), 1)


@bp.get("")
@requires("usage.read")
async def get_usage(request: Request) -> HTTPResponse:
    today = datetime.now(UTC).date()
    month = month_param(request, today)
    usage = await store.month_usage(context_of(request).pool, current_admin(request).app_id, month, today)
    return raw(_encode(usage), status=GET_USAGE.status, content_type="application/json")
