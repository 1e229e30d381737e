"""Refusal matrix over every /admin Socket.IO event and the /admin handshake.

Handshakes without a valid admin token are refused with a connect_error carrying the REST error body.
Every event: a role lacking its permission gets a 403 error ack; another app's admin naming this app's
conversation gets 404 and never receives an event of this app; malformed payloads, extra arguments and
unknown events get a 4xx error ack. Nothing is stored on any refusal, and the SDK user hears nothing."""

from __future__ import annotations

import asyncio
import inspect
import uuid
from typing import Any

import asyncpg
import pytest

from server.auth.rbac import AdminPrincipal
from server.auth.tokens import issue_access_token
from server.realtime.admin_ns import AdminNamespace
from tests.admin_helpers import call
from tests.conftest import TEST_JWT_SECRET
from tests.inbox_helpers import owner_token, start_conversation, teammate
from tests.refusal_helpers import add_restricted_roles, diff, stored_state
from tests.sockets import admin_socket, refused_handshake, sdk_socket
from tests.support import ServerProcess, http

CONV = "{conversation_id}"
# event -> (permission, a valid payload); every event handler of AdminNamespace is listed here.
EVENTS: dict[str, tuple[str | None, Any]] = {
    "me": (None, None),
    "conversation:join": ("conversations.read", CONV),
    "conversation:leave": ("conversations.read", {"conversation_id": CONV}),
    "typing:start": ("conversations.reply", CONV),
    "typing:stop": ("conversations.reply", {"conversation_id": CONV}),
    "sessions:list": ("users.read", None),
    "message:send": ("conversations.reply", {"conversation_id": CONV, "client_id": "s-1", "body": "hi"}),
    "message:read": ("conversations.reply", {"conversation_id": CONV, "seq": 1}),
}
CONVERSATION_EVENTS = [e for e, (_, payload) in EVENTS.items() if payload is not None]
# payloads no conversation event accepts
NOT_A_CONVERSATION = (None, 42, 4.2, True, [], [CONV], {}, "", {"conversation_id": 5}, {"conversation_id": ""},
                      {"conversation_id": None}, {"id": CONV}, {"conversation_id": "c" * 65},
                      {"conversation_id": CONV, "extra": 1}, {"conversation_id": [CONV]})
BAD_SENDS = (
    {"conversation_id": CONV, "client_id": "b"}, {"conversation_id": CONV, "body": "x"},
    {"conversation_id": CONV, "client_id": "b", "body": ""}, {"conversation_id": CONV, "client_id": "", "body": "x"},
    {"conversation_id": CONV, "client_id": 5, "body": "x"}, {"conversation_id": CONV, "client_id": "b", "body": 5},
    {"conversation_id": CONV, "client_id": "c" * 101, "body": "x"},
    {"conversation_id": CONV, "client_id": "b", "body": "x", "is_note": "yes"},
    {"conversation_id": CONV, "client_id": "b", "body": "x", "seq": 3},
    {"conversation_id": CONV, "client_id": "b", "body": "x" * 16385},  # 413
    {"conversation_id": CONV, "client_id": "b", "body": "nul \u0000"},
    {"conversation_id": CONV, "client_id": "{user_client_id}", "body": "x"},  # 409: the user's message's id
)
BAD_READS = ({"conversation_id": CONV}, {"conversation_id": CONV, "seq": -1}, {"conversation_id": CONV, "seq": "1"},
             {"conversation_id": CONV, "seq": 1.5}, {"conversation_id": CONV, "seq": 2**31},
             {"conversation_id": CONV, "seq": None}, {"conversation_id": CONV, "seq": 1, "receipt": "x"})


def _fill(payload: Any, ids: dict[str, str]) -> Any:
    if isinstance(payload, str):
        for name, value in ids.items():
            payload = payload.replace("{" + name + "}", value)
        return payload
    if isinstance(payload, dict):
        return {k: _fill(v, ids) for k, v in payload.items()}
    if isinstance(payload, list):
        return [_fill(v, ids) for v in payload]
    return payload


