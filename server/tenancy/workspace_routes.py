"""Workspace settings REST: name, timezone, identity verification mode, and rotating the identity secret.

The identity secret is shown once, when it is rotated (like an API key): GET never returns it, only
its last four characters to roles that may change settings. The previous secret keeps verifying
user hashes for `previous_valid_hours` (default 24, 0 ends it at once) so apps can roll it out.
"""

from __future__ import annotations

import functools
import zoneinfo
from datetime import datetime
from typing import Annotated

import msgspec
from msgspec import Meta
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from server.auth.rbac import AdminPrincipal, current_admin, requires
from server.auth.schemas import AppName, Body
from server.context import context_of
from server.errors import ValidationFailed
from server.http.openapi import Operation, document
from server.http.payloads import decode_body
from server.tenancy import apps
from server.tenancy.apps import IdentityVerification

bp = Blueprint("admin_workspace", url_prefix="/admin/api/workspace")

Timezone = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_+\-/]+$",
                               description="an IANA time zone name, e.g. Europe/Paris or UTC")]


class WorkspaceOut(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: str
    name: str
    timezone: str
    identity_verification: IdentityVerification
    identity_secret_rotated_at: datetime | None
    # Until then the secret before the last rotation still verifies user hashes (null: it does not).
    previous_secret_valid_until: datetime | None
    created_at: datetime
    # "…abcd": enough to tell which secret a backend has; only for roles that may change settings.
    identity_secret_hint: str | None = None


class WorkspacePatch(Body, kw_only=True):
    name: AppName | None = None
    timezone: Timezone | None = None
    identity_verification: IdentityVerification | None = None


class RotateSecret(Body, kw_only=True):
    previous_valid_hours: Annotated[int, Meta(ge=0, le=168)] = 24


class RotatedSecret(msgspec.Struct, kw_only=True):
    identity_secret: str  # shown this once
    workspace: WorkspaceOut


document(
    Operation("GET", "/admin/api/workspace", "The workspace's settings", "workspace",
              response=WorkspaceOut, auth="admin_jwt", errors=(403,)),
    Operation("PATCH", "/admin/api/workspace", "Rename the workspace, set its timezone or identity verification",
              "workspace", body=WorkspacePatch, response=WorkspaceOut, auth="admin_jwt", errors=(403,),
              extra={"description": "identity_verification: off (user_hash ignored), log_only (a missing or "
                                    "wrong user_hash is accepted but logged and counted in "
                                    "replyhq_identity_unverified_total), enforce (refused, 401 "
                                    "invalid_user_hash). timezone: an IANA name (422 invalid_timezone)."}),
    Operation("POST", "/admin/api/workspace/identity-secret/rotate",
              "Replace the identity secret; the new one is shown once", "workspace", body=RotateSecret,
              response=RotatedSecret, auth="admin_jwt", errors=(403,),
              extra={"description": "The body may be empty. The previous secret keeps verifying user hashes "
                                    "for previous_valid_hours (default 24; 0 ends it at once)."}),
)


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones() | {"UTC"})


def check_timezone(name: str) -> str:
    if name not in _zones():
        raise ValidationFailed(f"unknown time zone {name!r}: use an IANA name such as Europe/Paris",
                               {"path": "$.timezone"}, code="invalid_timezone")
    return name


def workspace_out(ws: apps.Workspace, viewer: AdminPrincipal) -> WorkspaceOut:
    return WorkspaceOut(
        id=str(ws.id), name=ws.name, timezone=ws.timezone,
        identity_verification=ws.identity_verification,
        identity_secret_rotated_at=ws.identity_secret_rotated_at,
        previous_secret_valid_until=ws.previous_identity_secret_expires_at, created_at=ws.created_at,
        identity_secret_hint="…" + ws.identity_secret[-4:] if viewer.can("settings.write") else None)


@bp.get("")
@requires("settings.read")
async def get_workspace(request: Request) -> HTTPResponse:
    p = current_admin(request)
    return json(msgspec.to_builtins(workspace_out(await apps.get(context_of(request).pool, p.app_id), p)))


@bp.patch("")
@requires("settings.write")
async def patch_workspace(request: Request) -> HTTPResponse:
    body = decode_body(request, WorkspacePatch)
    if body.timezone is not None:
        check_timezone(body.timezone)
    p = current_admin(request)
    ws = await apps.update(context_of(request).pool, p.app_id, p.admin_id, name=body.name,
                           timezone=body.timezone, identity_verification=body.identity_verification)
    return json(msgspec.to_builtins(workspace_out(ws, p)))


@bp.post("/identity-secret/rotate")
@requires("settings.write")
async def rotate_identity_secret(request: Request) -> HTTPResponse:
    body = decode_body(request, RotateSecret) if request.body else RotateSecret()
    p = current_admin(request)
    ws, secret = await apps.rotate_identity_secret(context_of(request).pool, p.app_id, p.admin_id,
                                                   body.previous_valid_hours)
    return json(msgspec.to_builtins(RotatedSecret(identity_secret=secret, workspace=workspace_out(ws, p))))
