"""API keys v2 against real servers: checksums, secret-key scopes (REST and sockets), rename and
re-scope, rotation with its grace window, revocation across replicas (refused within a second,
sockets ended), legacy plaintext keys hashed on first use, and LEGACY_AUTH=off."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from server.tenancy.api_keys import KeyKind, new_key, shape
from tests.admin_helpers import call, invite_and_join, signup
from tests.sockets import admin_socket, refused_handshake, sdk_socket
from tests.support import ServerProcess, http


def sdk(server: ServerProcess, method: str, path: str, key: str, body: Any = None,
        user: str = "u-1") -> tuple[int, Any]:
    return http(method, server.url + path, body, headers={"x-api-key": key, "x-user-id": user})


def _keys(server: ServerProcess, token: str) -> dict[str, dict[str, Any]]:
    status, body = call(server, "GET", "/admin/api/api-keys", token)
    assert status == 200, body
    return {k["id"]: k for k in body["api_keys"]}


def _refused(status_body: tuple[int, Any], code: str, status: int = 401) -> bool:
    got, body = status_body
    return got == status and body["error"]["code"] == code


def test_every_single_character_typo_fails_the_checksum() -> None:
    kinds: tuple[KeyKind, ...] = ("publishable", "secret")
    for kind in kinds:
        key = new_key(kind)
        assert len(key) == 45 and shape(key) == "checksummed"
        for i in range(7, len(key)):
            for c in "0aZ":
                if key[i] != c:
                    assert shape(key[:i] + c + key[i + 1:]) == "bad_checksum", (key, i, c)
    assert shape("rhq_pk_" + "A" * 43) == "unchecked"  # made before checksums: looked up as it is
    assert shape("sk_live_123") == "other"  # only a legacy plaintext key can look like this


async def test_scopes_rename_checksum_and_who_may_write(server: ServerProcess) -> None:
    owner = signup(server)
    token = owner["access_token"]
    status, listing = call(server, "GET", "/admin/api/api-keys", token)
    assert "conversations.reply" in listing["scopes"] and "api_keys.write" in listing["scopes"]
    default_secret = next(k for k in listing["api_keys"] if k["kind"] == "secret")
    assert set(default_secret["scopes"]) == set(listing["scopes"])  # signup's key: every permission
    status, created = call(server, "POST", "/admin/api/api-keys", token,
                           {"kind": "secret", "name": "reader", "scopes": ["conversations.read"]})
    assert status == 201 and created["api_key"]["scopes"] == ["conversations.read"], created
    key, key_id = created["key"], created["api_key"]["id"]

    # a read is within the scopes; a write is a 403 and stores nothing
    assert sdk(server, "GET", "/v1/conversations", key)[0] == 200
    assert _refused(sdk(server, "POST", "/v1/conversations", key, {"subject": "x"}), "scope_denied", 403)
    assert _refused(sdk(server, "PATCH", "/v1/users/me", key, {"name": "x"}), "scope_denied", 403)
    assert sdk(server, "GET", "/v1/conversations", key)[1]["conversations"] == []
    async with sdk_socket(server, key, "u-1") as sock:  # the socket is held to the scopes too
        ack = await sock.call("conversation:create", {"subject": "x"})
        assert ack["ok"] is False and ack["error"]["code"] == "scope_denied", ack
        assert (await sock.call("sync", {}))["ok"] is True
        # re-scoped: the live socket follows at once
        status, updated = call(server, "PATCH", f"/admin/api/api-keys/{key_id}", token,
                               {"name": "writer", "scopes": ["conversations.read", "conversations.reply"]})
        assert status == 200 and updated["name"] == "writer", updated
        assert updated["scopes"] == ["conversations.read", "conversations.reply"]
        ack = await sock.call("conversation:create", {"subject": "now allowed"})
        assert ack["ok"] is True, ack
    assert sdk(server, "POST", "/v1/conversations", key, {"subject": "y"})[0] == 201

    # bad input: 4xx, nothing stored
    before = _keys(server, token)
    bad = [({"kind": "secret", "scopes": ["conversations.explode"]}, 422, "unknown_scope"),
           ({"kind": "secret", "scopes": []}, 422, "validation_error"),
           ({"kind": "publishable", "scopes": ["users.read"]}, 422, "scopes_not_allowed"),
           ({"kind": "secret", "scopes": ["users.read\u0000"]}, 422, "validation_error"),
           ({"kind": "secret", "expires_at": "2001-01-01T00:00:00Z"}, 422, "validation_error"),
           ({"kind": "secret", "owner": "me"}, 422, "validation_error")]
    for body, status, code in bad:
        got, resp = call(server, "POST", "/admin/api/api-keys", token, body)
        assert (got, resp["error"]["code"]) == (status, code), (body, resp)
    for body, status, code in [({"scopes": ["nope"]}, 422, "unknown_scope"), ({"name": 5}, 422, "validation_error")]:
        got, resp = call(server, "PATCH", f"/admin/api/api-keys/{key_id}", token, body)
        assert (got, resp["error"]["code"]) == (status, code), (body, resp)
    publishable = next(k for k in before.values() if k["kind"] == "publishable")
    got, resp = call(server, "PATCH", f"/admin/api/api-keys/{publishable['id']}", token, {"scopes": ["users.read"]})
    assert got == 422 and resp["error"]["code"] == "scopes_not_allowed"
    assert call(server, "PATCH", f"/admin/api/api-keys/{uuid.uuid4()}", token, {"name": "x"})[0] == 404
    # a viewer writing, an admin granting what the admin role lacks: 403
    viewer = invite_and_join(server, token, "viewer")["access_token"]
    admin = invite_and_join(server, token, "admin")["access_token"]
    for method, path, body in (("POST", "/admin/api/api-keys", {"kind": "secret"}),
                               ("PATCH", f"/admin/api/api-keys/{key_id}", {"name": "mine"}),
                               ("POST", f"/admin/api/api-keys/{key_id}/rotate", {}),
                               ("DELETE", f"/admin/api/api-keys/{key_id}", None)):
        got, resp = call(server, method, path, viewer, body)
        assert got == 403 and resp["error"]["code"] == "permission_denied", (method, path, resp)
    got, resp = call(server, "POST", "/admin/api/api-keys", admin, {"kind": "secret", "scopes": ["billing.write"]})
    assert got == 403 and resp["error"]["code"] == "scope_above_own"
    assert _keys(server, token) == before

    # a mistyped key is refused by its checksum, before any lookup; keys made before checksums still work
    assert key[-6:] != "000000"
    typo = key[:-1] + ("a" if key[-1] != "a" else "b")
    assert _refused(sdk(server, "GET", "/v1/conversations", typo), "malformed_api_key")
    swapped = key[:10] + key[11] + key[10] + key[12:]
    if swapped != key:
        assert _refused(sdk(server, "GET", "/v1/conversations", swapped), "malformed_api_key")
    assert _refused(sdk(server, "GET", "/v1/conversations", new_key("secret")), "invalid_api_key")


async def test_rotation_keeps_the_old_key_for_its_grace_then_refuses_it(server: ServerProcess) -> None:
    owner = signup(server)
    token = owner["access_token"]
    _, created = call(server, "POST", "/admin/api/api-keys", token, {"kind": "publishable", "name": "iOS"})
    old, old_id = created["key"], created["api_key"]["id"]
    status, rotated = call(server, "POST", f"/admin/api/api-keys/{old_id}/rotate", token, {"grace_seconds": 2})
    assert status == 201, rotated
    new = rotated["key"]
    assert new != old and new.startswith("rhq_pk_") and rotated["api_key"]["name"] == "iOS"
    assert rotated["api_key"]["rotated_from"] == old_id and rotated["api_key"]["status"] == "active"
    assert rotated["previous"]["status"] == "expiring" and rotated["previous"]["expires_at"]
    async with sdk_socket(server, old, "u-1") as on_old:  # connected in the grace period
        assert sdk(server, "GET", "/v1/users/me", old)[0] == 200
        assert sdk(server, "GET", "/v1/users/me", new)[0] == 200
        # rotating the old key again, or with a grace over 7 days: refused
        got, resp = call(server, "POST", f"/admin/api/api-keys/{old_id}/rotate", token, {})
        assert got == 409 and resp["error"]["code"] == "api_key_rotated"
        got, resp = call(server, "POST", f"/admin/api/api-keys/{rotated['api_key']['id']}/rotate", token,
                         {"grace_seconds": 7 * 86400 + 1})
        assert got == 422
        ended = await on_old.wait_for("session:ended", timeout=6)  # the grace is over: its sockets end
        assert ended["error"]["code"] == "api_key_expired"
    assert _refused(sdk(server, "GET", "/v1/users/me", old), "api_key_expired")
    assert sdk(server, "GET", "/v1/users/me", new)[0] == 200
    assert _keys(server, token)[old_id]["status"] == "expired"
    got, resp = call(server, "PATCH", f"/admin/api/api-keys/{old_id}", token, {"name": "x"})
    assert got == 409 and resp["error"]["code"] == "api_key_expired"

    # no grace (0): the old key stops at once; the default is 24 h
    status, again = call(server, "POST", f"/admin/api/api-keys/{rotated['api_key']['id']}/rotate", token,
                         {"grace_seconds": 0})
    assert status == 201 and again["previous"]["status"] == "expired"
    assert _refused(sdk(server, "GET", "/v1/users/me", new), "api_key_expired")
    status, third = call(server, "POST", f"/admin/api/api-keys/{again['api_key']['id']}/rotate", token, {})
    assert status == 201
    expires = datetime.fromisoformat(third["previous"]["expires_at"].replace("Z", "+00:00"))
    hours = (expires - datetime.now(UTC)).total_seconds() / 3600
    assert 23.9 < hours <= 24.01, third["previous"]
    assert sdk(server, "GET", "/v1/users/me", again["key"])[0] == 200
    assert sdk(server, "GET", "/v1/users/me", third["key"])[0] == 200
    status, events = call(server, "GET", "/admin/api/events?type=api_key.rotated&limit=10", token)
    assert status == 200 and len(events["events"]) == 3, events


async def test_revocation_is_refused_on_every_replica_within_a_second_and_ends_sockets(
        start_server, workspace) -> None:
    one, two = start_server(), start_server()
    token = http("POST", one.url + "/admin/auth/login",
                 {"email": workspace.email, "password": "correct horse battery"})[1]["access_token"]
    key = workspace.publishable_key
    key_id = next(k["id"] for k in _keys(one, token).values() if k["kind"] == "publishable")
    async with sdk_socket(two, key, "ann") as sock_two, sdk_socket(one, key, "bob") as sock_one:
        assert sdk(two, "GET", "/v1/users/me", key)[0] == 200  # cached on replica two now
        status, revoked = call(one, "DELETE", f"/admin/api/api-keys/{key_id}", token)
        assert status == 200 and revoked["status"] == "revoked"
        t0 = time.monotonic()
        while not _refused(sdk(two, "GET", "/v1/users/me", key), "invalid_api_key"):
            assert time.monotonic() - t0 < 1.0, "replica two still accepts the revoked key"
            await asyncio.sleep(0.05)
        for sock in (sock_two, sock_one):
            ended = await sock.wait_for("session:ended", timeout=2)
            assert ended["error"]["code"] == "invalid_api_key"
            for _ in range(40):
                if not sock.connected:
                    break
                await asyncio.sleep(0.05)
            assert not sock.connected
        assert time.monotonic() - t0 < 2.0
    assert _refused(sdk(one, "GET", "/v1/users/me", key), "invalid_api_key")


async def _legacy_key(db: asyncpg.Pool, app_id: uuid.UUID, plaintext: str) -> uuid.UUID:
    """A row as a pre-hash install left it: the plaintext, no hash."""
    return await db.fetchval(
        """INSERT INTO api_keys (app_id, kind, name, prefix, api_key, scopes)
           VALUES ($1, 'secret', 'legacy', left($2, 15), $2,
                   (SELECT permissions FROM roles WHERE name = 'owner')) RETURNING id""", app_id, plaintext)


async def test_legacy_plaintext_keys_are_hashed_on_first_use_and_legacy_auth_off_refuses_them(
        start_server, workspace, db: asyncpg.Pool) -> None:
    on = start_server()
    plain = "sk_live_" + uuid.uuid4().hex
    key_id = await _legacy_key(db, workspace.app_id, plain)
    assert sdk(on, "GET", "/v1/users/me", plain)[0] == 200
    row = await db.fetchrow("SELECT api_key, api_key_hash, prefix FROM api_keys WHERE id = $1", key_id)
    assert row["api_key"] is None and row["api_key_hash"] == hashlib.sha256(plain.encode()).hexdigest()
    assert await db.fetchval("SELECT count(*) FROM domain_events WHERE type = 'api_key.updated' "
                             "AND data::jsonb->'changes' = '[\"hashed\"]'::jsonb") == 1
    assert sdk(on, "GET", "/v1/users/me", plain)[0] == 200  # now by its hash

    off = start_server(LEGACY_AUTH="off")
    # off: a key of the legacy format is refused without a lookup, even once hashed
    assert _refused(sdk(off, "GET", "/v1/users/me", plain), "invalid_api_key")
    other = "sk_live_" + uuid.uuid4().hex
    other_id = await _legacy_key(db, workspace.app_id, other)
    assert _refused(sdk(off, "GET", "/v1/users/me", other), "invalid_api_key")
    assert await db.fetchval("SELECT api_key FROM api_keys WHERE id = $1", other_id) == other  # untouched
    assert sdk(off, "GET", "/v1/users/me", workspace.secret_key)[0] == 200
    # the secret key as an /admin admin_token: a legacy path too
    refused = await refused_handshake(off.url, "/admin", auth={"admin_token": workspace.secret_key})
    assert refused["data"]["error"]["code"] == "invalid_token"
    async with admin_socket(on, workspace.secret_key) as legacy:  # accepted where legacy auth is on
        me = await legacy.call("me", None)
        assert me["ok"] is True and me["admin_id"] is None, me