def _is_error_ack(ack: Any, status: int | None = None) -> bool:
    return (isinstance(ack, dict) and set(ack) == {"ok", "status", "error"} and ack["ok"] is False
            and (ack["status"] == status if status else 400 <= ack["status"] < 500)
            and isinstance(ack["error"]["code"], str) and isinstance(ack["error"]["message"], str))


@pytest.fixture
async def server(start_server, db: asyncpg.Pool) -> ServerProcess:
    await add_restricted_roles(db)
    return start_server()  # type: ignore[no-any-return]


@pytest.fixture
def acme(server: ServerProcess, workspace) -> dict[str, Any]:
    owner = owner_token(server, workspace)
    first = f"first-{uuid.uuid4().hex[:8]}"
    status, created = http("POST", server.url + "/v1/conversations",
                           {"subject": "Acme help", "message": {"client_id": first, "body": "acme secret words"}},
                           headers={"X-API-Key": workspace.publishable_key, "X-User-Id": "ann"})
    assert status == 201, created
    conv = created["conversation"]
    return {"ws": workspace, "owner": owner, "viewer": teammate(server, owner, "viewer"),
            "agent": teammate(server, owner, "agent"), "conv": conv,
            "ids": {"conversation_id": conv["id"], "user_client_id": first}}


def test_the_matrix_lists_every_admin_event_with_its_permission() -> None:
    handlers = {name[3:].replace("_", ":", 1): fn for name, fn in inspect.getmembers(AdminNamespace)
                if name.startswith("on_") and name not in ("on_connect", "on_disconnect")}
    assert set(handlers) == set(EVENTS), "add new /admin events to EVENTS in tests/test_admin_socket_rbac.py"
    for event, (permission, _) in EVENTS.items():
        assert handlers[event].__permission__ == permission, event


async def test_an_event_reads_the_sockets_admin_once_and_its_handler_gets_that_principal(monkeypatch) -> None:
    principal = AdminPrincipal(uuid.uuid4(), uuid.uuid4(), "viewer", 10, frozenset({"conversations.read"}))
    reads: list[str] = []

    async def current_admin(self: AdminNamespace, sid: str) -> AdminPrincipal:
        reads.append(sid)
        return principal

    monkeypatch.setattr(AdminNamespace, "current_admin", current_admin)
    ack = await AdminNamespace(object()).trigger_event("me", "sid-1", None)
    assert ack["ok"] and ack["admin_id"] == str(principal.admin_id) and ack["role"] == "viewer"
    assert reads == ["sid-1"]  # @requires' read, and no second one in the handler


