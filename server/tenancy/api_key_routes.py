"""API keys REST: list, create (plaintext shown once), rename and re-scope, rotate (with a grace
period for the old key), revoke. Changes reach every replica at once (server/tenancy/key_checks.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from uuid import UUID

import msgspec
from msgspec import Meta
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from server.auth.rbac import AdminPrincipal, current_admin, requires
from server.auth.roles import roles_of
from server.auth.schemas import Body, KeyKind, Name
from server.context import AppContext, context_of
from server.conversations.models import NO_NUL
from server.errors import Forbidden, ValidationFailed
from server.http.openapi import Operation, document
from server.http.payloads import decode_body
from server.tenancy import api_keys

bp = Blueprint("admin_api_keys", url_prefix="/admin/api/api-keys")

Scope = Annotated[str, Meta(min_length=1, max_length=64, pattern=NO_NUL)]
Scopes = Annotated[list[Scope], Meta(min_length=1, max_length=64)]
GraceSeconds = Annotated[int, Meta(ge=0, le=api_keys.MAX_GRACE_S)]


class Creator(msgspec.Struct, kw_only=True):
    id: str
    email: str
    name: str


class ApiKeyOut(msgspec.Struct, kw_only=True):
    id: str
    kind: str
    name: str
    prefix: str
    scopes: list[str] | None  # secret keys: the permissions their calls may use; null for publishable keys
    status: str  # active | expiring (rotated, in its grace period) | expired | revoked
    created_by: Creator | None
    created_at: datetime
    last_used_at: datetime | None
    last_used_ip: str | None
    expires_at: datetime | None
    revoked_at: datetime | None
    rotated_from: str | None  # the key this one replaced


class ApiKeyList(msgspec.Struct, kw_only=True):
    api_keys: list[ApiKeyOut]
    scopes: list[str]  # every scope a secret key may be given (the roles' permission names)


class CreateKey(Body, kw_only=True):
    kind: KeyKind
    name: Name = ""
    scopes: Scopes | None = None  # secret keys only; default: every permission of the creator's role
    expires_at: datetime | None = None


class UpdateKey(Body, kw_only=True):
    name: Name | None = None
    scopes: Scopes | None = None


class RotateKey(Body, kw_only=True):
    grace_seconds: GraceSeconds = api_keys.DEFAULT_GRACE_S


class CreatedKey(msgspec.Struct, kw_only=True):
    key: str  # the only time the plaintext is shown
    api_key: ApiKeyOut


class RotatedKey(msgspec.Struct, kw_only=True):
    key: str  # the new key's plaintext, shown this once
    api_key: ApiKeyOut  # the new key
    previous: ApiKeyOut  # the old key: status "expiring" until its expires_at (or "expired" with no grace)


_KEY_ID = (("key_id", "path", "API key id"),)
CREATE = Operation("POST", "/admin/api/api-keys", "Create a key; the response is the only time it is shown",
                   "api keys", body=CreateKey, response=CreatedKey, auth="admin_jwt", errors=(403,), status=201,
                   extra={"description": "Secret keys take `scopes` (permission names, GET lists them; default: "
                                         "the creator's own); publishable keys take none (422). Nobody grants a "
                                         "scope they lack (403 scope_above_own)."})
ROTATE = Operation("POST", "/admin/api/api-keys/{key_id}/rotate",
                   "Replace a key: the new key is shown once, the old one works grace_seconds more",
                   "api keys", body=RotateKey, response=RotatedKey, auth="admin_jwt", params=_KEY_ID,
                   errors=(401, 403, 404, 409), status=201,
                   extra={"description": "grace_seconds: 0 to 604800 (7 days), default 86400. The old key's "
                                         "sockets are disconnected when its grace ends. 409: the key is "
                                         "revoked, expired or already rotated."})
document(
    Operation("GET", "/admin/api/api-keys", "The app's API keys (prefix only, never the key)", "api keys",
              response=ApiKeyList, auth="admin_jwt", errors=(401, 403),
              extra={"description": "last_used_at / last_used_ip: the last REST request, socket handshake or "
                                    "socket event with the key, to the minute (recorded in the background "
                                    "within seconds)."}),
    CREATE,
    Operation("PATCH", "/admin/api/api-keys/{key_id}", "Rename a key or change a secret key's scopes",
              "api keys", body=UpdateKey, response=ApiKeyOut, auth="admin_jwt", params=_KEY_ID,
              errors=(401, 403, 404, 409),
              extra={"description": "Scopes apply to calls and live sockets within a second. 409: revoked "
                                    "or expired key; 422: scopes on a publishable key, unknown scopes."}),
    ROTATE,
    Operation("DELETE", "/admin/api/api-keys/{key_id}", "Revoke a key: SDKs and servers using it are refused",
              "api keys", response=ApiKeyOut, auth="admin_jwt", params=_KEY_ID, errors=(401, 403, 404, 409),
              extra={"description": "Refused on every replica within a second; its sockets get "
                                    "`session:ended` and are disconnected. Revoking twice is a 409 "
                                    "(api_key_revoked)."}),
)


def _out(k: api_keys.ApiKey, creator: Creator | None = None) -> ApiKeyOut:
    return ApiKeyOut(id=str(k.id), kind=k.kind, name=k.name, prefix=k.prefix,
                     scopes=list(k.scopes) if k.scopes is not None else None, status=k.status(datetime.now(UTC)),
                     created_by=creator, created_at=k.created_at, last_used_at=k.last_used_at,
                     last_used_ip=k.last_used_ip, expires_at=k.expires_at, revoked_at=k.revoked_at,
                     rotated_from=str(k.rotated_from) if k.rotated_from else None)


def _me(p: AdminPrincipal) -> Creator | None:
    return Creator(id=str(p.admin_id), email=p.email, name=p.name) if p.admin_id else None


async def _all_scopes(ctx: AppContext) -> set[str]:
    return set().union(*(r.permissions for r in (await roles_of(ctx)).values()))


async def _check_scopes(ctx: AppContext, actor: AdminPrincipal, scopes: list[str]) -> None:
    known = await _all_scopes(ctx)
    for i, scope in enumerate(scopes):
        if scope not in known:
            raise ValidationFailed(f"unknown scope {scope!r}", {"path": f"$.scopes[{i}]", "scopes": sorted(known)},
                                   code="unknown_scope")
    above = sorted(set(scopes) - actor.permissions)
    if above:
        raise Forbidden("you cannot grant scopes your role lacks", {"scopes": above}, code="scope_above_own")


def _listed(k: api_keys.ListedKey) -> ApiKeyOut:
    creator = (Creator(id=str(k.key.created_by), email=k.creator_email, name=k.creator_name or "")
               if k.key.created_by and k.creator_email else None)
    return _out(k.key, creator)


async def _shown(ctx: AppContext, key: api_keys.ApiKey) -> ApiKeyOut:
    """The key as the list shows it (with its creator)."""
    listed = [k for k in await api_keys.list_for_app(ctx.pool, key.app_id) if k.key.id == key.id]
    return _listed(listed[0]) if listed else _out(key)


@bp.get("")
@requires("api_keys.read")
async def list_keys(request: Request) -> HTTPResponse:
    ctx = context_of(request)
    keys = await api_keys.list_for_app(ctx.pool, current_admin(request).app_id)
    return json(msgspec.to_builtins(ApiKeyList(api_keys=[_listed(k) for k in keys],
                                               scopes=sorted(await _all_scopes(ctx)))))


@bp.post("")
@requires("api_keys.write")
async def create_key(request: Request) -> HTTPResponse:
    body = decode_body(request, CreateKey)
    ctx, p = context_of(request), current_admin(request)
    scopes: list[str] | None = None
    if body.kind == "publishable":
        if body.scopes is not None:
            raise ValidationFailed("publishable keys have no scopes: they act for their own SDK user only",
                                   {"path": "$.scopes"}, code="scopes_not_allowed")
    else:
        scopes = body.scopes if body.scopes is not None else sorted(p.permissions & await _all_scopes(ctx))
        await _check_scopes(ctx, p, scopes)
    if body.expires_at is not None and (body.expires_at.tzinfo is None or body.expires_at <= datetime.now(UTC)):
        raise ValidationFailed("expires_at must be a future time with a zone", {"path": "$.expires_at"})
    plaintext, key = await api_keys.create(ctx.pool, p.app_id, body.kind, body.name, scopes=scopes,
                                           created_by=p.admin_id, expires_at=body.expires_at)
    return json(msgspec.to_builtins(CreatedKey(key=plaintext, api_key=_out(key, _me(p)))), status=CREATE.status)


@bp.patch("/<key_id:uuid>")
@requires("api_keys.write")
async def update_key(request: Request, key_id: UUID) -> HTTPResponse:
    body = decode_body(request, UpdateKey)
    ctx, p = context_of(request), current_admin(request)
    current = await api_keys.get(ctx.pool, p.app_id, key_id)
    if current is not None and body.scopes is not None:
        if current.kind == "publishable":
            raise ValidationFailed("publishable keys have no scopes", {"path": "$.scopes"},
                                   code="scopes_not_allowed")
        await _check_scopes(ctx, p, body.scopes)
    key = await api_keys.update(ctx.pool, p.app_id, key_id, p.admin_id, name=body.name, scopes=body.scopes)
    if body.scopes is not None:
        await ctx.key_changes.publish(key)
    return json(msgspec.to_builtins(await _shown(ctx, key)))


@bp.post("/<key_id:uuid>/rotate")
@requires("api_keys.write")
async def rotate_key(request: Request, key_id: UUID) -> HTTPResponse:
    body = decode_body(request, RotateKey)
    ctx, p = context_of(request), current_admin(request)
    plaintext, new, old = await api_keys.rotate(ctx.pool, p.app_id, key_id, p.admin_id, body.grace_seconds)
    await ctx.key_changes.publish(old)
    out = RotatedKey(key=plaintext, api_key=_out(new, _me(p)), previous=await _shown(ctx, old))
    return json(msgspec.to_builtins(out), status=ROTATE.status)


@bp.delete("/<key_id:uuid>")
@requires("api_keys.write")
async def revoke_key(request: Request, key_id: UUID) -> HTTPResponse:
    ctx, p = context_of(request), current_admin(request)
    key = await api_keys.revoke(ctx.pool, p.app_id, key_id, p.admin_id)
    await ctx.key_changes.publish(key)
    return json(msgspec.to_builtins(await _shown(ctx, key)))
