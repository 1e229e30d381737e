"""Team, invitations, API keys and account settings, as a workspace's admins use them."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from tests.admin_helpers import PASSWORD, call, invite_and_join, login, signup
from tests.sockets import open_socket, refused_handshake
from tests.support import ServerProcess, http


def test_invited_teammate_accepts_sets_a_password_and_is_signed_in(server: ServerProcess) -> None:
    owner = signup(server)
    token = owner["access_token"]
    status, inv = call(server, "POST", "/admin/api/team/invite", token,
                       {"email": "ada@acme.test", "role": "agent", "name": "Ada"})
    assert status == 201, inv
    assert inv["member"]["status"] == "invited" and inv["member"]["role"] == "agent"
    assert inv["invite_url"].endswith("/login.html#invite=" + inv["invite_token"])
    # not yet able to log in: no password
    assert login(server, "ada@acme.test")[0] == 401
    status, session = http("POST", server.url + "/admin/auth/accept-invite",
                           {"token": inv["invite_token"], "password": PASSWORD, "name": "Ada L."})
    assert status == 200, session
    assert session["admin"]["role"] == "agent" and session["admin"]["name"] == "Ada L."
    assert session["app"]["id"] == owner["app"]["id"]
    assert login(server, "ada@acme.test")[0] == 200
    # the token works once
    status, body = http("POST", server.url + "/admin/auth/accept-invite",
                        {"token": inv["invite_token"], "password": PASSWORD})
    assert status == 401 and body["error"]["code"] == "invalid_invitation"
    status, team = call(server, "GET", "/admin/api/team", token)
    assert status == 200
    assert {(m["email"], m["role"], m["status"]) for m in team["members"]} == {
        (owner["admin"]["email"], "owner", "active"), ("ada@acme.test", "agent", "active")}
    assert [r["name"] for r in team["roles"]] == ["owner", "admin", "agent", "viewer"]


def test_inviting_an_existing_email_is_409(server: ServerProcess) -> None:
    owner = signup(server, "olive@acme.test")
    other = signup(server, "gus@globex.test")
    for email in ("olive@acme.test", "GUS@globex.test"):
        status, body = call(server, "POST", "/admin/api/team/invite", owner["access_token"],
                            {"email": email, "role": "agent"})
        assert status == 409 and body["error"]["code"] == "email_taken"
    assert other


def test_nobody_grants_a_role_above_their_own(server: ServerProcess) -> None:
    owner = signup(server)
    admin = invite_and_join(server, owner["access_token"], "admin")
    status, body = call(server, "POST", "/admin/api/team/invite", admin["access_token"],
                        {"email": "boss@acme.test", "role": "owner"})
    assert status == 403 and body["error"]["code"] == "role_above_own"
    agent = invite_and_join(server, owner["access_token"], "agent")
    status, body = call(server, "PATCH", f"/admin/api/team/{agent['admin']['id']}", admin["access_token"],
                        {"role": "owner"})
    assert status == 403 and body["error"]["code"] == "role_above_own"
    # an admin cannot demote or remove the owner either
    status, body = call(server, "PATCH", f"/admin/api/team/{owner['admin']['id']}", admin["access_token"],
                        {"role": "viewer"})
    assert status == 403
    assert call(server, "DELETE", f"/admin/api/team/{owner['admin']['id']}", admin["access_token"])[0] == 403
    # but may move an agent to viewer
    status, member = call(server, "PATCH", f"/admin/api/team/{agent['admin']['id']}", admin["access_token"],
                          {"role": "viewer"})
    assert status == 200 and member["role"] == "viewer"
    status, body = call(server, "PATCH", f"/admin/api/team/{agent['admin']['id']}", owner["access_token"],
                        {"role": "superuser"})
    assert status == 422 and body["error"]["code"] == "validation_error"


def test_the_last_owner_cannot_be_demoted_or_removed(server: ServerProcess) -> None:
    owner = signup(server)
    token, me = owner["access_token"], owner["admin"]["id"]
    status, body = call(server, "PATCH", f"/admin/api/team/{me}", token, {"role": "admin"})
    assert status == 409 and body["error"]["code"] == "last_owner"
    status, body = call(server, "DELETE", f"/admin/api/team/{me}", token)
    assert status == 409 and body["error"]["code"] == "last_owner"
    # an invited (not yet accepted) owner does not count as a second owner
    call(server, "POST", "/admin/api/team/invite", token, {"email": "pending@acme.test", "role": "owner"})
    assert call(server, "PATCH", f"/admin/api/team/{me}", token, {"role": "admin"})[0] == 409
    second = invite_and_join(server, token, "owner")
    status, member = call(server, "PATCH", f"/admin/api/team/{me}", token, {"role": "admin"})
    assert status == 200 and member["role"] == "admin"
    # now second is the last owner
    status, body = call(server, "DELETE", f"/admin/api/team/{second['admin']['id']}", second["access_token"])
    assert status == 409


def test_a_removed_member_is_refused_at_once_and_can_be_invited_back(server: ServerProcess) -> None:
    owner = signup(server)
    agent = invite_and_join(server, owner["access_token"], "agent", email="ada@acme.test")
    assert call(server, "GET", "/admin/auth/me", agent["access_token"])[0] == 200
    status, body = call(server, "DELETE", f"/admin/api/team/{agent['admin']['id']}", owner["access_token"])
    assert status == 200 and body == {"ok": True}
    # the still-unexpired access token is refused, and the refresh token too
    status, body = call(server, "GET", "/admin/auth/me", agent["access_token"])
    assert status == 401 and body["error"]["code"] == "admin_disabled"
    assert http("POST", server.url + "/admin/auth/refresh", {"refresh_token": agent["refresh_token"]})[0] == 401
    assert login(server, "ada@acme.test")[0] == 401
    _, team = call(server, "GET", "/admin/api/team", owner["access_token"])
    assert [m["email"] for m in team["members"]] == [owner["admin"]["email"]]
    back = invite_and_join(server, owner["access_token"], "viewer", email="ada@acme.test")
    assert back["admin"]["id"] == agent["admin"]["id"] and back["admin"]["role"] == "viewer"


def test_role_changes_apply_to_existing_tokens_immediately(server: ServerProcess) -> None:
    owner = signup(server)
    admin = invite_and_join(server, owner["access_token"], "admin")
    assert call(server, "GET", "/admin/api/api-keys", admin["access_token"])[0] == 200
    call(server, "PATCH", f"/admin/api/team/{admin['admin']['id']}", owner["access_token"], {"role": "viewer"})
    status, body = call(server, "GET", "/admin/api/api-keys", admin["access_token"])
    assert status == 403 and body["error"]["details"] == {"permission": "api_keys.read"}


async def test_api_keys_are_created_once_listed_by_prefix_and_revoked(server: ServerProcess) -> None:
    owner = signup(server)
    token = owner["access_token"]
    status, created = call(server, "POST", "/admin/api/api-keys", token, {"kind": "publishable", "name": "iOS"})
    assert status == 201, created
    key = created["key"]
    assert key.startswith("rhq_pk_") and created["api_key"]["prefix"] == key[:15]
    status, listing = call(server, "GET", "/admin/api/api-keys", token)
    assert status == 200
    assert key not in str(listing)
    ios = next(k for k in listing["api_keys"] if k["name"] == "iOS")
    assert set(ios) == {"id", "kind", "name", "prefix", "scopes", "status", "created_by", "created_at",
                        "last_used_at", "last_used_ip", "expires_at", "revoked_at", "rotated_from"}
    assert ios["revoked_at"] is None and len(listing["api_keys"]) == 3  # + the two signup keys
    assert ios["status"] == "active" and ios["scopes"] is None
    assert ios["created_by"] == {"id": owner["admin"]["id"], "email": owner["admin"]["email"],
                                 "name": owner["admin"]["name"]}

    async with open_socket(server.url, "/client", transports=["websocket"], auth={"api_key": key, "user_id": "u-1"}):
        pass

    status, revoked = call(server, "DELETE", f"/admin/api/api-keys/{ios['id']}", token)
    assert status == 200 and revoked["revoked_at"] is not None and revoked["status"] == "revoked"
    status, again = call(server, "DELETE", f"/admin/api/api-keys/{ios['id']}", token)  # twice: 409
    assert status == 409 and again["error"]["code"] == "api_key_revoked"
    listed = {k["id"]: k for k in call(server, "GET", "/admin/api/api-keys", token)[1]["api_keys"]}
    assert listed[ios["id"]]["revoked_at"] == revoked["revoked_at"]  # the first time is kept

    error = await refused_handshake(server.url, "/client", auth={"api_key": key, "user_id": "u-1"})
    assert error["data"]["error"]["code"] == "invalid_api_key"


def test_secret_keys_can_be_created_and_bad_kinds_are_422(server: ServerProcess) -> None:
    token = signup(server)["access_token"]
    status, created = call(server, "POST", "/admin/api/api-keys", token, {"kind": "secret"})
    assert status == 201 and created["key"].startswith("rhq_sk_")
    status, body = call(server, "POST", "/admin/api/api-keys", token, {"kind": "root"})
    assert status == 422 and body["error"]["details"]["path"] == "$.kind"


def test_workspace_settings_show_the_identity_secret_hint_only_to_settings_writers(server: ServerProcess) -> None:
    owner = signup(server, app_name="Acme")
    status, ws = call(server, "GET", "/admin/api/workspace", owner["access_token"])
    assert status == 200 and ws["name"] == "Acme" and ws["identity_verification"] == "off"
    assert ws["identity_secret_hint"].startswith("…") and len(ws["identity_secret_hint"]) == 5
    agent = invite_and_join(server, owner["access_token"], "agent")
    status, seen = call(server, "GET", "/admin/api/workspace", agent["access_token"])
    assert status == 200 and "identity_secret_hint" not in seen and seen["name"] == "Acme"
    status, _ = call(server, "PATCH", "/admin/api/workspace", agent["access_token"], {"name": "Hijacked"})
    assert status == 403
    status, updated = call(server, "PATCH", "/admin/api/workspace", owner["access_token"],
                           {"name": "Acme Corp", "identity_verification": "enforce"})
    assert status == 200 and updated["name"] == "Acme Corp" and updated["identity_verification"] == "enforce"
    status, updated = call(server, "PATCH", "/admin/api/workspace", owner["access_token"], {})
    assert status == 200 and updated["name"] == "Acme Corp"  # omitted fields are kept
    assert call(server, "PATCH", "/admin/api/workspace", owner["access_token"], {"name": ""})[0] == 422
    assert call(server, "GET", "/admin/auth/me", owner["access_token"])[1]["app"]["name"] == "Acme Corp"


async def test_admin_socket_refuses_removed_admins_and_rechecks_each_event(server: ServerProcess,
                                                                         db_url: str) -> None:
    owner = signup(server)
    agent = invite_and_join(server, owner["access_token"], "agent")
    async with open_socket(server.url, "/admin", transports=["websocket"],
                           auth={"admin_token": agent["access_token"]}) as sock:
        me = await sock.call("me", timeout=5)
        assert me["ok"] and me["role"] == "agent" and "team.write" not in me["permissions"]
        call(server, "DELETE", f"/admin/api/team/{agent['admin']['id']}", owner["access_token"])
        refused = await sock.call("me", timeout=5)
        assert refused["ok"] is False and refused["error"]["code"] == "admin_disabled"

    error = await refused_handshake(server.url, "/admin", auth={"admin_token": agent["access_token"]})
    assert error["data"]["error"]["code"] == "admin_disabled"
    conn = await asyncpg.connect(db_url)
    try:  # sessions of the removed admin are revoked in the database too
        live = await conn.fetchval("SELECT count(*) FROM admin_refresh_tokens WHERE admin_id = $1::uuid "
                                   "AND revoked_at IS NULL", agent["admin"]["id"])
    finally:
        await conn.close()
    assert live == 0


async def test_pending_invitations_resend_withdraw_and_last_active(server: ServerProcess) -> None:
    owner = signup(server)
    token = owner["access_token"]
    status, inv = call(server, "POST", "/admin/api/team/invite", token, {"email": "ada@acme.test", "role": "agent"})
    assert status == 201
    _, team = call(server, "GET", "/admin/api/team", token)
    [pending] = team["invitations"]
    assert pending["id"] == inv["invitation_id"] and pending["status"] == "pending"
    assert (pending["email"], pending["role"], pending["invited_by"]) == ("ada@acme.test", "agent",
                                                                          owner["admin"]["email"])
    # resend: a new link shown once, the old one dead
    status, again = call(server, "POST", f"/admin/api/team/invitations/{pending['id']}/resend", token)
    assert status == 201 and again["invite_token"] != inv["invite_token"], again
    assert again["invitation_id"] == inv["invitation_id"] and again["member"]["email"] == "ada@acme.test"
    status, body = http("POST", server.url + "/admin/auth/accept-invite",
                        {"token": inv["invite_token"], "password": PASSWORD})
    assert status == 401 and body["error"]["code"] == "invalid_invitation"
    _, team = call(server, "GET", "/admin/api/team", token)
    assert [i["id"] for i in team["invitations"]] == [again["invitation_id"]]
    # unknown ids are 404; a viewer may not
    assert call(server, "DELETE", f"/admin/api/team/invitations/{uuid.uuid4()}", token)[0] == 404
    viewer = invite_and_join(server, token, "viewer")
    for method, path in (("POST", f"/admin/api/team/invitations/{again['invitation_id']}/resend"),
                         ("DELETE", f"/admin/api/team/invitations/{again['invitation_id']}")):
        got, body = call(server, method, path, viewer["access_token"])
        assert got == 403 and body["error"]["code"] == "permission_denied"
    # withdraw: the link dies, the invited member leaves the list; twice is a 409
    status, body = call(server, "DELETE", f"/admin/api/team/invitations/{again['invitation_id']}", token)
    assert status == 200 and body == {"ok": True}
    got, body = call(server, "DELETE", f"/admin/api/team/invitations/{again['invitation_id']}", token)
    assert got == 409 and body["error"]["code"] == "invitation_not_pending"
    assert http("POST", server.url + "/admin/auth/accept-invite",
                {"token": again["invite_token"], "password": PASSWORD})[0] == 401
    _, team = call(server, "GET", "/admin/api/team", token)
    assert team["invitations"] == [] and "ada@acme.test" not in [m["email"] for m in team["members"]]
    status, events = call(server, "GET", "/admin/api/events?type=team.invitation_resent,team.invitation_revoked",
                          token)
    assert sorted(e["type"] for e in events["events"]) == ["team.invitation_resent", "team.invitation_revoked"]
    # members show when they were last active (written in the background, to the minute)
    me = owner["admin"]["id"]
    for _ in range(40):
        _, team = call(server, "GET", "/admin/api/team", token)
        mine = next(m for m in team["members"] if m["id"] == me)
        if mine["last_active_at"]:
            break
        await asyncio.sleep(0.25)
    assert mine["last_active_at"], mine
    assert next(m for m in team["members"] if m["id"] == viewer["admin"]["id"])["last_active_at"]