async def test_handshakes_without_a_valid_admin_token_are_refused_with_an_error_body(
        server: ServerProcess, acme, db: asyncpg.Pool, redis_url: str) -> None:
    ws = acme["ws"]
    expired, _ = issue_access_token(TEST_JWT_SECRET, admin_id=ws.admin_id, app_id=ws.app_id, role="owner", ttl=-10,
                                    session_id=uuid.uuid4())
    forged, _ = issue_access_token("another-secret-" + "y" * 40, admin_id=ws.admin_id, app_id=ws.app_id,
                                   role="owner", ttl=600, session_id=uuid.uuid4())
    ghost, _ = issue_access_token(TEST_JWT_SECRET, admin_id=uuid.uuid4(), app_id=ws.app_id, role="owner", ttl=600,
                                  session_id=uuid.uuid4())
    wrong_app, _ = issue_access_token(TEST_JWT_SECRET, admin_id=ws.admin_id, app_id=uuid.uuid4(), role="owner",
                                      ttl=600, session_id=uuid.uuid4())
    gone = teammate(server, acme["owner"], "agent")
    assert call(server, "DELETE", f"/admin/api/team/{gone['admin']['id']}", acme["owner"])[0] == 200
    signed_out = teammate(server, acme["owner"], "admin")
    assert http("POST", server.url + "/admin/auth/logout", {"refresh_token": signed_out["refresh_token"]})[0] == 200
    status, key = call(server, "POST", "/admin/api/api-keys", acme["owner"], {"kind": "secret", "name": "old"})
    assert status == 201
    assert call(server, "DELETE", f"/admin/api/api-keys/{key['api_key']['id']}", acme["owner"])[0] == 200
    cases = [(None, "missing_token"), ({}, "missing_token"), ("a-string", "missing_token"),
             ({"admin_token": ""}, "missing_token"), ({"admin_token": 42}, "missing_token"),
             ({"admin_token": ["x"]}, "missing_token"), ({"token": acme["owner"]}, "missing_token"),
             ({"admin_token": "not-a-jwt"}, "invalid_token"), ({"admin_token": expired}, "token_expired"),
             ({"admin_token": forged}, "invalid_token"), ({"admin_token": ghost}, "admin_disabled"),
             ({"admin_token": wrong_app}, "admin_disabled"),
             ({"admin_token": gone["access_token"]}, "admin_disabled"),  # a removed member
             ({"admin_token": signed_out["access_token"]}, "session_revoked"),  # signed out
             ({"admin_token": gone["refresh_token"]}, "invalid_token"),
             ({"admin_token": ws.publishable_key}, "invalid_token"),  # an SDK key is no admin credential
             ({"admin_token": key["key"]}, "invalid_token"),  # a revoked secret key
             ({"admin_token": "rhq_sk_" + "x" * 40}, "invalid_token")]
    before = await stored_state(db, redis_url)
    for auth, code in cases:
        error = await refused_handshake(server.url, "/admin", auth=auth)
        assert error["data"]["error"]["code"] == code, (auth, error)
        assert set(error["data"]) == {"error"} and error["data"]["error"]["message"] == error["message"]
    assert diff(before, await stored_state(db, redis_url)) == {}


async def test_legacy_secret_key_sessions_and_signed_out_sockets(server: ServerProcess, acme) -> None:
    """A secret API key still opens an /admin socket (read and reply, no agent behind it) until it is
    revoked; a socket whose sign-in is signed out is refused on its next event."""
    owner, conv = acme["owner"], acme["conv"]
    status, key = call(server, "POST", "/admin/api/api-keys", owner, {"kind": "secret", "name": "legacy"})
    assert status == 201
    async with admin_socket(server, key["key"]) as legacy:
        me = await legacy.call("me", None)
        assert me["ok"] and me["admin_id"] is None and me["role"] == "agent", me
        assert (await legacy.call("conversation:join", conv["id"]))["ok"] is True
        ack = await legacy.call("message:read", {"conversation_id": conv["id"], "seq": 1})
        assert _is_error_ack(ack, 403) and ack["error"]["code"] == "no_admin", ack
        ack = await legacy.call("sessions:list", None)
        assert ack["ok"] is True
        assert call(server, "DELETE", f"/admin/api/api-keys/{key['api_key']['id']}", owner)[0] == 200
        for event, (_, payload) in EVENTS.items():
            ack = await legacy.call(event, _fill(payload, acme["ids"]))
            assert _is_error_ack(ack, 401) and ack["error"]["code"] == "invalid_token", (event, ack)
    session = teammate(server, owner, "agent")
    async with admin_socket(server, session["access_token"]) as sock:
        assert (await sock.call("me", None))["ok"] is True
        assert http("POST", server.url + "/admin/auth/logout", {"refresh_token": session["refresh_token"]})[0] == 200
        for event, (_, payload) in EVENTS.items():
            ack = await sock.call(event, _fill(payload, acme["ids"]))
            assert _is_error_ack(ack, 401) and ack["error"]["code"] == "session_revoked", (event, ack)
    _, detail = call(server, "GET", f"/admin/api/conversations/{conv['id']}", owner)
    assert detail["conversation"]["last_seq"] == 1
    assert all(r["participant_kind"] == "user" for r in detail["receipts"]), detail["receipts"]


