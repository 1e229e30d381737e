"""Team REST: list members, invite, change a role, remove (rank and last-owner rules in server.auth.team)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import msgspec
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from server.auth import invitations, team
from server.auth.rbac import current_admin, requires
from server.auth.roles import roles_of
from server.auth.schemas import Body, Email, Name, Ok, RoleName
from server.context import context_of
from server.http.openapi import Operation, document
from server.http.payloads import decode_body

bp = Blueprint("admin_team", url_prefix="/admin/api/team")


class MemberOut(msgspec.Struct, kw_only=True):
    id: str
    email: str
    name: str
    role: str
    status: str  # "active" | "invited" (has not set a password yet)
    created_at: datetime
    last_login_at: datetime | None


class RoleOut(msgspec.Struct, kw_only=True):
    name: str
    rank: int
    permissions: list[str]


class TeamList(msgspec.Struct, kw_only=True):
    members: list[MemberOut]
    roles: list[RoleOut]


class InviteRequest(Body, kw_only=True):
    email: Email
    role: RoleName
    name: Name = ""


class InviteOut(msgspec.Struct, kw_only=True):
    member: MemberOut
    invite_token: str
    invite_url: str
    expires_at: datetime


class RoleChange(Body, kw_only=True):
    role: RoleName


INVITE = Operation("POST", "/admin/api/team/invite", "Invite a teammate (the token is shown once)", "team",
                   body=InviteRequest, response=InviteOut, auth="admin_jwt", errors=(403, 409), status=201)
document(
    Operation("GET", "/admin/api/team", "Team members and the roles they can hold", "team",
              response=TeamList, auth="admin_jwt", errors=(401, 403)),
    INVITE,
    Operation("PATCH", "/admin/api/team/{admin_id}", "Change a member's role", "team", body=RoleChange,
              response=MemberOut, auth="admin_jwt", params=(("admin_id", "path", "admin id"),),
              errors=(400, 401, 403, 404, 409, 422),
              extra={"description": "Nobody grants a role above their own; the last owner cannot be "
                                    "demoted (409 last_owner)."}),
    Operation("DELETE", "/admin/api/team/{admin_id}", "Remove a member (their sessions end)", "team",
              response=Ok, auth="admin_jwt", params=(("admin_id", "path", "admin id"),),
              errors=(401, 403, 404, 409)),
)


def _member_out(m: team.Member) -> MemberOut:
    return MemberOut(id=str(m.id), email=m.email, name=m.name, role=m.role, status=m.status,
                     created_at=m.created_at, last_login_at=m.last_login_at)


@bp.get("")
@requires("team.read")
async def list_team(request: Request) -> HTTPResponse:
    p = current_admin(request)
    members = await team.list_members(context_of(request).pool, p.app_id)
    roles = await roles_of(context_of(request))
    return json(msgspec.to_builtins(TeamList(
        members=[_member_out(m) for m in members],
        roles=[RoleOut(name=r.name, rank=r.rank, permissions=sorted(r.permissions)) for r in roles.values()])))


@bp.post("/invite")
@requires("team.write")
async def invite(request: Request) -> HTTPResponse:
    body = decode_body(request, InviteRequest)
    ctx = context_of(request)
    inv = await invitations.invite(ctx.pool, current_admin(request), await roles_of(ctx), email=body.email,
                                   role=body.role, name=body.name)
    url = f"{ctx.settings.base_url.rstrip('/')}/login.html#invite={inv.token}"
    return json(msgspec.to_builtins(InviteOut(member=_member_out(inv.member), invite_token=inv.token,
                                              invite_url=url, expires_at=inv.expires_at)), status=INVITE.status)


@bp.patch("/<admin_id:uuid>")
@requires("team.write")
async def change_role(request: Request, admin_id: UUID) -> HTTPResponse:
    body = decode_body(request, RoleChange)
    ctx = context_of(request)
    member = await team.change_role(ctx.pool, current_admin(request), await roles_of(ctx), admin_id, body.role)
    return json(msgspec.to_builtins(_member_out(member)))


@bp.delete("/<admin_id:uuid>")
@requires("team.write")
async def remove(request: Request, admin_id: UUID) -> HTTPResponse:
    ctx = context_of(request)
    await team.remove(ctx.pool, current_admin(request), await roles_of(ctx), admin_id)
    return json(msgspec.to_builtins(Ok()))
