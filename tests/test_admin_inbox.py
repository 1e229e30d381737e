"""Admin inbox REST: list/filter/search, detail with notes, reply, notes, assign, status, tags,
read, users with device metadata, dashboard stats; RBAC, tenancy and bad input."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from tests.admin_helpers import call
from tests.inbox_helpers import (
    DEVICE,
    identify,
    owner_token,
    reply,
    sdk_headers,
    start_conversation,
    teammate,
)
from tests.support import ServerProcess, http


def ids(page: dict) -> set[str]:
    return {c["id"] for c in page["conversations"]}


def inbox(server: ServerProcess, token: str, query: str = "") -> dict:
    status, page = call(server, "GET", "/admin/api/conversations" + query, token)
    assert status == 200, page
    return dict(page)


async def test_inbox_lists_filters_and_searches_the_apps_conversations(server: ServerProcess, workspace) -> None:
    token = owner_token(server, workspace)
    identify(server, workspace, "ann", name="Ann Archer", email="ann@example.com", device=DEVICE)
    a = start_conversation(server, workspace, "ann", body="my invoice is wrong", subject="Billing")
    b = start_conversation(server, workspace, "bob", body="app crashes on launch", subject=None)
    c = start_conversation(server, workspace, "bob", body="thanks!", subject="Other")

    page = inbox(server, token)
    assert [x["id"] for x in page["conversations"]] == [c["id"], b["id"], a["id"]]  # newest activity first
    first = page["conversations"][2]
    assert first["user"]["name"] == "Ann Archer" and first["user"]["device"]["model"] == "iPhone15,2"
    assert first["admin_unread"] == 1 and first["last_message_preview"] == "my invoice is wrong"

    assert ids(inbox(server, token, "?q=invoice")) == {a["id"]}  # message body
    assert ids(inbox(server, token, "?q=ann%40example")) == {a["id"]}  # user email
    assert ids(inbox(server, token, "?q=billing")) == {a["id"]}  # subject
    assert ids(inbox(server, token, "?q=100%25")) == set()  # % is literal, not a wildcard

    me = call(server, "GET", "/admin/auth/me", token)[1]["admin"]["id"]
    assert call(server, "POST", f"/admin/api/conversations/{a['id']}/assign", token, {"assignee_id": me})[0] == 200
    assert call(server, "POST", f"/admin/api/conversations/{b['id']}/status", token, {"status": "closed"})[0] == 200
    assert call(server, "POST", f"/admin/api/conversations/{c['id']}/tags", token, {"add": ["vip"]})[0] == 200
    last = c["last_seq"]
    assert call(server, "POST", f"/admin/api/conversations/{c['id']}/read", token, {"seq": last})[0] == 200

    assert ids(inbox(server, token, "?assignee=me")) == {a["id"]}
    assert ids(inbox(server, token, f"?assignee={me}")) == {a["id"]}
    assert ids(inbox(server, token, "?unassigned=true")) == {b["id"], c["id"]}
    assert ids(inbox(server, token, "?status=closed")) == {b["id"]}
    assert ids(inbox(server, token, "?status=open&unassigned=true")) == {c["id"]}
    assert ids(inbox(server, token, "?tag=vip")) == {c["id"]}
    assert ids(inbox(server, token, "?unread=true")) == {a["id"], b["id"]}

    # keyset pages cover everything exactly once
    seen: list[str] = []
    query = "?limit=2"
    while True:
        page = inbox(server, token, query)
        seen += [x["id"] for x in page["conversations"]]
        if not page["next_cursor"]:
            break
        query = f"?limit=2&cursor={page['next_cursor']}"
    assert sorted(seen) == sorted([a["id"], b["id"], c["id"]]) and len(seen) == 3


async def test_detail_pages_back_and_shows_notes_that_the_user_never_sees(server: ServerProcess, workspace) -> None:
    token = owner_token(server, workspace)
    conv = start_conversation(server, workspace, "ann", body="m1")
    for n in range(2, 6):
        status, _ = http("POST", f"{server.url}/v1/conversations/{conv['id']}/messages",
                         {"client_id": f"c{n}", "body": f"m{n}"}, headers=sdk_headers(workspace, "ann"))
        assert status == 201
    status, sent = reply(server, token, conv["id"], "we are on it")
    assert status == 201 and sent["message"]["sender_kind"] == "admin" and not sent["message"]["is_note"]
    status, note = reply(server, token, conv["id"], "customer is on the legacy plan", kind="notes")
    assert status == 201 and note["message"]["is_note"] is True

    status, detail = call(server, "GET", f"/admin/api/conversations/{conv['id']}?limit=3", token)
    assert status == 200, detail
    assert [m["seq"] for m in detail["messages"]] == [5, 6, 7] and detail["has_more"] is True
    assert detail["messages"][-1]["is_note"] is True
    assert detail["user"]["user_id"] == "ann"
    status, older = call(server, "GET", f"/admin/api/conversations/{conv['id']}?limit=3&before=5", token)
    assert [m["seq"] for m in older["messages"]] == [2, 3, 4] and older["has_more"] is True

    # the SDK user's REST views never show the note
    status, mine = http("GET", f"{server.url}/v1/conversations/{conv['id']}/messages?limit=200",
                        headers=sdk_headers(workspace, "ann"))
    assert status == 200
    assert [m["body"] for m in mine["messages"]][-1] == "we are on it"
    assert all(not m.get("is_note") for m in mine["messages"])
    status, sync = http("GET", f"{server.url}/v1/sync?cursor=0", headers=sdk_headers(workspace, "ann"))
    assert status == 200 and "customer is on the legacy plan" not in str(sync)


async def test_reply_is_idempotent_on_client_id(server: ServerProcess, workspace, db: asyncpg.Pool) -> None:
    token = owner_token(server, workspace)
    conv = start_conversation(server, workspace, "ann")
    body = {"client_id": "agent-1", "body": "hi there"}
    path = f"/admin/api/conversations/{conv['id']}/messages"
    first = call(server, "POST", path, token, body)
    again = call(server, "POST", path, token, body)
    assert (first[0], again[0]) == (201, 200) and first[1]["message"]["id"] == again[1]["message"]["id"]
    # the same client id as a note is a different message: refused, not confused
    assert call(server, "POST", f"/admin/api/conversations/{conv['id']}/notes", token, body)[0] == 409
    assert await db.fetchval("SELECT count(*) FROM messages WHERE sender_kind = 'admin'") == 1


async def test_status_snooze_reopen_and_tags(server: ServerProcess, workspace) -> None:
    token = owner_token(server, workspace)
    conv = start_conversation(server, workspace, "ann")
    base = f"/admin/api/conversations/{conv['id']}"
    until = (datetime.now(UTC) + timedelta(hours=3)).isoformat()
    status, snoozed = call(server, "POST", base + "/status", token, {"status": "snoozed", "snoozed_until": until})
    assert status == 200 and snoozed["status"] == "snoozed" and snoozed["snoozed_until"]
    assert call(server, "POST", base + "/status", token, {"status": "snoozed"})[0] == 422
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert call(server, "POST", base + "/status", token, {"status": "snoozed", "snoozed_until": past})[0] == 422
    assert call(server, "POST", base + "/status", token, {"status": "done"})[0] == 422
    status, reopened = call(server, "POST", base + "/status", token, {"status": "open"})
    assert reopened["status"] == "open" and reopened["snoozed_until"] is None
    status, tagged = call(server, "POST", base + "/tags", token, {"add": ["vip", "billing"]})
    assert tagged["tags"] == ["billing", "vip"]
    status, tagged = call(server, "POST", base + "/tags", token, {"remove": ["vip"]})
    assert tagged["tags"] == ["billing"]
    status, unassigned = call(server, "POST", base + "/assign", token, {"assignee_id": None})
    assert status == 200 and unassigned["assignee_id"] is None


async def test_users_list_and_detail_show_device_metadata_and_conversations(server: ServerProcess,
                                                                              workspace) -> None:
    token = owner_token(server, workspace)
    identify(server, workspace, "ann", name="Ann", email="ann@example.com", attributes={"plan": "pro"},
             device=DEVICE)
    identify(server, workspace, "bob", name="Bob", device={"platform": "android", "model": "Pixel 8"})
    conv = start_conversation(server, workspace, "ann")
    status, page = call(server, "GET", "/admin/api/users", token)
    assert status == 200 and page["total"] == 2
    ann = next(u for u in page["users"] if u["user_id"] == "ann")
    assert ann["metadata"]["device"] == DEVICE and ann["attributes"] == {"plan": "pro"}
    assert ann["last_seen_at"] and ann["online"] is False and ann["conversations_count"] == 1
    status, found = call(server, "GET", "/admin/api/users?q=pixel", token)
    assert [u["user_id"] for u in found["users"]] == ["bob"]
    status, one = call(server, "GET", "/admin/api/users?limit=1", token)
    assert len(one["users"]) == 1 and one["next_offset"] == 1
    status, detail = call(server, "GET", f"/admin/api/users/{ann['id']}", token)
    assert status == 200 and [c["id"] for c in detail["conversations"]] == [conv["id"]]
    assert detail["user"]["metadata"]["device"]["os_version"] == "17.4"


async def test_dashboard_stats_count_what_happened(server: ServerProcess, workspace) -> None:
    token = owner_token(server, workspace)
    a = start_conversation(server, workspace, "ann", body="first question")
    b = start_conversation(server, workspace, "bob", body="second question")
    c = start_conversation(server, workspace, "cid", body="third question")
    assert reply(server, token, a["id"], "answer")[0] == 201
    assert reply(server, token, a["id"], "more")[0] == 201
    assert reply(server, token, b["id"], "private", kind="notes")[0] == 201  # notes are not replies
    me = call(server, "GET", "/admin/auth/me", token)[1]["admin"]["id"]
    call(server, "POST", f"/admin/api/conversations/{b['id']}/assign", token, {"assignee_id": me})
    call(server, "POST", f"/admin/api/conversations/{c['id']}/status", token, {"status": "closed"})

    status, stats = call(server, "GET", "/admin/api/dashboard/stats", token)
    assert status == 200, stats
    assert stats["open"] == 2 and stats["unassigned"] == 1  # a (open, nobody); b assigned; c closed
    assert stats["replies_today"] == 2
    assert stats["waiting_longest"]["conversation_id"] == b["id"]  # a was answered, c is closed
    assert stats["waiting_longest"]["age_seconds"] >= 0
    assert 0 <= stats["median_first_response_seconds"] < 60
    assert stats["online_users"] == 0
    assert len(stats["daily"]) == 14 and stats["daily"][-1] == {
        "day": datetime.now(UTC).date().isoformat(), "conversations": 3, "replies": 2}


async def test_roles_without_permission_get_403_and_nothing_is_stored(server: ServerProcess, workspace,
                                                                     db: asyncpg.Pool) -> None:
    owner = owner_token(server, workspace)
    viewer = teammate(server, owner, "viewer")["access_token"]
    conv = start_conversation(server, workspace, "ann")
    base = f"/admin/api/conversations/{conv['id']}"
    before = await db.fetch("SELECT status, assignee_id, tags, last_seq FROM conversations")
    for path, body in ((base + "/messages", {"client_id": "x", "body": "hi"}),
                       (base + "/notes", {"client_id": "y", "body": "hi"}),
                       (base + "/assign", {"assignee_id": None}), (base + "/status", {"status": "closed"}),
                       (base + "/tags", {"add": ["x"]}), (base + "/read", {"seq": 1})):
        status, resp = call(server, "POST", path, viewer, body)
        assert status == 403 and resp["error"]["code"] == "permission_denied", (path, resp)
    assert await db.fetch("SELECT status, assignee_id, tags, last_seq FROM conversations") == before
    # but a viewer reads
    for path in ("/admin/api/conversations", base, "/admin/api/users", "/admin/api/dashboard/stats"):
        assert call(server, "GET", path, viewer)[0] == 200, path
    assert call(server, "GET", "/admin/api/conversations", "not-a-token")[0] == 401


async def test_another_apps_ids_are_404_and_its_data_never_listed(server: ServerProcess, workspace,
                                                                  other_workspace, db: asyncpg.Pool) -> None:
    ours = owner_token(server, workspace)
    theirs = owner_token(server, other_workspace)
    conv = start_conversation(server, workspace, "ann", body="secret stuff")
    user_id = conv["user_id"]
    base = f"/admin/api/conversations/{conv['id']}"
    before = await db.fetch("SELECT status, assignee_id, tags, last_seq FROM conversations")
    assert call(server, "GET", base, theirs)[0] == 404
    for path, body in ((base + "/messages", {"client_id": "x", "body": "hi"}),
                       (base + "/notes", {"client_id": "y", "body": "hi"}),
                       (base + "/assign", {"assignee_id": None}), (base + "/status", {"status": "closed"}),
                       (base + "/tags", {"add": ["x"]}), (base + "/read", {"seq": 1})):
        status, resp = call(server, "POST", path, theirs, body)
        assert status == 404, (path, resp)
    assert call(server, "GET", f"/admin/api/users/{user_id}", theirs)[0] == 404
    assert inbox(server, theirs)["conversations"] == []
    assert inbox(server, theirs, "?q=secret")["conversations"] == []
    assert call(server, "GET", "/admin/api/users", theirs)[1]["users"] == []
    assert call(server, "GET", "/admin/api/dashboard/stats", theirs)[1]["open"] == 0
    # assigning to another app's admin is 404 too
    other_admin = str(other_workspace.admin_id)
    assert call(server, "POST", base + "/assign", ours, {"assignee_id": other_admin})[0] == 404
    assert await db.fetch("SELECT status, assignee_id, tags, last_seq FROM conversations") == before


async def test_malformed_bodies_and_queries_are_4xx(server: ServerProcess, workspace, db: asyncpg.Pool) -> None:
    token = owner_token(server, workspace)
    conv = start_conversation(server, workspace, "ann")
    base = server.url + f"/admin/api/conversations/{conv['id']}"
    auth = {"authorization": f"Bearer {token}"}
    cases = [("/messages", None, b"{not json"), ("/messages", {"body": "no client id"}, None),
             ("/messages", {"client_id": "a", "body": ""}, None),
             ("/messages", {"client_id": "a", "body": "x", "extra": 1}, None),
             ("/notes", {"client_id": 5, "body": "x"}, None), ("/assign", {}, None),
             ("/assign", {"assignee_id": "nobody"}, None), ("/status", {"status": 1}, None),
             ("/status", {"status": "closed", "snoozed_until": "2999-01-01T00:00:00Z"}, None),
             ("/tags", {"add": "vip"}, None), ("/tags", {}, None), ("/tags", {"add": [""]}, None),
             ("/read", {"seq": -1}, None), ("/read", {}, None), ("/messages", None, b"")]
    before = await db.fetch("SELECT status, assignee_id, tags, last_seq FROM conversations")
    for suffix, body, raw in cases:
        status, resp = http("POST", base + suffix, body, headers=auth, raw=raw)
        assert 400 <= status < 500 and resp["error"]["code"], (suffix, body, raw, status, resp)
    for query in ("?status=nope", "?limit=0", "?limit=x", "?cursor=garbage", "?unread=maybe", "?assignee=bob"):
        status, resp = call(server, "GET", "/admin/api/conversations" + query, token)
        assert status == 422, (query, resp)
    assert call(server, "GET", f"/admin/api/conversations/{uuid.uuid4()}", token)[0] == 404
    assert call(server, "GET", "/admin/api/conversations/not-a-uuid", token)[0] == 404
    assert call(server, "GET", "/admin/api/users/not-a-uuid", token)[0] == 404
    assert await db.fetch("SELECT status, assignee_id, tags, last_seq FROM conversations") == before


def test_openapi_documents_the_inbox(server: ServerProcess) -> None:
    status, doc = http("GET", server.url + "/openapi.json")
    assert status == 200
    for path in ("/admin/api/conversations", "/admin/api/conversations/{conversation_id}",
                 "/admin/api/conversations/{conversation_id}/notes", "/admin/api/users/{user_id}",
                 "/admin/api/dashboard/stats"):
        assert path in doc["paths"], path