async def test_a_role_lacking_the_permission_gets_403_acks_and_nothing_happens(
        server: ServerProcess, acme, db: asyncpg.Pool, redis_url: str) -> None:
    ids, ws = acme["ids"], acme["ws"]
    viewer_id = acme["viewer"]["admin"]["id"]
    async with sdk_socket(server, ws.publishable_key, "ann") as user, \
            admin_socket(server, acme["viewer"]["access_token"]) as sock, \
            admin_socket(server, acme["owner"]) as watcher:
        await asyncio.sleep(0.3)  # the SDK handshake's writes (user, device, session) are done
        before = await stored_state(db, redis_url)
        for event, (permission, payload) in EVENTS.items():
            if permission is None:
                continue
            # the role is re-read on every event: the same socket, demoted to "everything but <permission>"
            await db.execute("UPDATE admins SET role = $1 WHERE id = $2::uuid", f"all-but:{permission}", viewer_id)
            for data in (_fill(payload, ids), *(_fill(p, ids) for p in NOT_A_CONVERSATION[:6])):
                ack = await sock.call(event, data)
                assert _is_error_ack(ack, 403), (event, data, ack)
                assert ack["error"]["code"] == "permission_denied" and ack["error"]["details"] == {
                    "permission": permission}, (event, ack)
        await db.execute("UPDATE admins SET role = 'nothing' WHERE id = $1::uuid", viewer_id)
        for event, (permission, payload) in EVENTS.items():
            ack = await sock.call(event, _fill(payload, ids))
            if permission is None:
                assert ack["ok"] is True and ack["permissions"] == [], ack
            else:
                assert _is_error_ack(ack, 403) and ack["error"]["code"] == "permission_denied", (event, ack)
        # a real viewer: may watch and list, may not type, reply, note or mark read
        await db.execute("UPDATE admins SET role = 'viewer' WHERE id = $1::uuid", viewer_id)
        for event, (permission, payload) in EVENTS.items():
            ack = await sock.call(event, _fill(payload, ids))
            if permission == "conversations.reply":
                assert _is_error_ack(ack, 403) and ack["error"]["details"] == {"permission": permission}, event
            else:
                assert ack["ok"] is True, (event, ack)
        ack = await sock.call("message:send", {**_fill(EVENTS["message:send"][1], ids), "is_note": True})
        assert _is_error_ack(ack, 403), ack
        await asyncio.sleep(0.3)
        assert diff(before, await stored_state(db, redis_url)) == {}
        assert [e for e, _ in user.events] == []  # no typing, no message reached the user
        assert watcher.events == []


