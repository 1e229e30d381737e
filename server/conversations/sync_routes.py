"""/v1/sync: everything that changed for the user after a cursor, paged."""

from __future__ import annotations

from uuid import UUID

import msgspec
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from server.context import context_of
from server.conversations.sync import SyncPage
from server.http.openapi import Operation, document
from server.http.query_params import int_param
from server.users.sdk_auth import HEADER_PARAMS, sdk_user

bp = Blueprint("sdk_sync", url_prefix="/v1")
MAX_CURSOR = 2**62

document(
    Operation("GET", "/v1/sync",
              "Conversations, messages and receipts that changed after `cursor` (their current state), in "
              "change order, paged; call again with the returned cursor while has_more. Every page also "
              "carries `broadcasts`: the broadcast messages sent to the user and not yet delivered, newest "
              "first (at most 50)", "sdk",
              response=SyncPage, auth="api_key", errors=(401, 422), params=(
                  *HEADER_PARAMS, ("cursor", "query", "cursor of the last page seen; 0 or absent = from the start"),
                  ("limit", "query", "changes per page, 1..500, default 200"))),
)


@bp.get("/sync")
async def sync(request: Request) -> HTTPResponse:
    _, user = await sdk_user(request)
    cursor = int_param(request, "cursor", 0, lo=0, hi=MAX_CURSOR) or 0
    limit = int_param(request, "limit", 200, lo=1, hi=500) or 200
    page = await context_of(request).messaging.sync(UUID(user.id), cursor, limit)
    return json(msgspec.to_builtins(page))
