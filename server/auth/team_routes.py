"""Team REST: list members and pending invitations, invite, resend or withdraw an invitation, change a
role, remove or leave (rank and last-owner rules in server.auth.team)."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import msgspec
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from server.auth import invitations, team
from server.auth.rbac import current_admin, requires
from server.auth.roles import roles_of
from server.auth.schemas import Body, Email, Name, Ok, RoleName
from server.context import AppContext, context_of
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
    last_active_at: datetime | None  # last authenticated request or socket event, to the minute


class InvitationOut(msgspec.Struct, kw_only=True):
    id: str
    admin_id: str
    email: str
    role: str
    status: str  # "pending" | "expired" (resend it for a new link)
    invited_by: str | None  # the inviter's email
    created_at: datetime
    expires_at: datetime


class RoleOut(msgspec.Struct, kw_only=True):
    name: str
    rank: int
    permissions: list[str]


class TeamList(msgspec.Struct, kw_only=True):
    members: list[MemberOut]
    roles: list[RoleOut]
    invitations: list[InvitationOut]  # not yet accepted nor withdrawn


class InviteRequest(Body, kw_only=True):
    email: Email
    role: RoleName
    name: Name = ""


class InviteOut(msgspec.Struct, kw_only=True):
    invitation_id: str
    member: MemberOut
    invite_token: str
    invite_url: str
    expires_at: datetime


class RoleChange(Body, kw_only=True):
    role: RoleName


INVITE = Operation("POST", "/admin/api/team/invite", "Invite a teammate (the token is shown once)", "team",
                   body=InviteRequest, response=InviteOut, auth="admin_jwt", errors=(403, 409), status=201)
_INVITATION = (("invitation_id", "path", "invitation id"),)
RESEND = Operation("POST", "/admin/api/team/invitations/{invitation_id}/resend",
                   "Send an invitation again: a new link (shown once), the old one dead", "team",
                   response=InviteOut, auth="admin_jwt", params=_INVITATION, errors=(401, 403, 404, 409), status=201,
                   extra={"description": "409 invitation_not_pending: accepted or withdrawn. An expired "
                                         "invitation may be resent."})
document(
    Operation("GET", "/admin/api/team", "Team members, pending invitations and the roles they can hold", "team",
              response=TeamList, auth="admin_jwt", errors=(401, 403)),
    INVITE,
    RESEND,
    Operation("DELETE", "/admin/api/team/invitations/{invitation_id}", "Withdraw a pending invitation", "team",
              response=Ok, auth="admin_jwt", params=_INVITATION, errors=(401, 403, 404, 409),
              extra={"description": "Its link stops working and the invited member leaves the list. "
                                    "Withdrawing twice (or an accepted invitation) is a 409 invitation_not_pending."}),
    Operation("PATCH", "/admin/api/team/{admin_id}", "Change a member's role", "team", body=RoleChange,
              response=MemberOut, auth="admin_jwt", params=(("admin_id", "path", "admin id"),),
              errors=(400, 401, 403, 404, 409, 422),
              extra={"description": "Nobody grants a role above their own; the last owner cannot be "
                                    "demoted (409 last_owner)."}),
    Operation("DELETE", "/admin/api/team/{admin_id}", "Remove a member, or leave (your own id): their sessions end",
              "team", response=Ok, auth="admin_jwt", params=(("admin_id", "path", "admin id"),),
              errors=(401, 403, 404, 409),
              extra={"description": "The last owner cannot leave or be removed (409 last_owner)."}),
)


def _member_out(m: team.Member) -> MemberOut:
    return MemberOut(id=str(m.id), email=m.email, name=m.name, role=m.role, status=m.status,
                     created_at=m.created_at, last_login_at=m.last_login_at, last_active_at=m.last_active_at)


def _invitation_out(i: invitations.PendingInvitation, now: datetime) -> InvitationOut:
    return InvitationOut(id=str(i.id), admin_id=str(i.admin_id), email=i.email, role=i.role,
                         status="expired" if i.expires_at <= now else "pending", invited_by=i.invited_by_email,
                         created_at=i.created_at, expires_at=i.expires_at)


def _invite_out(ctx: AppContext, inv: invitations.Invitation) -> InviteOut:
    url = f"{ctx.settings.base_url.rstrip('/')}/login.html#invite={inv.token}"
    return InviteOut(invitation_id=str(inv.id), member=_member_out(inv.member), invite_token=inv.token,
                     invite_url=url, expires_at=inv.expires_at)


@bp.get("")
@requires("team.read")
async def list_team(request: Request) -> HTTPResponse:
    p = current_admin(request)
    ctx = context_of(request)
    members = await team.list_members(ctx.pool, p.app_id)
    pending = await invitations.pending(ctx.pool, p.app_id)
    roles = await roles_of(ctx)
    now = datetime.now(UTC)
    return json(msgspec.to_builtins(TeamList(
        members=[_member_out(m) for m in members],
        roles=[RoleOut(name=r.name, rank=r.rank, permissions=sorted(r.permissions)) for r in roles.values()],
        invitations=[_invitation_out(i, now) for i in pending])))


@bp.post("/invite")
@requires("team.write")
async def invite(request: Request) -> HTTPResponse:
    body = decode_body(request, InviteRequest)
    ctx = context_of(request)
    inv = await invitations.invite(ctx.pool, current_admin(request), await roles_of(ctx), email=body.email,
                                   role=body.role, name=body.name)
    return json(msgspec.to_builtins(_invite_out(ctx, inv)), status=INVITE.status)


@bp.post("/invitations/<invitation_id:uuid>/resend")
@requires("team.write")
async def resend_invitation(request: Request, invitation_id: UUID) -> HTTPResponse:
    ctx = context_of(request)
    inv = await invitations.resend(ctx.pool, current_admin(request), await roles_of(ctx), invitation_id)
    return json(msgspec.to_builtins(_invite_out(ctx, inv)), status=RESEND.status)


@bp.delete("/invitations/<invitation_id:uuid>")
@requires("team.write")
async def revoke_invitation(request: Request, invitation_id: UUID) -> HTTPResponse:
    ctx = context_of(request)
    await invitations.revoke(ctx.pool, current_admin(request), await roles_of(ctx), invitation_id)
    return json(msgspec.to_builtins(Ok()))


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