async def test_another_apps_admin_gets_404_and_never_an_event_of_this_app(
        server: ServerProcess, acme, other_workspace, db: asyncpg.Pool, redis_url: str) -> None:
    ids, ws, conv = acme["ids"], acme["ws"], acme["conv"]
    theirs = owner_token(server, other_workspace)
    their_agent = teammate(server, theirs, "agent")["access_token"]
    their_conv = start_conversation(server, other_workspace, "zed")
    secrets = [conv["id"], conv["user_id"], str(ws.app_id), "acme secret words", "ann"]
    async with sdk_socket(server, other_workspace.publishable_key, "zed"), \
            admin_socket(server, theirs) as spy, admin_socket(server, their_agent) as spy_agent:
        await asyncio.sleep(0.3)
        before = await stored_state(db, redis_url)
        for sock in (spy, spy_agent):
            for event in CONVERSATION_EVENTS:
                valid = EVENTS[event][1]
                for payload in (valid, {**valid, "is_note": True} if event == "message:send" else valid):
                    ack = await sock.call(event, _fill(payload, ids))
                    assert _is_error_ack(ack, 404) and ack["error"]["code"] == "conversation_not_found", (event, ack)
                    assert not [s for s in secrets if s in str(ack)], ack
            # their own SDK session only
            sessions = (await sock.call("sessions:list", None))["sessions"]
            assert [s["external_user_id"] for s in sessions] == ["zed"], sessions
        assert diff(before, await stored_state(db, redis_url)) == {}
        # everything that happens in Acme meanwhile: none of it reaches Globex's sockets
        async with sdk_socket(server, ws.publishable_key, "ann") as user, \
                admin_socket(server, acme["owner"]) as agent:
            assert (await agent.call("conversation:join", conv["id"]))["ok"] is True
            await agent.call("typing:start", conv["id"])
            await user.call("typing:start", {"conversation_id": conv["id"]})
            assert (await agent.call("message:send", {"conversation_id": conv["id"], "client_id": "r1",
                                                        "body": "acme secret words again"}))["ok"]
            await agent.call("message:send", {"conversation_id": conv["id"], "client_id": "n1", "body": "note",
                                               "is_note": True})
            await agent.call("message:read", {"conversation_id": conv["id"], "seq": 3})
            owner = acme["owner"]
            call(server, "POST", f"/admin/api/conversations/{conv['id']}/tags", owner, {"add": ["vip"]})
            call(server, "POST", f"/admin/api/conversations/{conv['id']}/status", owner, {"status": "closed"})
            start_conversation(server, ws, "bob")
            await user.wait_for("conversation:updated")
            await agent.wait_for("conversation:created")
        await asyncio.sleep(0.3)
        for sock in (spy, spy_agent):
            assert sock.events == [], sock.events  # no presence, typing, message, receipt or conversation event
        # and the other app's own conversation still works for it
        ack = await spy.call("conversation:join", their_conv["id"])
        assert ack["ok"] is True and ack["conversation"]["id"] == their_conv["id"]


async def test_malformed_payloads_extra_arguments_and_unknown_events_get_error_acks(
        server: ServerProcess, acme, db: asyncpg.Pool, redis_url: str) -> None:
    ids, ws = acme["ids"], acme["ws"]
    async with sdk_socket(server, ws.publishable_key, "ann") as user, \
            admin_socket(server, acme["owner"]) as sock, admin_socket(server, acme["agent"]["access_token"]) as other:
        await asyncio.sleep(0.3)
        before = await stored_state(db, redis_url)
        statuses: set[int] = set()
        for event in CONVERSATION_EVENTS:
            extra = {"message:send": BAD_SENDS, "message:read": BAD_READS}.get(event, ())
            for payload in (*NOT_A_CONVERSATION, *extra):
                ack = await sock.call(event, _fill(payload, ids))
                assert _is_error_ack(ack), (event, payload, ack)
                statuses.add(ack["status"])
            # an id that exists nowhere
            ack = await sock.call(event, _fill(EVENTS[event][1], {**ids, "conversation_id": str(uuid.uuid4())}))
            assert _is_error_ack(ack, 404), (event, ack)
        assert statuses == {409, 413, 422}, statuses
        for event in ("conversation:delete", "message:edit", "admin", "typing", "presence", "me:too", "on_me",
                      "x" * 300):
            ack = await sock.call(event, {"conversation_id": ids["conversation_id"]})
            assert _is_error_ack(ack, 400) and ack["error"]["code"] == "unknown_event", (event, ack)
        # a payload spread over several arguments is refused like any other malformed payload
        for event, (_, payload) in EVENTS.items():
            ack = await sock.call(event, (_fill(payload, ids), "extra"), timeout=5)
            assert _is_error_ack(ack), (event, ack)
        await asyncio.sleep(0.3)
        assert diff(before, await stored_state(db, redis_url)) == {}
        assert user.events == []
        assert other.events == []
        # the socket is still up and works
        ack = await sock.call("message:send", _fill(EVENTS["message:send"][1], ids))
        assert ack["ok"] is True and ack["message"]["seq"] == 2
