"""SDK Socket.IO /client: handshake identity, message:send acks, fan-out to the user's other
devices in seq order, receipts, typing, sync after a drop, session tracking, bad input, and the
official JavaScript socket.io-client v4 over websocket and long-polling."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from contextlib import AsyncExitStack
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from loadtests.sdk_client import ReplyHQClient, ReplyHQError
from server.realtime import sessions
from server.users.identity import user_hash
from tests.sockets import open_socket, refused_handshake
from tests.support import ROOT, ServerProcess, http

DEVICE = {"platform": "android", "model": "Pixel 8", "os_version": "14", "app_version": "2.0.0",
          "sdk_version": "1.0.0", "locale": "de_DE", "timezone": "Europe/Berlin"}


async def counts(db: asyncpg.Pool) -> dict[str, int]:
    return {t: await db.fetchval(f"SELECT count(*) FROM {t}")
            for t in ("end_users", "conversations", "messages", "receipts")}


async def connected(server: ServerProcess, key: str, user_id: str = "user-1", **kw: Any) -> ReplyHQClient:
    client = ReplyHQClient(server.url, key, user_id, **kw)
    await client.connect()
    return client


async def refusal(server: ServerProcess, auth: Any) -> dict[str, Any]:
    """The connect_error data of a refused /client handshake."""
    return (await refused_handshake(server.url, "/client", auth=auth))["data"]  # type: ignore[no-any-return]


async def test_send_is_acked_with_the_stored_message_and_reaches_the_other_device_in_seq_order(
        server: ServerProcess, workspace) -> None:
    phone = await connected(server, workspace.publishable_key, device=DEVICE, transports=["websocket"])
    laptop = await connected(server, workspace.publishable_key, transports=["polling"])
    try:
        created = await phone.create_conversation(subject="Order 42", body="hi")
        conv = created["conversation"]
        assert created["message"]["seq"] == 1 and conv["subject"] == "Order 42"
        _, announced = await laptop.receive("conversation:created")
        assert announced["id"] == conv["id"]
        acks = [await phone.send(conv["id"], f"m{n}") for n in range(2, 12)]
        burst = await asyncio.gather(*(phone.send(conv["id"], f"b{n}") for n in range(10)))
        assert [m["seq"] for m in acks] == list(range(2, 12))
        assert sorted(m["seq"] for m in burst) == list(range(12, 22))
        got = [(await laptop.receive("message:new"))[1]["seq"] for _ in range(21)]
        assert got == list(range(1, 22))  # every message once, in seq order
        stored = {m["id"]: m for m in acks + burst}
        status, page = http("GET", f"{server.url}/v1/conversations/{conv['id']}/messages?limit=200",
                            headers={"X-API-Key": workspace.publishable_key, "X-User-Id": "user-1"})
        assert status == 200 and [m["seq"] for m in page["messages"]] == list(range(1, 22))
        assert all(stored[m["id"]] == m for m in page["messages"] if m["id"] in stored)
    finally:
        await phone.close()
        await laptop.close()


async def test_resend_with_same_client_id_returns_original_over_the_socket(server: ServerProcess, workspace,
                                                                            db: asyncpg.Pool) -> None:
    client = await connected(server, workspace.publishable_key)
    laptop = await connected(server, workspace.publishable_key)
    devices = AsyncExitStack()
    tablet = await devices.enter_async_context(open_socket(  # a device without the SDK's dedupe
        server.url, "/client", transports=["websocket"],
        auth={"api_key": workspace.publishable_key, "user_id": "user-1"}))
    try:
        conv = (await client.create_conversation())["conversation"]
        first = await client.send(conv["id"], "once", client_id="dup-1")
        again = await client.send(conv["id"], "twice?", client_id="dup-1")
        assert again == first
        assert await db.fetchval("SELECT count(*) FROM messages WHERE client_id = 'dup-1'") == 1
        # The resend fans the original out again (its first owner may have died before its
        # fan-out); devices see the same id and seq twice, and the SDK hands it over once.
        for _ in range(50):
            if len(tablet.named("message:new")) >= 2:
                break
            await asyncio.sleep(0.1)
        raw = tablet.named("message:new")
        assert [(m["id"], m["seq"], m["body"]) for m in raw] == [(first["id"], first["seq"], "once")] * 2
        _, delivered = await laptop.receive("message:new")
        assert delivered["id"] == first["id"]
        await client.send(conv["id"], "next", client_id="dup-2")
        _, following = await laptop.receive("message:new")
        assert following["body"] == "next"  # not the original a second time
    finally:
        await client.close()
        await laptop.close()
        await devices.aclose()


async def test_receipts_and_typing_reach_the_users_other_devices(server: ServerProcess, workspace) -> None:
    phone = await connected(server, workspace.publishable_key)
    laptop = await connected(server, workspace.publishable_key)
    try:
        conv = (await phone.create_conversation(body="one"))["conversation"]
        await phone.send(conv["id"], "two")
        receipt = await phone.mark_delivered(conv["id"], 2)
        assert receipt["delivered_seq"] == 2 and receipt["read_seq"] == 0
        receipt = await phone.mark_read(conv["id"], 1)
        assert receipt["read_seq"] == 1 and receipt["delivered_seq"] == 2
        _, seen = await laptop.receive("receipt:updated")
        assert seen["conversation_id"] == conv["id"]
        await phone.typing(conv["id"], True)
        _, typing = await laptop.receive("typing")
        assert typing == {"conversation_id": conv["id"], "typing": True, "sender_kind": "user",
                          "sender_id": typing["sender_id"]}
        await asyncio.sleep(0.2)
        assert all(name != "typing" for name, _ in list(phone.events._queue))  # type: ignore[attr-defined]
    finally:
        await phone.close()
        await laptop.close()


async def test_reconnecting_client_syncs_exactly_what_it_missed(server: ServerProcess, workspace) -> None:
    away = await connected(server, workspace.publishable_key, transports=["websocket"])
    other = await connected(server, workspace.publishable_key)
    try:
        conv = (await other.create_conversation(body="m0"))["conversation"]
        assert (await away.receive("message:new"))[1]["seq"] == 1
        drops = away.connects
        await away.sio.eio.ws.close()  # the connection drops under the client (not a clean disconnect)
        for n in range(1, 8):
            await other.send(conv["id"], f"m{n}")
        got = [(await away.receive("message:new", timeout=15))[1]["body"] for _ in range(7)]
        assert got == [f"m{n}" for n in range(1, 8)]
        assert away.connects > drops
        # and it keeps going live afterwards
        await other.send(conv["id"], "after")
        assert (await away.receive("message:new"))[1]["body"] == "after"
        assert away.events.empty()
    finally:
        await away.close()
        await other.close()


async def test_sync_event_pages_from_a_cursor(server: ServerProcess, workspace) -> None:
    client = await connected(server, workspace.publishable_key)
    try:
        conv = (await client.create_conversation())["conversation"]
        start = (await client.sync_page())["cursor"]
        for n in range(5):
            await client.send(conv["id"], f"s{n}")
        page = await client.sync_page(cursor=start, limit=2)
        assert [m["body"] for m in page["messages"]] == ["s0", "s1"] and page["has_more"]
        rest = await client.sync_page(cursor=page["cursor"], limit=10)
        assert [m["body"] for m in rest["messages"]] == ["s2", "s3", "s4"] and not rest["has_more"]
    finally:
        await client.close()


async def test_handshake_identity_verification(server: ServerProcess, workspace, db: asyncpg.Pool) -> None:
    await db.execute("UPDATE apps SET identity_verification = 'enforce' WHERE id = $1", workspace.app_id)
    pk = workspace.publishable_key
    before = await counts(db)
    for auth, code in (({"api_key": pk, "user_id": "user-1"}, "invalid_user_hash"),
                       ({"api_key": pk, "user_id": "user-1", "user_hash": "f" * 64}, "invalid_user_hash"),
                       ({"api_key": pk, "user_id": "user-1",
                         "user_hash": user_hash(workspace.identity_secret, "user-2")}, "invalid_user_hash")):
        assert (await refusal(server, auth))["error"]["code"] == code
    assert await counts(db) == before
    good = await connected(server, pk, user_hash=user_hash(workspace.identity_secret, "user-1"))
    server_side = await connected(server, workspace.secret_key, user_id="anyone")  # secret key: no hash
    try:
        conv = (await server_side.create_conversation(body="from the backend"))["conversation"]
        assert conv["user_id"] == await db.fetchval("SELECT id::text FROM end_users WHERE external_id = 'anyone'")
        assert (await good.create_conversation())["conversation"]["id"]
    finally:
        await good.close()
        await server_side.close()


async def test_bad_handshakes_are_refused_with_connect_error_and_store_nothing(
        server: ServerProcess, workspace, db: asyncpg.Pool) -> None:
    await db.execute("UPDATE api_keys SET revoked_at = now() WHERE app_id = $1 AND kind = 'secret'",
                     workspace.app_id)
    before = await counts(db)
    for auth, code in (({}, "missing_api_key"), ({"api_key": "rhq_pk_nope", "user_id": "u"}, "invalid_api_key"),
                       ({"api_key": workspace.secret_key, "user_id": "u"}, "invalid_api_key"),
                       ({"api_key": workspace.publishable_key}, "missing_user_id"),
                       ({"api_key": workspace.publishable_key, "user_id": 7}, "validation_error"),
                       ({"api_key": workspace.publishable_key, "user_id": "u", "device": {"platform": 1}},
                        "validation_error")):
        data = await refusal(server, auth)
        assert data["error"]["code"] == code, (auth, data)
    assert await counts(db) == before


async def test_bad_events_get_error_acks_and_store_nothing(server: ServerProcess, workspace, other_workspace,
                                                           db: asyncpg.Pool) -> None:
    owner = await connected(server, workspace.publishable_key)
    stranger = await connected(server, workspace.publishable_key, user_id="user-2")
    foreign = await connected(server, other_workspace.secret_key, user_id="user-1")
    try:
        conv = (await owner.create_conversation(body="mine"))["conversation"]
        before = await counts(db)
        cases: list[tuple[ReplyHQClient, str, Any, int, str]] = [
            (owner, "no:such:event", {}, 400, "unknown_event"),
            (owner, "message:send", {"conversation_id": conv["id"], "client_id": "c", "body": 5}, 422,
             "validation_error"),
            (owner, "message:send", {"conversation_id": conv["id"], "body": "x"}, 422, "validation_error"),
            (owner, "message:send", "not an object", 422, "validation_error"),
            (owner, "message:send", None, 422, "validation_error"),
            (owner, "message:send", {"conversation_id": conv["id"], "client_id": "c", "body": "x", "more": 1}, 422,
             "validation_error"),
            (owner, "message:send", {"conversation_id": conv["id"], "client_id": "c", "body": "x" * 20000}, 413,
             "message_too_large"),
            (owner, "message:send", {"conversation_id": "not-a-uuid", "client_id": "c", "body": "x"}, 404,
             "conversation_not_found"),
            (owner, "message:read", {"conversation_id": conv["id"], "seq": "1"}, 422, "validation_error"),
            (owner, "conversation:create", {"message": {"client_id": "c", "body": "x" * 20000}}, 413,
             "message_too_large"),
            (owner, "sync", {"cursor": "abc"}, 422, "validation_error"),
            # Postgres cannot store NUL: a 422 here, never a 503 that a client retries forever.
            (owner, "message:send", {"conversation_id": conv["id"], "client_id": "c", "body": "a\x00b"}, 422,
             "validation_error"),
            (owner, "message:send", {"conversation_id": conv["id"], "client_id": "c\x00", "body": "x"}, 422,
             "validation_error"),
            (owner, "message:send", {"conversation_id": conv["id"], "client_id": "c", "body": "x",
                                     "attachments": [{"url": "https://x.test/\x00"}]}, 422, "validation_error"),
            (owner, "conversation:create", {"subject": "\x00"}, 422, "validation_error"),
            (stranger, "message:send", {"conversation_id": conv["id"], "client_id": "c", "body": "x"}, 404,
             "conversation_not_found"),
            (stranger, "message:read", {"conversation_id": conv["id"], "seq": 1}, 404, "conversation_not_found"),
            (stranger, "typing:start", {"conversation_id": conv["id"]}, 404, "conversation_not_found"),
            (foreign, "message:send", {"conversation_id": conv["id"], "client_id": "c", "body": "x"}, 404,
             "conversation_not_found"),
        ]
        for client, event, payload, status, code in cases:
            with pytest.raises(ReplyHQError) as err:
                await client.call(event, payload, retry=False)
            assert (err.value.status, err.value.code) == (status, code), (event, payload, err.value.body)
        assert await counts(db) == before
        assert owner.sio.connected  # errors never cost the socket
    finally:
        for c in (owner, stranger, foreign):
            await c.close()


async def test_live_sessions_are_tracked_for_admins(server: ServerProcess, workspace, redis_url: str) -> None:
    r = aioredis.from_url(redis_url)
    phone = await connected(server, workspace.publishable_key, device=DEVICE)
    visitor = ReplyHQClient(server.url, workspace.publishable_key, anonymous_id="anon-7")
    await visitor.connect()
    try:
        app_id = str(workspace.app_id)
        live = await sessions.live_replicas(r)
        assert live == {"replica-1"}
        listed = await sessions.list_sessions(r, app_id, live)
        assert len(listed) == 2 and {s.replica for s in listed} == {"replica-1"}
        by_user = {s.external_user_id or s.anonymous_id: s for s in listed}
        assert by_user["user-1"].device == DEVICE and by_user["user-1"].sid == phone.sio.get_sid("/client")
        assert by_user["anon-7"].external_user_id is None
        # An entry left behind by a replica that died is not listed (and is pruned).
        ghost = sessions.SdkSession(sid="ghost", replica="replica-dead", user_id="x", external_user_id="x",
                                    anonymous_id=None, device={}, connected_at="2020-01-01T00:00:00Z")
        await sessions.register(r, app_id, ghost)
        assert "ghost" not in {s.sid for s in await sessions.list_sessions(r, app_id, live)}
        assert not await r.hexists(sessions.sessions_key(app_id), "ghost")
        await visitor.close()
        for _ in range(100):  # the server removes the entry when it sees the disconnect
            if len(await sessions.list_sessions(r, app_id, live)) == 1:
                break
            await asyncio.sleep(0.05)
        assert [s.external_user_id for s in await sessions.list_sessions(r, app_id, live)] == ["user-1"]
        status, me = http("GET", server.url + "/v1/users/me",
                          headers={"X-API-Key": workspace.publishable_key, "X-User-Id": "user-1"})
        assert status == 200 and me["metadata"]["device"] == DEVICE  # handshake device = metadata.device
    finally:
        await phone.close()
        await visitor.close()
        await r.aclose()


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
@pytest.mark.parametrize("transport", ["websocket", "polling"])
async def test_official_js_socketio_client_v4_sends_and_receives(server: ServerProcess, workspace,
                                                                 transport: str) -> None:
    lib = ROOT / "static" / "node_modules" / "socket.io-client"
    if not lib.exists():
        pytest.skip("socket.io-client not installed (npm ci --prefix static)")
    status, created = http("POST", server.url + "/v1/conversations", {"subject": "js"},
                           headers={"X-API-Key": workspace.publishable_key, "X-User-Id": "web-1"})
    assert status == 201
    conv_id = created["conversation"]["id"]
    proc = await asyncio.to_thread(
        subprocess.run, ["node", str(ROOT / "tests" / "js" / "client_roundtrip.cjs"), server.url,
                         workspace.publishable_key, "web-1", conv_id, transport],
        capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["transport"] == transport
    assert result["ack"]["ok"] and result["ack"]["message"]["seq"] == 1
    assert result["received"]["id"] == result["ack"]["message"]["id"]


async def test_sdk_send_survives_a_dropped_socket_and_lands_exactly_once(server: ServerProcess, workspace,
                                                                          db: asyncpg.Pool) -> None:
    client = await connected(server, workspace.publishable_key, transports=["websocket"])
    try:
        conv = (await client.create_conversation())["conversation"]
        sends = []
        for n in range(6):
            if n in (2, 4):
                await client.sio.eio.ws.close()  # drop right before (and so during) the next sends
            sends.append(asyncio.create_task(client.send(conv["id"], f"r{n}", client_id=f"retry-{n}")))
        messages = await asyncio.gather(*sends)
        assert sorted(m["seq"] for m in messages) == list(range(1, 7))
        stored = await db.fetch("SELECT client_id, seq FROM messages WHERE conversation_id = $1::uuid ORDER BY seq",
                                conv["id"])
        assert sorted(r["client_id"] for r in stored) == [f"retry-{n}" for n in range(6)]
        assert [r["seq"] for r in stored] == list(range(1, 7))
    finally:
        await client.close()
