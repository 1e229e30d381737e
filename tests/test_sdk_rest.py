"""SDK REST /v1: identify, conversations, messages, receipts, sync, identity, tenancy, bad input."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest

from server.users.identity import user_hash
from tests.support import ServerProcess, http


def headers(key: str, user_id: str | None = None, anonymous_id: str | None = None,
            hash_: str | None = None) -> dict[str, str]:
    h = {"X-API-Key": key}
    if user_id:
        h["X-User-Id"] = user_id
    if anonymous_id:
        h["X-Anonymous-Id"] = anonymous_id
    if hash_:
        h["X-User-Hash"] = hash_
    return h


async def counts(db: asyncpg.Pool) -> dict[str, int]:
    return {t: await db.fetchval(f"SELECT count(*) FROM {t}")
            for t in ("end_users", "conversations", "messages", "receipts")}


def start_conversation(server: ServerProcess, h: dict[str, str], body: str | None = "hello") -> dict[str, Any]:
    payload: dict[str, Any] = {"subject": "Help"}
    if body:
        payload["message"] = {"client_id": uuid.uuid4().hex, "body": body}
    status, created = http("POST", server.url + "/v1/conversations", payload, headers=h)
    assert status == 201, created
    return created  # type: ignore[no-any-return]


async def test_rest_flow_identify_converse_read_and_sync(server: ServerProcess, workspace) -> None:
    h = headers(workspace.publishable_key, "user-1")
    device = {"platform": "ios", "model": "iPhone15,2", "os_version": "17.4", "app_version": "3.2.1",
              "sdk_version": "1.0.0", "locale": "en_GB", "timezone": "Europe/London"}
    status, user = http("POST", server.url + "/v1/users/identify", {
        "user_id": "user-1", "name": "Ann", "email": "ann@example.com", "attributes": {"plan": "pro"},
        "device": device}, headers={"X-API-Key": workspace.publishable_key})
    assert status == 200, user
    assert user["user_id"] == "user-1" and user["name"] == "Ann"
    assert user["metadata"]["device"] == device and user["attributes"] == {"plan": "pro"}

    status, patched = http("PATCH", server.url + "/v1/users/me", {"attributes": {"seats": 3}}, headers=h)
    assert status == 200 and patched["attributes"] == {"plan": "pro", "seats": 3}
    status, me = http("GET", server.url + "/v1/users/me", headers=h)
    assert status == 200 and me["id"] == user["id"] and me["metadata"]["device"]["platform"] == "ios"

    created = start_conversation(server, h, body="first")
    conv = created["conversation"]
    assert created["message"]["seq"] == 1 and conv["last_seq"] == 1 and conv["subject"] == "Help"
    url = f"{server.url}/v1/conversations/{conv['id']}"
    for n in range(2, 6):
        status, msg = http("POST", url + "/messages", {"client_id": f"c{n}", "body": f"m{n}"}, headers=h)
        assert status == 201 and msg["seq"] == n and msg["sender_kind"] == "user"

    status, page = http("GET", url + "/messages?after=1&limit=2", headers=h)
    assert status == 200 and [m["seq"] for m in page["messages"]] == [2, 3] and page["has_more"]
    status, page = http("GET", url + "/messages?before=5&limit=2", headers=h)
    assert [m["seq"] for m in page["messages"]] == [3, 4] and page["has_more"]
    status, page = http("GET", url + "/messages", headers=h)
    assert [m["seq"] for m in page["messages"]] == [1, 2, 3, 4, 5] and not page["has_more"]

    status, receipt = http("POST", url + "/delivered", {"seq": 4}, headers=h)
    assert status == 200 and receipt["delivered_seq"] == 4 and receipt["read_seq"] == 0
    status, receipt = http("POST", url + "/read", {"seq": 3}, headers=h)
    assert receipt["read_seq"] == 3 and receipt["delivered_seq"] == 4  # high-water marks never go down

    status, listed = http("GET", server.url + "/v1/conversations", headers=h)
    assert status == 200 and [c["id"] for c in listed["conversations"]] == [conv["id"]]
    status, one = http("GET", url, headers=h)
    assert status == 200 and one["last_seq"] == 5 and one["last_message_preview"] == "m5"

    status, sync = http("GET", server.url + "/v1/sync", headers=h)
    assert status == 200 and not sync["has_more"]
    assert [m["seq"] for m in sync["messages"]] == [1, 2, 3, 4, 5]
    assert sync["receipts"][0]["read_seq"] == 3


async def test_resend_with_same_client_id_returns_original(server: ServerProcess, workspace,
                                                            db: asyncpg.Pool) -> None:
    h = headers(workspace.publishable_key, "user-1")
    conv = start_conversation(server, h, body=None)["conversation"]
    url = f"{server.url}/v1/conversations/{conv['id']}/messages"
    status, first = http("POST", url, {"client_id": "same", "body": "hello"}, headers=h)
    assert status == 201
    status, again = http("POST", url, {"client_id": "same", "body": "hello (retry)"}, headers=h)
    assert status == 200 and again == first
    assert await db.fetchval("SELECT count(*) FROM messages WHERE client_id = 'same'") == 1


async def test_seq_is_gapless_and_ordered_under_concurrent_sends(server: ServerProcess, workspace) -> None:
    import asyncio

    h = headers(workspace.publishable_key, "user-1")
    conv = start_conversation(server, h, body=None)["conversation"]
    url = f"{server.url}/v1/conversations/{conv['id']}/messages"
    results = await asyncio.gather(*(asyncio.to_thread(http, "POST", url, {"client_id": f"c{n}", "body": str(n)},
                                                       headers=h) for n in range(40)))
    assert all(status == 201 for status, _ in results)
    assert sorted(m["seq"] for _, m in results) == list(range(1, 41))
    status, page = http("GET", url + "?limit=200", headers=h)
    assert status == 200 and [m["seq"] for m in page["messages"]] == list(range(1, 41))


async def test_sync_returns_exactly_what_was_missed_after_a_cursor_paged(server: ServerProcess, workspace) -> None:
    h = headers(workspace.publishable_key, "user-1")
    conv = start_conversation(server, h, body="before")["conversation"]
    status, first = http("GET", server.url + "/v1/sync", headers=h)
    cursor = first["cursor"]
    url = f"{server.url}/v1/conversations/{conv['id']}/messages"
    for n in range(7):
        assert http("POST", url, {"client_id": f"m{n}", "body": f"missed {n}"}, headers=h)[0] == 201
    seen: list[str] = []
    pages = 0
    while True:
        status, page = http("GET", f"{server.url}/v1/sync?cursor={cursor}&limit=3", headers=h)
        assert status == 200
        pages += 1
        seen += [m["body"] for m in page["messages"]]
        cursor = page["cursor"]
        if not page["has_more"]:
            break
    assert seen == [f"missed {n}" for n in range(7)] and pages == 3
    status, empty = http("GET", f"{server.url}/v1/sync?cursor={cursor}", headers=h)
    assert empty["messages"] == [] and empty["cursor"] == cursor and not empty["has_more"]


async def test_identity_verification_requires_a_matching_user_hash(server: ServerProcess, workspace,
                                                                   db: asyncpg.Pool) -> None:
    await db.execute("UPDATE apps SET identity_verification = 'enforce' WHERE id = $1", workspace.app_id)
    good = user_hash(workspace.identity_secret, "user-1")
    pk = workspace.publishable_key
    before = await counts(db)
    for h, code in ((headers(pk, "user-1"), "invalid_user_hash"),
                    (headers(pk, "user-1", hash_="0" * 64), "invalid_user_hash"),
                    (headers(pk, "user-1", hash_=user_hash(workspace.identity_secret, "user-2")), "invalid_user_hash")):
        status, body = http("GET", server.url + "/v1/users/me", headers=h)
        assert status == 401 and body["error"]["code"] == code
        status, body = http("POST", server.url + "/v1/conversations", {}, headers=h)
        assert status == 401
    status, body = http("POST", server.url + "/v1/users/identify", {"user_id": "user-1"},
                        headers={"X-API-Key": pk, "X-User-Hash": "bad"})
    assert status == 401 and body["error"]["code"] == "invalid_user_hash"
    assert await counts(db) == before

    status, me = http("GET", server.url + "/v1/users/me", headers=headers(pk, "user-1", hash_=good))
    assert status == 200 and me["user_id"] == "user-1"
    # A secret (server) key acts for any user of its app without a hash.
    status, other = http("GET", server.url + "/v1/users/me", headers=headers(workspace.secret_key, "user-2"))
    assert status == 200 and other["user_id"] == "user-2"


async def test_another_app_or_another_user_cannot_see_or_post_to_a_conversation(
        server: ServerProcess, workspace, other_workspace, db: asyncpg.Pool) -> None:
    mine = headers(workspace.publishable_key, "user-1")
    conv = start_conversation(server, mine)["conversation"]
    base = f"{server.url}/v1/conversations/{conv['id']}"
    before = await counts(db)
    for h in (headers(other_workspace.publishable_key, "user-1"), headers(other_workspace.secret_key, "user-1"),
              headers(workspace.publishable_key, "user-2")):
        assert http("GET", base, headers=h)[1]["error"]["code"] == "conversation_not_found"
        for method, path, body in (("GET", "", None), ("GET", "/messages", None),
                                   ("POST", "/messages", {"client_id": "x", "body": "intrusion"}),
                                   ("POST", "/read", {"seq": 1}), ("POST", "/delivered", {"seq": 1})):
            status, err = http(method, base + path, body, headers=h)
            assert status == 404, (method, path, err)
        status, listed = http("GET", server.url + "/v1/conversations", headers=h)
        assert listed["conversations"] == []
    after = await counts(db)
    # The strangers were identified (user-1 of the other app, user-2 here); nothing else was written.
    assert after["end_users"] == before["end_users"] + 2
    assert {k: after[k] for k in ("conversations", "messages", "receipts")} == {
        k: before[k] for k in ("conversations", "messages", "receipts")}


@pytest.mark.parametrize(("method", "path", "body", "raw", "status", "code"), [
    ("POST", "/messages", {"client_id": "c", "body": 5}, None, 422, "validation_error"),
    ("POST", "/messages", {"body": "no client id"}, None, 422, "validation_error"),
    ("POST", "/messages", {"client_id": "c", "body": "x", "extra": 1}, None, 422, "validation_error"),
    ("POST", "/messages", {"client_id": "c", "body": ""}, None, 422, "validation_error"),
    ("POST", "/messages", {"client_id": "c" * 101, "body": "x"}, None, 422, "validation_error"),
    ("POST", "/messages", {"client_id": "c", "body": "x" * 16385}, None, 413, "message_too_large"),
    ("POST", "/messages", None, b"{not json", 400, "malformed_json"),
    ("POST", "/messages", None, b"", 400, "malformed_json"),
    ("POST", "/messages", {"client_id": "c", "body": "x", "attachments": [{"name": "no url"}]}, None, 422,
     "validation_error"),
    ("POST", "/messages", {"client_id": "c", "body": "nul \x00 inside"}, None, 422, "validation_error"),
    ("POST", "/messages", {"client_id": "c", "body": "x", "attachments": [{"url": "https://x.t", "name": "\x00"}]},
     None, 422, "validation_error"),
    ("POST", "/read", {"seq": -1}, None, 422, "validation_error"),
    ("POST", "/read", {"seq": "3"}, None, 422, "validation_error"),
    ("GET", "/messages?limit=0", None, None, 422, "invalid_query"),
    ("GET", "/messages?before=abc", None, None, 422, "invalid_query"),
])
async def test_bad_input_gets_a_clear_4xx_and_stores_nothing(server: ServerProcess, workspace, db: asyncpg.Pool,
                                                             method: str, path: str, body: Any, raw: bytes | None,
                                                             status: int, code: str) -> None:
    h = headers(workspace.publishable_key, "user-1")
    conv = start_conversation(server, h)["conversation"]
    before = await counts(db)
    got, err = http(method, f"{server.url}/v1/conversations/{conv['id']}{path}", body, headers=h, raw=raw)
    assert (got, err["error"]["code"]) == (status, code), err
    assert await counts(db) == before


async def test_nul_characters_in_user_fields_are_a_422_and_store_nothing(server: ServerProcess, workspace,
                                                                          db: asyncpg.Pool) -> None:
    h = headers(workspace.publishable_key, "user-1")
    assert http("POST", f"{server.url}/v1/users/identify", {"user_id": "user-1", "name": "Ann"}, headers=h)[0] == 200
    before = await db.fetchrow("SELECT name, attributes, metadata FROM end_users WHERE external_id = 'user-1'")
    for method, path, body in (
            ("POST", "/v1/users/identify", {"user_id": "user-1", "attributes": {"plan": "a\x00"}}),
            ("POST", "/v1/users/identify", {"user_id": "user-1", "attributes": {"tags": [{"k": "\x00"}]}}),
            ("POST", "/v1/users/identify", {"user_id": "user-1", "device": {"model": "\x00"}}),
            ("PATCH", "/v1/users/me", {"name": "A\x00nn"}),
            ("PATCH", "/v1/users/me", {"attributes": {"\x00": 1}})):
        got, err = http(method, server.url + path, body, headers=h)
        assert (got, err["error"]["code"]) == (422, "validation_error"), (body, err)
    after = await db.fetchrow("SELECT name, attributes, metadata FROM end_users WHERE external_id = 'user-1'")
    assert after == before


async def test_bad_credentials_are_refused_and_store_nothing(server: ServerProcess, workspace,
                                                             db: asyncpg.Pool) -> None:
    key_id = await db.fetchval("SELECT id FROM api_keys WHERE app_id = $1 AND kind = 'secret'", workspace.app_id)
    await db.execute("UPDATE api_keys SET revoked_at = now() WHERE id = $1", key_id)
    before = await counts(db)
    for h, status, code in (({}, 401, "missing_api_key"),
                            (headers("rhq_pk_unknown", "u"), 401, "invalid_api_key"),
                            (headers(workspace.secret_key, "u"), 401, "invalid_api_key"),  # revoked
                            (headers(workspace.publishable_key), 401, "missing_user_id"),
                            (headers(workspace.publishable_key, "u" * 300), 422, "invalid_user_id")):
        for method, path, body in (("GET", "/v1/users/me", None), ("POST", "/v1/conversations", {}),
                                   ("GET", "/v1/sync", None), ("GET", "/v1/conversations", None)):
            got, err = http(method, server.url + path, body, headers=h)
            assert (got, err["error"]["code"]) == (status, code), (h, path, err)
    got, err = http("GET", server.url + "/v1/sync?cursor=-4", headers=headers(workspace.publishable_key, "u"))
    assert got == 422
    assert (await counts(db))["conversations"] == before["conversations"]
    assert await db.fetchval("SELECT count(*) FROM end_users WHERE external_id <> 'u'") == 0


def test_sdk_routes_and_socket_docs_are_documented(server: ServerProcess) -> None:
    status, doc = http("GET", server.url + "/openapi.json")
    for path in ("/v1/users/identify", "/v1/users/me", "/v1/conversations", "/v1/conversations/{conversation_id}",
                 "/v1/conversations/{conversation_id}/messages", "/v1/conversations/{conversation_id}/read",
                 "/v1/conversations/{conversation_id}/delivered", "/v1/sync", "/docs/socket-events"):
        assert path in doc["paths"], path
    assert "post" in doc["paths"]["/v1/conversations/{conversation_id}/messages"]
    status, page = http("GET", server.url + "/docs/socket-events")
    assert status == 200 and "message:send" in page and "connect_error" in page


def _page_through(server: ServerProcess, h: dict[str, str], limit: int) -> list[str]:
    ids: list[str] = []
    cursor = ""
    while True:
        status, page = http("GET", f"{server.url}/v1/conversations?limit={limit}&before={cursor}", headers=h)
        assert status == 200, page
        ids += [c["id"] for c in page["conversations"]]
        if page["next_cursor"] is None:
            return ids
        cursor = page["next_cursor"]


async def test_conversation_pages_neither_skip_nor_repeat_conversations_updated_at_one_instant(
        server: ServerProcess, workspace, db: asyncpg.Pool) -> None:
    h = headers(workspace.publishable_key, "ann")
    created = [start_conversation(server, h, body=None)["conversation"]["id"] for _ in range(5)]
    # One group commit updates every conversation it wrote to at the same now().
    await db.execute("UPDATE conversations SET updated_at = now() WHERE id = ANY($1::uuid[])", created)
    for limit in (1, 2, 3):
        listed = _page_through(server, h, limit)
        assert sorted(listed) == sorted(created), limit
    # A timestamp (what next_cursor was before) still works; anything else is a 422.
    status, page = http("GET", f"{server.url}/v1/conversations?before=2999-01-01T00:00:00Z", headers=h)
    assert status == 200 and len(page["conversations"]) == 5
    for bad in ("yesterday", "99999999999999999999-" + "0" * 32):
        status, body = http("GET", f"{server.url}/v1/conversations?before={bad}", headers=h)
        assert status == 422 and body["error"]["code"] == "invalid_query", body


def _identify(server: ServerProcess, key: str, **body: str) -> dict[str, Any]:
    status, user = http("POST", server.url + "/v1/users/identify", body, headers=headers(key))
    assert status == 200, user
    return user  # type: ignore[no-any-return]


def _conversation_ids(server: ServerProcess, h: dict[str, str]) -> list[str]:
    status, page = http("GET", server.url + "/v1/conversations", headers=h)
    assert status == 200, page
    return [c["id"] for c in page["conversations"]]


def test_a_visitor_who_signs_in_keeps_their_conversations(server: ServerProcess, workspace) -> None:
    key = workspace.publishable_key
    visitor = headers(key, anonymous_id="visitor-1")
    conv = start_conversation(server, visitor, body="Do you ship to Norway?")["conversation"]["id"]
    anon_id = _identify(server, key, anonymous_id="visitor-1")["id"]

    user = _identify(server, key, user_id="ann", anonymous_id="visitor-1", name="Ann")
    assert user["id"] == anon_id and user["user_id"] == "ann" and user["name"] == "Ann"
    assert _conversation_ids(server, headers(key, "ann")) == [conv]
    status, messages = http("GET", f"{server.url}/v1/conversations/{conv}/messages", headers=headers(key, "ann"))
    assert status == 200 and [m["body"] for m in messages["messages"]] == ["Do you ship to Norway?"]
    assert _identify(server, key, user_id="ann")["id"] == anon_id  # later sign-ins: the same user


def test_a_visitor_signing_in_as_an_existing_user_is_not_merged_into_them(server: ServerProcess, workspace) -> None:
    key = workspace.publishable_key
    bob = _identify(server, key, user_id="bob")
    bobs = start_conversation(server, headers(key, "bob"))["conversation"]["id"]
    start_conversation(server, headers(key, anonymous_id="visitor-2"))

    again = _identify(server, key, user_id="bob", anonymous_id="visitor-2")
    assert again["id"] == bob["id"]
    assert _conversation_ids(server, headers(key, "bob")) == [bobs]
