"""/v1/users: an SDK user identifies itself, reads and updates its profile and device."""

from __future__ import annotations

import msgspec
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from server.context import context_of
from server.conversations.models import EndUser
from server.conversations.requests import IdentifyBody, UpdateUserBody
from server.errors import ValidationFailed
from server.http.openapi import Operation, document
from server.http.payloads import decode_body
from server.users.sdk_auth import HEADER_PARAMS, sdk_caller, sdk_user

bp = Blueprint("sdk_users", url_prefix="/v1/users")
_AUTH_ERRORS = (400, 401, 422)

document(
    Operation("POST", "/v1/users/identify", "Identify (create or update) the user and its device", "sdk",
              body=IdentifyBody, response=EndUser, auth="api_key", params=HEADER_PARAMS[2:],
              errors=_AUTH_ERRORS),
    Operation("GET", "/v1/users/me", "The calling user", "sdk", response=EndUser, auth="api_key",
              params=HEADER_PARAMS, errors=(401,)),
    Operation("PATCH", "/v1/users/me", "Update the calling user's name, email, attributes or device", "sdk",
              body=UpdateUserBody, response=EndUser, auth="api_key", params=HEADER_PARAMS,
              errors=_AUTH_ERRORS),
)


@bp.post("/identify")
async def identify(request: Request) -> HTTPResponse:
    body = decode_body(request, IdentifyBody)
    if body.user_id is None and body.anonymous_id is None and not (
            request.headers.get("x-user-id") or request.headers.get("x-anonymous-id")):
        raise ValidationFailed("user_id or anonymous_id is required", {"path": "$.user_id"},
                               code="missing_user_id")
    caller = await sdk_caller(request, external_id=body.user_id, anonymous_id=body.anonymous_id)
    user = await context_of(request).messaging.identify(
        caller.app_id, external_id=caller.external_id, anonymous_id=caller.anonymous_id, name=body.name,
        email=body.email, attributes=body.attributes,
        device=msgspec.to_builtins(body.device) if body.device else None)
    return json(msgspec.to_builtins(user))


@bp.get("/me")
async def me(request: Request) -> HTTPResponse:
    _, user = await sdk_user(request)
    return json(msgspec.to_builtins(user))


@bp.patch("/me")
async def update_me(request: Request) -> HTTPResponse:
    caller = await sdk_caller(request)
    body = decode_body(request, UpdateUserBody)
    user = await context_of(request).messaging.identify(
        caller.app_id, external_id=caller.external_id, anonymous_id=caller.anonymous_id, name=body.name,
        email=body.email, attributes=body.attributes,
        device=msgspec.to_builtins(body.device) if body.device else None)
    return json(msgspec.to_builtins(user))
