"""RBAC matrix over every admin route: no token, bad / expired / forged / revoked tokens (401), a role
without the permission (403), another app's admin on this app's ids (404, nothing of this app shown),
malformed bodies and query strings (4xx with an error body), and nothing stored on any refusal.

ROUTES lists every admin route that needs a signed-in admin; a test fails when /openapi.json documents
an admin route the matrix does not cover, so a new route has to be added here."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from server.auth.roles import ALL_PERMISSIONS, load_roles
from server.auth.tokens import issue_access_token
from tests.admin_helpers import bearer, call, invite_and_join, signup
from tests.conftest import TEST_JWT_SECRET
from tests.refusal_helpers import add_restricted_roles, diff, stored_state
from tests.support import ServerProcess, http
from tests.webhook_helpers import ThreadedReceiver

FUTURE = "2099-01-01T09:00:00Z"


@dataclass(frozen=True)
class Route:
    """One call of an admin route. `path` may carry a query string; {placeholders} are filled from the
    fixture's ids (the names are those of /openapi.json). `bad` are malformed bodies (bytes) or query
    strings (str, starting with ?) that must be refused with a 4xx and change nothing."""

    method: str
    path: str
    permission: str | None
    body: Any = None
    bad: tuple[bytes | str, ...] = ()

    @property
    def documented(self) -> tuple[str, str]:
        return self.method, self.path.split("?", 1)[0]


def _j(obj: Any) -> bytes:
    return json.dumps(obj).encode()


# Bodies every JSON-body route refuses, whatever its schema.
NOT_AN_OBJECT = (b"{not json", b"", b"null", b"[]", b'"text"', b"42", b"\xff\xfe{}", b"[" * 2000)
CONV = "/admin/api/conversations/{conversation_id}"
REPLY_BAD = (
    *NOT_AN_OBJECT, b"{}", b'{"client_id": "c-bad"}', b'{"body": "x"}', b'{"client_id": "c-bad", "body": ""}',
    b'{"client_id": "", "body": "x"}', b'{"client_id": 5, "body": "x"}', b'{"client_id": "c-bad", "body": ["x"]}',
    b'{"client_id": "c-bad", "body": "x", "is_note": true}', _j({"client_id": "c" * 101, "body": "x"}),
    _j({"client_id": "c-bad", "body": "x" * 16385}),  # over MAX_MESSAGE_BYTES: 413
    _j({"client_id": "c-bad", "body": "nul \u0000 byte"}), _j({"client_id": "c-\u0000", "body": "x"}),
    b'{"client_id": "{user_client_id}", "body": "x"}',  # the user's message's client_id: 409, never theirs
)
ASSIGN_BAD = (
    *NOT_AN_OBJECT, b"{}", b'{"assignee_id": 5}', b'{"assignee_id": ""}', b'{"assignee_id": "not-a-uuid"}',
    b'{"assignee_id": "' + str(uuid.UUID(int=7)).encode() + b'"}', b'{"assignee_id": "{gone_id}"}',
    b'{"assignee_id": "{admin_id}", "team": "x"}', _j({"assignee_id": "a" * 65}),
)
STATUS_BAD = (
    *NOT_AN_OBJECT, b"{}", b'{"status": "deleted"}', b'{"status": null}', b'{"status": "snoozed"}',
    b'{"status": "snoozed", "snoozed_until": "tomorrow"}', b'{"status": "snoozed", "snoozed_until": 4102444800}',
    b'{"status": "snoozed", "snoozed_until": "2099-01-01T00:00:00"}',  # no zone
    b'{"status": "snoozed", "snoozed_until": "2001-01-01T00:00:00Z"}',  # past
    b'{"status": "snoozed", "snoozed_until": "9999-12-31T23:59:59-23:59"}',  # after year 9999 in UTC
    b'{"status": "closed", "snoozed_until": "2099-01-01T00:00:00Z"}', b'{"status": "open", "assignee_id": null}',
)
TAGS_BAD = (
    *NOT_AN_OBJECT, b"{}", b'{"add": [], "remove": []}', b'{"add": "vip"}', b'{"add": [5]}', b'{"add": [""]}',
    b'{"add": [" vip"]}', b'{"add": ["a,b"]}', _j({"add": ["t" * 51]}), _j({"add": [f"t{i}" for i in range(21)]}),
    b'{"add": ["x"], "colour": "red"}', b'{"remove": null}', _j({"add": ["nul\u0000tag"]}),
)
READ_BAD = (
    *NOT_AN_OBJECT, b"{}", b'{"seq": -1}', b'{"seq": "1"}', b'{"seq": 1.5}', b'{"seq": 2147483648}',
    b'{"seq": null}', b'{"seq": 1e400}', b'{"seq": 1, "user": 1}',
)
SEGMENT_FILTER = {"all": [{"field": "custom.plan", "op": "eq", "value": "pro"}]}
FILTER_BAD = (
    *NOT_AN_OBJECT, b'{"filter": []}', b'{"filter": {"all": [{"field": "nickname", "op": "eq", "value": "x"}]}}',
    b'{"filter": {"all": [{"field": "name", "op": "gt", "value": "x"}]}}', b'{"filter": {"none": []}}',
    _j({"filter": {"all": [{"field": "anonymous", "op": "eq", "value": "yes"}] * 51}}),
)
SEGMENT_BAD = (
    *(b.replace(b'{"filter"', b'{"name": "x", "filter"') for b in FILTER_BAD if b.startswith(b'{"filter"')),
    b'{"name": "x"}', _j({"name": "", "filter": SEGMENT_FILTER}), _j({"name": "n\u0000", "filter": SEGMENT_FILTER}),
    _j({"name": "x", "filter": SEGMENT_FILTER, "id": "mine"}),
)
INBOX_QUERY_BAD = ("?limit=0", "?limit=101", "?limit=abc", "?status=deleted", "?assignee=nobody", "?unread=maybe",
                   "?unassigned=2", "?cursor=garbage", "?cursor=bm9wZQ", "?q=%00", "?tag=%00", "?assignee=%00")

# Ordered so that running them all as the owner succeeds (the destructive ones come last).
ROUTES: list[Route] = [
    Route("GET", "/admin/auth/me", None),
    # domain events
    Route("GET", "/admin/api/events?type=conversation.created&limit=5", "events.read",
          bad=("?type=message.exploded", "?cursor=x", "?limit=0", "?limit=201")),
    # usage
    Route("GET", "/admin/api/usage?month=2024-02", "usage.read", bad=("?month=2024-13", "?month=x", "?month=%00")),
    # inbox
    Route("GET", "/admin/api/conversations", "conversations.read", bad=INBOX_QUERY_BAD),
    Route("GET", "/admin/api/conversations?q={marker}&status=open&unread=true&tag={tag}", "conversations.read"),
    Route("GET", "/admin/api/conversations?assignee={admin_id}&unassigned=false&limit=5", "conversations.read"),
    Route("GET", CONV, "conversations.read",
          bad=("?before=0", "?before=x", "?before=2147483648", "?limit=0", "?limit=201")),
    Route("GET", CONV + "?before=2&limit=1", "conversations.read"),
    Route("POST", CONV + "/messages", "conversations.reply", {"client_id": "m-1", "body": "a reply"}, REPLY_BAD),
    Route("POST", CONV + "/notes", "conversations.reply", {"client_id": "n-1", "body": "a note"}, REPLY_BAD),
    Route("POST", CONV + "/assign", "conversations.assign", {"assignee_id": "{admin_id}"}, ASSIGN_BAD),
    Route("POST", CONV + "/assign", "conversations.assign", {"assignee_id": None}),
    Route("POST", CONV + "/status", "conversations.assign", {"status": "snoozed", "snoozed_until": FUTURE},
          STATUS_BAD),
    Route("POST", CONV + "/status", "conversations.assign", {"status": "closed"}),
    Route("POST", CONV + "/status", "conversations.assign", {"status": "open"}),
    Route("POST", CONV + "/tags", "conversations.assign", {"add": ["vip"], "remove": ["{tag}"]}, TAGS_BAD),
    Route("POST", CONV + "/read", "conversations.reply", {"seq": 1}, READ_BAD),
    Route("GET", "/admin/api/users", "users.read",
          bad=("?limit=0", "?limit=101", "?offset=-1", "?offset=x", "?q=%00")),
    Route("GET", "/admin/api/users?q={marker}&limit=10&offset=0", "users.read"),
    Route("GET", "/admin/api/users/{user_id}", "users.read"),
    Route("GET", "/admin/api/dashboard/stats", "analytics.read"),
    # team, keys, account
    Route("GET", "/admin/api/team", "team.read"),
    Route("POST", "/admin/api/team/invite", "team.write", {"email": "new@acme.test", "role": "viewer"}, (
        *NOT_AN_OBJECT, b'{"email": "x@acme.test"}', b'{"email": "x@acme.test", "role": "agent", "is_owner": 1}',
        b'{"email": "' + b"x" * 300 + b'@a.co", "role": "agent"}', b'{"email": "x@acme.test", "role": "king"}')),
    Route("PATCH", "/admin/api/team/{admin_id}", "team.write", {"role": "viewer"},
          (*NOT_AN_OBJECT, b'{"role": 5}', b'{"role": "king"}', b'{"role": "agent", "email": "x@a.co"}')),
    Route("GET", "/admin/api/api-keys", "api_keys.read"),
    Route("POST", "/admin/api/api-keys", "api_keys.write", {"kind": "secret", "name": "x"}, (
        *NOT_AN_OBJECT, b'{"kind": "root"}', b'{"kind": "secret", "name": "' + b"n" * 201 + b'"}',
        b'{"kind": "secret", "key": "mine"}')),
    Route("PATCH", "/admin/api/api-keys/{key_id}", "api_keys.write", {"name": "renamed"}, (
        *NOT_AN_OBJECT, b'{"name": 5}', b'{"scopes": ["nope"]}', b'{"scopes": "users.read"}',
        b'{"name": "x", "kind": "secret"}', _j({"name": "nul\u0000"}), b'{"scopes": []}')),
    Route("POST", "/admin/api/api-keys/{key_id}/rotate", "api_keys.write", {"grace_seconds": 60}, (
        *NOT_AN_OBJECT, b'{"grace_seconds": -1}', b'{"grace_seconds": 604801}', b'{"grace_seconds": "1"}',
        b'{"grace": 60}')),
    Route("POST", "/admin/api/team/invitations/{invitation_id}/resend", "team.write"),
    Route("DELETE", "/admin/api/team/invitations/{invitation_id}", "team.write"),
    # webhooks (the endpoint answers on a local receiver, subscribed to a type nothing sends here)
    Route("GET", "/admin/webhooks", "webhooks.read"),
    Route("GET", "/admin/webhooks/event-types", "webhooks.read"),
    Route("POST", "/admin/webhooks", "webhooks.write", {"url": "{hook_url}", "event_types": ["usage.limit_reached"]},
          (*NOT_AN_OBJECT, b'{"url": "ftp://example.com/x"}', b'{"url": "{hook_url}", "secret": "mine"}',
           b'{"url": "{hook_url}", "event_types": ["message.exploded"]}', _j({"url": "http://e.co/\u0000"}))),
    Route("GET", "/admin/webhooks/{endpoint_id}", "webhooks.read"),
    Route("PATCH", "/admin/webhooks/{endpoint_id}", "webhooks.write", {"description": "renamed"},
          (*NOT_AN_OBJECT, b'{"enabled": "yes"}', b'{"event_types": ["nope.never"]}', b'{"url": 5}')),
    Route("POST", "/admin/webhooks/{endpoint_id}/test", "webhooks.write"),
    Route("GET", "/admin/webhooks/{endpoint_id}/deliveries", "webhooks.read",
          bad=("?status=lost", "?cursor=x", "?limit=0")),
    Route("GET", "/admin/webhooks/{endpoint_id}/deliveries/{delivery_id}", "webhooks.read"),
    Route("POST", "/admin/webhooks/{endpoint_id}/deliveries/{delivery_id}/replay", "webhooks.write"),
    Route("POST", "/admin/webhooks/{endpoint_id}/rotate-secret", "webhooks.write"),
    Route("DELETE", "/admin/webhooks/{endpoint_id}", "webhooks.write"),
    # segments
    Route("GET", "/admin/api/segments", "broadcasts.read"),
    Route("POST", "/admin/api/segments", "broadcasts.write", {"name": "Pro", "filter": SEGMENT_FILTER},
          (*NOT_AN_OBJECT, *SEGMENT_BAD)),
    Route("POST", "/admin/api/segments/preview", "broadcasts.read", {"filter": SEGMENT_FILTER}, FILTER_BAD),
    Route("GET", "/admin/api/segments/{segment_id}", "broadcasts.read"),
    Route("PATCH", "/admin/api/segments/{segment_id}", "broadcasts.write", {"name": "renamed"}, FILTER_BAD),
    Route("GET", "/admin/api/workspace", "settings.read"),
    Route("PATCH", "/admin/api/workspace", "settings.write", {"name": "Renamed", "timezone": "Europe/Paris"}, (
        *NOT_AN_OBJECT, b'{"identity_verification": "yes"}', b'{"identity_verification_required": true}',
        b'{"identity_secret": "mine"}', b'{"name": ""}', _j({"name": "n" * 201}), b'{"timezone": "Mars/Olympus"}',
        b'{"timezone": "../etc/passwd"}', b'{"timezone": ""}')),
    Route("POST", "/admin/api/workspace/identity-secret/rotate", "settings.write", {"previous_valid_hours": 0}, (
        *(b for b in NOT_AN_OBJECT if b), b'{"previous_valid_hours": 169}', b'{"previous_valid_hours": -1}',
        b'{"identity_secret": "mine"}')),
    Route("GET", "/admin/api/branding", "settings.read"),
    Route("PATCH", "/admin/api/branding", "settings.write", {"color": "#12AB34", "greeting": "Hi there"}, (
        *NOT_AN_OBJECT, b'{"color": "red"}', b'{"color": "#12345"}', b'{"color": "#GG0000"}',
        b'{"launcher_position": "top"}', _j({"greeting": "g" * 281}), b'{"logo": "not base64!"}',
        _j({"logo": "PHN2ZyB4bWxucz0iaHR0cDovL3d3dy53My5vcmcvMjAwMC9zdmciLz4="}))),  # an SVG
    Route("GET", "/admin/api/account", None),
    Route("PATCH", "/admin/api/account", None, {"name": "Olive O."}, (
        *NOT_AN_OBJECT, b'{"email": "new@acme.test"}', b'{"role": "owner"}',
        _j({"name": "n" * 201}), b'{"email": "not-an-email", "current_password": "x"}')),
    Route("POST", "/admin/api/account/password", None,
          {"current_password": "correct horse battery", "new_password": "correct horse battery"}, (
              *NOT_AN_OBJECT, b'{"new_password": "long enough"}',
              b'{"current_password": "x", "new_password": "short"}')),
    Route("DELETE", "/admin/api/team/{admin_id}", "team.write"),
    Route("DELETE", "/admin/api/api-keys/{key_id}", "api_keys.write"),
    Route("DELETE", "/admin/api/segments/{segment_id}", "broadcasts.write"),
]
ROUTE_PERMISSIONS = sorted({r.permission for r in ROUTES if r.permission})


def _fill(template: str, ids: dict[str, str]) -> str:
    for name, value in ids.items():
        template = template.replace("{" + name + "}", value)
    return template


def _body(value: Any, ids: dict[str, str]) -> Any:
    return None if value is None else json.loads(_fill(json.dumps(value), ids))


def _send(server: ServerProcess, route: Route, ids: dict[str, str], headers: dict[str, str],
          bad: bytes | str | None = None) -> tuple[int, Any]:
    path = _fill(route.path, ids)
    if isinstance(bad, str):
        return http(route.method, server.url + path.split("?", 1)[0] + bad, headers=headers)
    if isinstance(bad, bytes):
        return http(route.method, server.url + path, raw=_fill(bad.decode("latin-1"), ids).encode("latin-1"),
                    headers=headers)
    return http(route.method, server.url + path, _body(route.body, ids), headers=headers)


def _is_error(body: Any) -> bool:
    return (isinstance(body, dict) and set(body) == {"error"} and isinstance(body["error"]["code"], str)
            and isinstance(body["error"]["message"], str))


@pytest.fixture
async def server(start_server, db: asyncpg.Pool) -> ServerProcess:
    """The server, with extra roles each lacking exactly one permission (and one with none), created
    before it starts (roles are read once per process)."""
    await add_restricted_roles(db)
    # Webhook endpoints in the matrix answer on 127.0.0.1 (tests/webhook_helpers.py's receiver).
    return start_server(WEBHOOKS_ALLOW_PRIVATE="true")  # type: ignore[no-any-return]


@pytest.fixture
def receiver() -> Iterator[ThreadedReceiver]:
    with ThreadedReceiver() as r:
        yield r


def _sdk(server: ServerProcess, key: str, user: str, path: str, body: Any) -> Any:
    status, out = http("POST", server.url + path, body, headers={"X-API-Key": key, "X-User-Id": user})
    assert status in (200, 201), out
    return out


def _workspace(server: ServerProcess, name: str, receiver: ThreadedReceiver) -> dict[str, Any]:
    """A signed-up workspace with a publishable key, an SDK user and a conversation carrying a tag, an
    agent reply, a note and an assignee: every kind of thing a refusal might touch."""
    marker = f"{name.lower()}-{uuid.uuid4().hex[:10]}"
    owner = signup(server, email=f"owner-{marker}@{name.lower()}.test", app_name=name)
    token = owner["access_token"]
    viewer = invite_and_join(server, token, "viewer", email=f"viewer-{marker}@{name.lower()}.test")
    agent = invite_and_join(server, token, "agent", email=f"agent-{marker}@{name.lower()}.test")
    gone = invite_and_join(server, token, "agent", email=f"gone-{marker}@{name.lower()}.test")
    assert call(server, "DELETE", f"/admin/api/team/{gone['admin']['id']}", token)[0] == 200
    status, created = call(server, "POST", "/admin/api/api-keys", token, {"kind": "publishable", "name": "sdk"})
    assert status == 201, created
    pk = created["key"]
    status, pending = call(server, "POST", "/admin/api/team/invite", token,
                           {"email": f"pending-{marker}@{name.lower()}.test", "role": "agent"})
    assert status == 201, pending
    keys = call(server, "GET", "/admin/api/api-keys", token)[1]["api_keys"]
    user = f"user-{marker}"
    _sdk(server, pk, user, "/v1/users/identify", {"user_id": user, "name": f"Name {marker}",
                                                  "email": f"{marker}@example.test"})
    first = f"first-{marker}"
    conv = _sdk(server, pk, user, "/v1/conversations", {"subject": f"Subject {marker}", "message": {
        "client_id": first, "body": f"Body {marker}"}})["conversation"]
    tag = f"tag-{marker}"
    cid = conv["id"]
    for path, body in ((f"/admin/api/conversations/{cid}/tags", {"add": [tag]}),
                       (f"/admin/api/conversations/{cid}/assign", {"assignee_id": agent["admin"]["id"]}),
                       (f"/admin/api/conversations/{cid}/messages", {"client_id": "r0", "body": f"Reply {marker}"}),
                       (f"/admin/api/conversations/{cid}/notes", {"client_id": "n0", "body": f"Note {marker}"})):
        status, out = call(server, "POST", path, token, body)
        assert status in (200, 201), (path, out)
    hook_url = f"http://127.0.0.1:{receiver.port}/{name.lower()}"
    status, endpoint = call(server, "POST", "/admin/webhooks", token, {"url": hook_url,
                                                                        "event_types": ["usage.limit_reached"]})
    assert status == 201, endpoint
    receiver.secret = endpoint["secret"]
    status, ping = call(server, "POST", f"/admin/webhooks/{endpoint['endpoint']['id']}/test", token)
    assert status == 200 and ping["attempt"]["status_code"] == 200, ping
    status, segment = call(server, "POST", "/admin/api/segments", token, {"name": f"Segment {marker}",
                                                                         "filter": SEGMENT_FILTER})
    assert status == 201, segment
    ids = {"segment_id": segment["id"], "conversation_id": cid, "admin_id": agent["admin"]["id"],
           "key_id": keys[0]["id"], "user_id": conv["user_id"], "marker": marker, "tag": tag,
           "gone_id": gone["admin"]["id"],
           "user_client_id": first, "hook_url": hook_url, "invitation_id": pending["invitation_id"],
           "endpoint_id": endpoint["endpoint"]["id"], "delivery_id": ping["delivery"]["id"]}
    return {"owner": owner, "viewer": viewer, "agent": agent, "gone": gone, "ids": ids, "pk": pk,
            "secrets": [segment["id"], cid, conv["user_id"], marker, agent["admin"]["id"], viewer["admin"]["id"],
                        owner["admin"]["id"], keys[0]["id"], owner["app"]["id"], pending["invitation_id"]]}


@pytest.fixture
def acme(server: ServerProcess, receiver: ThreadedReceiver) -> dict[str, Any]:
    return _workspace(server, "Acme", receiver)


async def test_permission_names_in_code_are_exactly_those_of_the_roles_table(db: asyncpg.Pool) -> None:
    roles = await load_roles(db)
    assert set().union(*(r.permissions for r in roles.values())) == ALL_PERMISSIONS
    assert [r.name for r in roles.values()] == ["owner", "admin", "agent", "viewer"]


async def test_requests_without_a_valid_token_are_401_and_change_nothing(server: ServerProcess, acme,
                                                                        db: asyncpg.Pool, redis_url: str) -> None:
    owner = acme["owner"]
    admin_id, app_id = uuid.UUID(owner["admin"]["id"]), uuid.UUID(owner["app"]["id"])
    expired, _ = issue_access_token(TEST_JWT_SECRET, admin_id=admin_id, app_id=app_id, role="owner", ttl=-10,
                                    session_id=uuid.uuid4())
    forged, _ = issue_access_token("another-secret-" + "y" * 40, admin_id=admin_id, app_id=app_id, role="owner",
                                   ttl=600, session_id=uuid.uuid4())
    ghost, _ = issue_access_token(TEST_JWT_SECRET, admin_id=uuid.uuid4(), app_id=app_id, role="owner", ttl=600,
                                  session_id=uuid.uuid4())
    # a real admin's id claimed for another app: the app must match the admin row
    wrong_app, _ = issue_access_token(TEST_JWT_SECRET, admin_id=admin_id, app_id=uuid.uuid4(), role="owner",
                                      ttl=600, session_id=uuid.uuid4())
    # a signed-in teammate who signed out: the access token ends with the session
    signed_out = invite_and_join(server, owner["access_token"], "admin")
    assert http("POST", server.url + "/admin/auth/logout", {"refresh_token": signed_out["refresh_token"]})[0] == 200
    cases = [({}, "missing_token"), ({"authorization": "Basic abc"}, "missing_token"),
             ({"authorization": "Bearer "}, "missing_token"), (bearer("not-a-jwt"), "invalid_token"),
             (bearer(expired), "token_expired"), (bearer(forged), "invalid_token"),
             (bearer(ghost), "admin_disabled"), (bearer(wrong_app), "admin_disabled"),
             (bearer(acme["gone"]["access_token"]), "admin_disabled"),  # a removed member
             (bearer(signed_out["access_token"]), "session_revoked"),
             (bearer(owner["refresh_token"]), "invalid_token"), (bearer(acme["pk"]), "invalid_token")]
    before = await stored_state(db, redis_url)
    for route in ROUTES:
        for headers, code in cases:
            status, resp = _send(server, route, acme["ids"], headers)
            assert status == 401 and resp["error"]["code"] == code, (route, code, resp)
        for bad in route.bad[:3]:  # authentication comes before any look at the body
            status, resp = _send(server, route, acme["ids"], {}, bad)
            assert status == 401 and resp["error"]["code"] == "missing_token", (route, bad, resp)
    assert diff(before, await stored_state(db, redis_url)) == {}


async def test_a_role_lacking_the_permission_gets_403_and_changes_nothing(server: ServerProcess, acme,
                                                                         db: asyncpg.Pool, redis_url: str) -> None:
    ids, token = acme["ids"], acme["viewer"]["access_token"]
    viewer_id = acme["viewer"]["admin"]["id"]
    before = await stored_state(db, redis_url)
    for permission in ROUTE_PERMISSIONS:
        # the role is re-read on every request: demote the same admin to "everything but <permission>"
        await db.execute("UPDATE admins SET role = $1 WHERE id = $2::uuid", f"all-but:{permission}", viewer_id)
        for route in (r for r in ROUTES if r.permission == permission):
            for bad in (None, *route.bad):  # a malformed body changes nothing: the permission comes first
                status, resp = _send(server, route, ids, bearer(token), bad)
                assert status == 403, (permission, route, bad, resp)
                assert resp["error"] == {"code": "permission_denied", "details": {"permission": permission},
                                         "message": resp["error"]["message"]}
    await db.execute("UPDATE admins SET role = 'nothing' WHERE id = $1::uuid", viewer_id)
    for route in ROUTES:
        if route.permission is None and route.method != "GET":
            continue  # the caller's own account: changed in tests/test_workspace_branding.py
        status, resp = _send(server, route, ids, bearer(token))
        if route.permission is None:
            assert status == 200 and resp.get("admin", resp).get("permissions", []) == [], resp
        else:
            assert status == 403 and resp["error"]["code"] == "permission_denied", (route, resp)
    await db.execute("UPDATE admins SET role = 'viewer' WHERE id = $1::uuid", viewer_id)
    # the real roles: a viewer and an agent are refused exactly what their role lacks
    refused = 0
    for who in ("viewer", "agent"):
        session = acme[who]
        granted = set(call(server, "GET", "/admin/auth/me", session["access_token"])[1]["admin"]["permissions"])
        for route in ROUTES:
            if route.permission is None or route.permission in granted:
                continue
            status, resp = _send(server, route, ids, bearer(session["access_token"]))
            assert status == 403 and resp["error"]["details"] == {"permission": route.permission}, (who, route)
            refused += 1
    assert refused >= 20
    assert diff(before, await stored_state(db, redis_url)) == {}
    # and what they may do, they can
    for who in ("viewer", "agent"):
        for path in ("/admin/api/team", "/admin/api/account", "/admin/api/workspace", "/admin/api/branding",
                     "/admin/api/conversations", "/admin/api/users",
                     "/admin/api/dashboard/stats", f"/admin/api/conversations/{ids['conversation_id']}"):
            assert call(server, "GET", path, acme[who]["access_token"])[0] == 200, (who, path)


async def test_another_apps_admin_gets_404_for_our_ids_and_never_sees_our_data(
        server: ServerProcess, acme, db: asyncpg.Pool, redis_url: str) -> None:
    with ThreadedReceiver() as globex_receiver:
        globex = _workspace(server, "Globex", globex_receiver)
    ours, theirs = acme["ids"], globex["ids"]
    # Globex's owner, with Acme's ids where ids go and Globex's elsewhere
    mixed = {**theirs, **{k: v for k, v in ours.items() if k.endswith("_id") and k != "gone_id"}}
    before = await stored_state(db, redis_url)
    checked = 0
    for route in ROUTES:
        token = globex["owner"]["access_token"]
        if any("{" + k + "}" in route.documented[1] for k in ("conversation_id", "admin_id", "key_id", "user_id",
                                                                    "invitation_id", "segment_id")):
            status, resp = _send(server, route, mixed, bearer(token))
            assert status == 404 and _is_error(resp), (route, resp)
            checked += 1
        elif route.method == "GET":
            status, resp = _send(server, route, theirs, bearer(token))
            assert status == 200, (route, resp)
        else:
            continue  # writes on the caller's own app (invite, create key, rename): nothing of Acme involved
        leaked = [s for s in acme["secrets"] if s in json.dumps(resp)]
        assert not leaked, (route, leaked, resp)
    assert checked >= 15
    g = globex["owner"]["access_token"]
    # Acme's things named in a query or a body are just as unknown
    for path in (f"/admin/api/conversations?q={ours['marker']}", f"/admin/api/conversations?tag={ours['tag']}",
                 f"/admin/api/conversations?assignee={ours['admin_id']}", f"/admin/api/users?q={ours['marker']}"):
        status, resp = call(server, "GET", path, g)
        assert status == 200 and (resp.get("conversations", resp.get("users")) == []), (path, resp)
    status, resp = call(server, "POST", f"/admin/api/conversations/{theirs['conversation_id']}/assign", g,
                        {"assignee_id": ours["admin_id"]})
    assert status == 404 and resp["error"]["code"] == "assignee_not_found", resp
    stats = call(server, "GET", "/admin/api/dashboard/stats", g)[1]
    assert stats["open"] == 1 and stats["unassigned"] == 0, stats  # Globex's own conversation only
    assert diff(before, await stored_state(db, redis_url)) == {}
    # ids that are not ids at all are plain 404s too
    for route in ROUTES:
        if "{conversation_id}" in route.path or "{user_id}" in route.path:
            for fake in ("not-a-uuid", str(uuid.uuid4()), "%00", "x" * 300):
                status, resp = _send(server, route, {**ours, "conversation_id": fake, "user_id": fake},
                                     bearer(acme["owner"]["access_token"]))
                assert status == 404 and _is_error(resp), (route, fake, resp)
    assert call(server, "DELETE", "/admin/api/team/not-a-uuid", g)[0] == 404


async def test_malformed_bodies_and_queries_are_4xx_with_an_error_body_and_change_nothing(
        server: ServerProcess, acme, db: asyncpg.Pool, redis_url: str) -> None:
    token = acme["owner"]["access_token"]
    before = await stored_state(db, redis_url)
    seen: set[int] = set()
    for route in ROUTES:
        for bad in route.bad:
            status, resp = _send(server, route, acme["ids"], bearer(token), bad)
            assert status in (400, 404, 409, 413, 422) and _is_error(resp), (route, bad, status, resp)
            seen.add(status)
    assert seen == {400, 404, 409, 413, 422}
    assert diff(before, await stored_state(db, redis_url)) == {}
    # the conversation still reads back whole
    status, detail = call(server, "GET", f"/admin/api/conversations/{acme['ids']['conversation_id']}", token)
    assert status == 200 and detail["conversation"]["last_seq"] == 3
    assert [c["id"] for c in call(server, "GET", "/admin/api/conversations", token)[1]["conversations"]] == [
        acme["ids"]["conversation_id"]]


@pytest.mark.parametrize(("method", "path", "raw"), [
    ("POST", "/admin/auth/login", b"{not json"),
    ("POST", "/admin/auth/login", b""),
    ("POST", "/admin/auth/login", b'{"email": "a@b.co"}'),
    ("POST", "/admin/auth/login", b'{"email": "a@b.co", "password": "x", "admin": true}'),
    ("POST", "/admin/auth/login", b'{"email": 42, "password": "x"}'),
    ("POST", "/admin/auth/signup", b'{"email": "a@b.co", "password": "short", "app_name": "A"}'),
    ("POST", "/admin/auth/signup", b'{"email": "not-an-email", "password": "long enough", "app_name": "A"}'),
    ("POST", "/admin/auth/signup",
     b'{"email": "a@b.co", "password": "long enough", "app_name": "' + b"A" * 201 + b'"}'),
    ("POST", "/admin/auth/refresh", b'{"refresh_token": ""}'),
    ("POST", "/admin/auth/refresh", b"[]"),
    ("POST", "/admin/auth/logout", b'{"token": "x"}'),
    ("POST", "/admin/auth/accept-invite", b'{"token": "x", "password": "1"}'),
])
def test_malformed_public_bodies_are_4xx_with_an_error_body(server: ServerProcess, method: str, path: str,
                                                            raw: bytes) -> None:
    status, body = http(method, server.url + path, raw=raw)
    assert status in (400, 422), body
    assert body["error"]["code"] in ("malformed_json", "validation_error")


def test_every_route_of_the_matrix_answers_a_permitted_caller(server: ServerProcess, acme) -> None:
    """The refusals above are refusals of working routes: the owner gets a 2xx from each of them."""
    token = acme["owner"]["access_token"]
    for route in ROUTES:
        status, resp = _send(server, route, acme["ids"], bearer(token))
        assert 200 <= status < 300, (route, status, resp)


def test_every_documented_admin_route_is_in_the_matrix_and_declares_a_permission(server: ServerProcess) -> None:
    from server.app import create_app
    from server.settings import load_settings

    doc = http("GET", server.url + "/openapi.json")[1]
    documented = {(method.upper(), path) for path, ops in doc["paths"].items() if path.startswith("/admin")
                  for method, op in ops.items() if op.get("security") == [{"adminBearer": []}]}
    covered = {r.documented for r in ROUTES}
    assert documented - covered == set(), "admin routes missing from tests/test_admin_rbac.py ROUTES"
    assert covered - documented == set(), "routes of the matrix not documented with adminBearer security"
    settings = load_settings({"DATABASE_URL": "postgresql://unused/x", "REDIS_URL": "redis://unused",
                              "JWT_SECRET": TEST_JWT_SECRET, "REPLYHQ_ENV": "test"})
    app = create_app(settings, name="rbac_inventory")
    served: dict[tuple[str, str], str | None] = {}
    for route in app.router.routes:
        path = "/" + "/".join(f"{{{p[1:-1].split(':')[0]}}}" if p.startswith("<") else p
                              for p in route.path.split("/"))
        if path.startswith("/admin") and hasattr(route.handler, "__permission__"):
            for method in route.methods:
                served[(method, path)] = route.handler.__permission__
    # every route behind a signed-in admin (the @requires decorator) is documented and in the matrix
    assert set(served) == covered
    for route in ROUTES:
        assert served[route.documented] == route.permission, route
    # every other /admin route is one of the public auth routes
    public = {("/" + r.path) for r in app.router.routes
              if ("/" + r.path).startswith("/admin") and not hasattr(r.handler, "__permission__")}
    assert public == {"/admin/auth/signup", "/admin/auth/login", "/admin/auth/refresh", "/admin/auth/logout",
                      "/admin/auth/accept-invite"}
    for path in public:
        assert "security" not in doc["paths"][path]["post"]


def test_openapi_lists_the_refusals_of_every_admin_route(server: ServerProcess) -> None:
    """401 for every admin route, 403 where a permission is needed, 404 where a path names a resource,
    400 + 422 where a body is read, 422 where query parameters are read."""
    doc = http("GET", server.url + "/openapi.json")[1]
    assert doc["components"]["schemas"]["ErrorBody"]["required"] == ["error"]
    by_op = {r.documented: r for r in ROUTES}
    for (method, path), route in by_op.items():
        op = doc["paths"][path][method.lower()]
        expected = {"401"}
        if route.permission is not None:
            expected.add("403")
        if "{" in path:
            expected.add("404")
        if "requestBody" in op:
            expected |= {"400", "422"}
        if any(p["in"] == "query" for p in op.get("parameters", ())):
            expected.add("422")
        missing = expected - set(op["responses"])
        assert not missing, (method, path, missing)
        for status in expected:
            assert op["responses"][status]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/ErrorBody"}
