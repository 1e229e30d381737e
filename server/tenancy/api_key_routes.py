"""API keys REST: list, create (plaintext shown once), revoke."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import msgspec
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from server.auth.rbac import current_admin, requires
from server.auth.schemas import Body, KeyKind, Name
from server.context import context_of
from server.errors import NotFound
from server.http.openapi import Operation, document
from server.http.payloads import decode_body
from server.tenancy import api_keys

bp = Blueprint("admin_api_keys", url_prefix="/admin/api/api-keys")


class ApiKeyOut(msgspec.Struct, kw_only=True):
    id: str
    kind: str
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyList(msgspec.Struct, kw_only=True):
    api_keys: list[ApiKeyOut]


class CreateKey(Body, kw_only=True):
    kind: KeyKind
    name: Name = ""


class CreatedKey(msgspec.Struct, kw_only=True):
    key: str  # the only time the plaintext is shown
    api_key: ApiKeyOut


CREATE = Operation("POST", "/admin/api/api-keys", "Create a key; the response is the only time it is shown",
                   "api keys", body=CreateKey, response=CreatedKey, auth="admin_jwt", errors=(403,), status=201)
document(
    Operation("GET", "/admin/api/api-keys", "The app's API keys (prefix only, never the key)", "api keys",
              response=ApiKeyList, auth="admin_jwt", errors=(401, 403),
              extra={"description": "last_used_at is the last REST request, socket handshake or socket "
                                    "event with the key, to the minute (recorded in the background within "
                                    "seconds)."}),
    CREATE,
    Operation("DELETE", "/admin/api/api-keys/{key_id}", "Revoke a key: SDKs and servers using it are refused",
              "api keys", response=ApiKeyOut, auth="admin_jwt", params=(("key_id", "path", "API key id"),),
              errors=(401, 403, 404)),
)


def _out(k: api_keys.ApiKey) -> ApiKeyOut:
    return ApiKeyOut(id=str(k.id), kind=k.kind, name=k.name, prefix=k.prefix, created_at=k.created_at,
                     last_used_at=k.last_used_at, revoked_at=k.revoked_at)


@bp.get("")
@requires("api_keys.read")
async def list_keys(request: Request) -> HTTPResponse:
    keys = await api_keys.list_for_app(context_of(request).pool, current_admin(request).app_id)
    return json(msgspec.to_builtins(ApiKeyList(api_keys=[_out(k) for k in keys])))


@bp.post("")
@requires("api_keys.write")
async def create_key(request: Request) -> HTTPResponse:
    body = decode_body(request, CreateKey)
    plaintext, key = await api_keys.create(context_of(request).pool, current_admin(request).app_id, body.kind,
                                           body.name)
    return json(msgspec.to_builtins(CreatedKey(key=plaintext, api_key=_out(key))), status=CREATE.status)


@bp.delete("/<key_id:uuid>")
@requires("api_keys.write")
async def revoke_key(request: Request, key_id: UUID) -> HTTPResponse:
    pool, app_id = context_of(request).pool, current_admin(request).app_id
    await api_keys.revoke(pool, app_id, key_id)  # idempotent: a second revoke keeps the first time
    key = await api_keys.get(pool, app_id, key_id)
    if key is None:
        raise NotFound("no such API key", code="api_key_not_found")
    return json(msgspec.to_builtins(_out(key)))
