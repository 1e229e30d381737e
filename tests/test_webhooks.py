"""Webhooks against a real server and real receivers on 127.0.0.1: CRUD and bad input, signed
deliveries checked with the SDK client's verify_webhook, rotation, ping, replay, and what receivers
do wrong (a 500, a 410, a hang, a 429 with Retry-After, five days of failures)."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
import pytest

from server.dev.embedded import EmbeddedServices
from tests.admin_helpers import call, invite_and_join, signup
from tests.conftest import cloned_database, module_server
from tests.support import ServerProcess, http
from tests.webhook_helpers import FAST_ENV, Receiver

EVENTS = ["conversation.created", "message.created"]


@pytest.fixture(scope="module")
def hooks_db(pg_admin_url: str, template_db: str) -> Iterator[str]:
    with cloned_database(pg_admin_url, template_db, f"hooks_{os.getpid()}") as url:
        yield url


@pytest.fixture(scope="module")
def hooks_server(services: EmbeddedServices, hooks_db: str,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the module (each test signs up its own workspace), with receivers on 127.0.0.1
    allowed, a 1 s timeout and retries 100 times sooner than in production."""
    with module_server(services, hooks_db, tmp_path_factory.mktemp("hooks"), redis_db=14, REPLICA_ID="hooks-1",
                       **FAST_ENV) as server:
        yield server


@pytest.fixture
def owner(hooks_server: ServerProcess) -> dict[str, Any]:
    session = signup(hooks_server, app_name="Hooks")
    status, key = call(hooks_server, "POST", "/admin/api/api-keys", session["access_token"],
                       {"kind": "publishable", "name": "sdk"})
    assert status == 201
    return {**session, "token": session["access_token"], "publishable_key": key["key"]}


@pytest.fixture
async def receiver() -> Any:
    rx = await Receiver().start()
    yield rx
    await rx.stop()


async def _wait(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what or predicate}"
        await asyncio.sleep(0.05)


def _create(server: ServerProcess, token: str, url: str, **fields: Any) -> dict[str, Any]:
    status, created = call(server, "POST", "/admin/webhooks", token, {"url": url, **fields})
    assert status == 201, created
    assert created["secret"].startswith("whsec_")
    return dict(created)


def _message(server: ServerProcess, owner: dict[str, Any], user: str, body: str) -> dict[str, Any]:
    status, created = http("POST", server.url + "/v1/conversations",
                           {"subject": "hooks", "message": {"client_id": uuid.uuid4().hex, "body": body}},
                           headers={"X-API-Key": owner["publishable_key"], "X-User-Id": user})
    assert status == 201, created
    return dict(created)


async def _count(db_url: str, sql: str, *args: Any) -> int:
    conn = await asyncpg.connect(db_url)
    try:
        return int(await conn.fetchval(sql, *args))
    finally:
        await conn.close()


async def test_endpoints_crud_and_bad_input_stores_nothing(hooks_server: ServerProcess, hooks_db: str,
                                                           owner: dict[str, Any]) -> None:
    srv, token = hooks_server, owner["token"]
    app_id = uuid.UUID(owner["app"]["id"])
    created = _create(srv, token, "http://127.0.0.1:9/hook", description="CRM", event_types=["message.created"])
    ep = created["endpoint"]
    assert ep["event_types"] == ["message.created"] and ep["enabled"] and ep["health"]["success_rate"] is None
    assert "secret" not in ep
    status, listed = call(srv, "GET", "/admin/webhooks", token)
    assert status == 200 and [e["id"] for e in listed["endpoints"]] == [ep["id"]]
    assert "whsec_" not in str(listed)  # the secret is shown once, at creation
    status, patched = call(srv, "PATCH", f"/admin/webhooks/{ep['id']}", token,
                           {"event_types": None, "description": "all of it", "enabled": False})
    assert status == 200, patched
    assert patched["event_types"] is None and not patched["enabled"] and patched["disabled_reason"] == "admin"
    status, patched = call(srv, "PATCH", f"/admin/webhooks/{ep['id']}", token, {"enabled": True})
    assert patched["enabled"] and patched["disabled_reason"] is None and patched["description"] == "all of it"
    status, types = call(srv, "GET", "/admin/webhooks/event-types", token)
    assert status == 200
    names = [t["type"] for t in types["event_types"]]
    assert {"conversation.created", "conversation.updated", "conversation.assigned", "conversation.status_changed",
            "message.created", "user.created", "user.updated", "broadcast.run_completed", "workflow.run_failed",
            "usage.limit_reached", "webhook.ping"} == set(names)
    message_schema = next(t for t in types["event_types"] if t["type"] == "message.created")["schema"]
    assert "message" in message_schema["properties"] and "Message" in message_schema["$defs"]

    stored = await _count(hooks_db, "SELECT count(*) FROM webhook_endpoints WHERE app_id = $1", app_id)
    bad_bodies = [
        ({"url": "not a url"}, "url_not_allowed"), ({"url": "ftp://example.com/x"}, "url_not_allowed"),
        ({"url": "http://"}, "url_not_allowed"), ({"url": "http://exa mple.com/"}, "url_not_allowed"),
        ({"url": "http://127.0.0.1:9/x", "event_types": ["message.exploded"]}, "unknown_event_type"),
        ({"url": "http://127.0.0.1:9/x", "event_types": []}, "validation_error"),
        ({"url": "http://127.0.0.1:9/x", "colour": "red"}, "validation_error"),
        ({"url": "x" * 3000}, "validation_error"), ({}, "validation_error"),
    ]
    for body, code in bad_bodies:
        status, out = call(srv, "POST", "/admin/webhooks", token, body)
        assert (status, out["error"]["code"]) == (422, code), (body, out)
    status, out = call(srv, "PATCH", f"/admin/webhooks/{ep['id']}", token, {"event_types": ["nope"]})
    assert (status, out["error"]["code"]) == (422, "unknown_event_type")
    for query in ("status=lost", "cursor=zzz", "limit=0"):
        status, out = call(srv, "GET", f"/admin/webhooks/{ep['id']}/deliveries?{query}", token)
        assert (status, out["error"]["code"]) == (422, "invalid_query"), query
    for role in ("viewer", "agent"):
        teammate = invite_and_join(srv, token, role)
        for method, path, body in (("POST", "/admin/webhooks", {"url": "http://127.0.0.1:9/x"}),
                                   ("GET", "/admin/webhooks", None),
                                   ("DELETE", f"/admin/webhooks/{ep['id']}", None),
                                   ("POST", f"/admin/webhooks/{ep['id']}/rotate-secret", None)):
            status, out = call(srv, method, path, teammate["access_token"], body)
            assert (status, out["error"]["code"]) == (403, "permission_denied"), (role, method, path)
    assert await _count(hooks_db, "SELECT count(*) FROM webhook_endpoints WHERE app_id = $1", app_id) == stored
    # Another workspace sees none of it.
    other = signup(srv, app_name="Other")["access_token"]
    for method, path in (("GET", f"/admin/webhooks/{ep['id']}"), ("DELETE", f"/admin/webhooks/{ep['id']}"),
                         ("POST", f"/admin/webhooks/{ep['id']}/test"),
                         ("GET", f"/admin/webhooks/{ep['id']}/deliveries")):
        status, out = call(srv, method, path, other)
        assert status == 404, (method, path, out)
    status, out = call(srv, "DELETE", f"/admin/webhooks/{ep['id']}", token)
    assert status == 200 and out == {"id": ep["id"], "deleted": True}
    assert call(srv, "GET", f"/admin/webhooks/{ep['id']}", token)[0] == 404
    kinds = await _count(hooks_db, "SELECT count(DISTINCT type) FROM domain_events WHERE app_id = $1 AND type IN "
                         "('webhook.endpoint_created', 'webhook.endpoint_updated', 'webhook.endpoint_deleted')", app_id)
    assert kinds == 3


async def test_deliveries_are_signed_verified_pinged_rotated_and_replayed(
        hooks_server: ServerProcess, owner: dict[str, Any], receiver: Receiver) -> None:
    srv, token = hooks_server, owner["token"]
    created = _create(srv, token, receiver.url("/crm"), event_types=EVENTS)
    secret, ep = created["secret"], created["endpoint"]
    receiver.secrets["/crm"] = [secret]
    conv = _message(srv, owner, "u-1", "hello hooks")
    await _wait(lambda: len(receiver.on("/crm")) >= 2, what="two deliveries")
    got = {r.verified["type"]: r for r in receiver.on("/crm") if r.verified}
    assert set(got) == set(EVENTS), [r.headers for r in receiver.on("/crm")]
    # The receiver answers before the sender records the outcome: wait for the log to say so.
    await _wait(lambda: len(call(srv, "GET", f"/admin/webhooks/{ep['id']}/deliveries?status=delivered",
                                 token)[1]["deliveries"]) == 2, what="both deliveries logged as delivered")
    message = got["message.created"]
    assert message.verified is not None
    assert message.verified["data"]["message"]["body"] == "hello hooks"
    assert message.verified["data"]["message"]["conversation_id"] == conv["conversation"]["id"]
    assert set(message.verified) == {"type", "timestamp", "data"}
    assert message.headers["webhook-id"].startswith("evt_")
    assert message.headers["webhook-signature"].startswith("v1,") and " " not in message.headers["webhook-signature"]

    # The ping: sent now, its attempt returned, logged.
    # (off the event loop: the receiver runs on it and must answer while the request waits)
    status, ping = await asyncio.to_thread(call, srv, "POST", f"/admin/webhooks/{ep['id']}/test", token)
    assert status == 200, ping
    assert ping["attempt"]["status_code"] == 200 and ping["delivery"]["status"] == "delivered"
    assert ping["delivery"]["event_type"] == "webhook.ping" and ping["delivery"]["event_id"] is None
    pinged = receiver.on("/crm")[-1]
    assert pinged.verified is not None and pinged.verified["type"] == "webhook.ping"
    status, page = call(srv, "GET", f"/admin/webhooks/{ep['id']}/deliveries?limit=2", token)
    assert status == 200 and len(page["deliveries"]) == 2 and page["next_cursor"]
    assert page["deliveries"][0]["event_type"] == "webhook.ping"
    status, rest = call(srv, "GET", f"/admin/webhooks/{ep['id']}/deliveries?cursor={page['next_cursor']}", token)
    assert len(rest["deliveries"]) == 1 and rest["next_cursor"] is None
    status, delivered = call(srv, "GET", f"/admin/webhooks/{ep['id']}/deliveries?status=delivered", token)
    assert len(delivered["deliveries"]) == 3
    one = next(d for d in delivered["deliveries"] if d["event_type"] == "message.created")
    status, detail = call(srv, "GET", f"/admin/webhooks/{ep['id']}/deliveries/{one['id']}", token)
    assert status == 200 and detail["payload"] == message.verified
    assert [(a["attempt"], a["status_code"], a["response"]) for a in detail["attempt_log"]] == [(1, 200, "ok")]
    assert detail["webhook_id"] == message.headers["webhook-id"]
    status, health = call(srv, "GET", f"/admin/webhooks/{ep['id']}", token)
    assert health["health"]["success_rate"] == 1.0 and health["health"]["recent_attempts"] == 3

    # Replay: the same webhook-id again, a second attempt in the log.
    before = len(receiver.on("/crm"))
    status, replayed = call(srv, "POST", f"/admin/webhooks/{ep['id']}/deliveries/{one['id']}/replay", token)
    assert status == 200, replayed
    await _wait(lambda: len(receiver.on("/crm")) > before, what="the replay")
    assert receiver.on("/crm")[-1].headers["webhook-id"] == message.headers["webhook-id"]
    assert receiver.on("/crm")[-1].verified is not None

    # Rotation: both signatures for 24 h; a receiver with either secret verifies.
    status, rotated = call(srv, "POST", f"/admin/webhooks/{ep['id']}/rotate-secret", token)
    assert status == 200 and rotated["secret"] != secret and rotated["endpoint"]["previous_secret_expires_at"]
    receiver.secrets["/crm"] = [rotated["secret"]]
    before = len(receiver.on("/crm"))
    _message(srv, owner, "u-2", "after rotation")
    await _wait(lambda: len(receiver.on("/crm")) >= before + 2, what="deliveries after rotation")
    latest = receiver.on("/crm")[-1]
    assert latest.verified is not None and len(latest.headers["webhook-signature"].split(" ")) == 2
    from loadtests.sdk_client import verify_webhook

    assert verify_webhook(secret, latest.headers, latest.body) == latest.verified  # the old secret too
    # Unsubscribed types and disabled endpoints get nothing.
    call(srv, "PATCH", f"/admin/webhooks/{ep['id']}", token, {"enabled": False})
    before = len(receiver.on("/crm"))
    _message(srv, owner, "u-3", "while disabled")
    await asyncio.sleep(1.0)
    assert len(receiver.on("/crm")) == before
    status, out = call(srv, "POST", f"/admin/webhooks/{ep['id']}/deliveries/{one['id']}/replay", token)
    assert (status, out["error"]["code"]) == (409, "endpoint_disabled")


async def test_receivers_that_fail_hang_or_go_away(hooks_server: ServerProcess, hooks_db: str,
                                                   owner: dict[str, Any], receiver: Receiver) -> None:
    """One event to six endpoints: a 500 then 200 (delivered on the retry, same webhook-id); a 410
    (disabled); a hang (timed out, retried) while a healthy one gets its delivery at once; a 429
    with Retry-After: 1 (retried no sooner); one failing for 5 days already (disabled)."""
    srv, token = hooks_server, owner["token"]
    receiver.behave = {
        "/flaky": lambda n: (500, {}, 0.0) if n == 1 else (200, {}, 0.0),
        "/gone": lambda n: (410, {}, 0.0),
        "/hang": lambda n: (200, {}, 3.0) if n == 1 else (200, {}, 0.0),
        "/busy": lambda n: (429, {"Retry-After": "1"}, 0.0) if n == 1 else (200, {}, 0.0),
        "/dying": lambda n: (500, {}, 0.0),
    }
    ids = {}
    for path in ("/flaky", "/gone", "/hang", "/healthy", "/busy", "/dying"):
        created = _create(srv, token, receiver.url(path), event_types=["message.created"])
        receiver.secrets[path] = [created["secret"]]
        ids[path] = created["endpoint"]["id"]
    conn = await asyncpg.connect(hooks_db)
    await conn.execute("UPDATE webhook_endpoints SET failing_since = now() - interval '6 days' WHERE id = $1",
                       uuid.UUID(ids["/dying"]))
    sent_at = time.monotonic()
    _message(srv, owner, "u-1", "to everyone")
    await _wait(lambda: len(receiver.on("/healthy")) == 1, what="the healthy endpoint")
    assert receiver.on("/healthy")[0].at - sent_at < 1.0  # not held up by the hanging one
    await _wait(lambda: len(receiver.on("/flaky")) == 2 and len(receiver.on("/hang")) == 2
                and len(receiver.on("/busy")) == 2, what="the retries")
    for path in ("/flaky", "/hang", "/busy"):
        first, second = receiver.on(path)
        assert first.verified and second.verified, path
        assert first.headers["webhook-id"] == second.headers["webhook-id"], path
    busy = receiver.on("/busy")
    assert busy[1].at - busy[0].at >= 0.95  # Retry-After: 1, not the 50 ms of the (scaled) schedule

    async def delivery(path: str) -> asyncpg.Record:
        return await conn.fetchrow(
            "SELECT d.status, d.attempts, array_agg(a.status_code ORDER BY a.id) AS codes, "
            "array_agg(a.error ORDER BY a.id) AS errors FROM webhook_deliveries d "
            "JOIN webhook_attempts a ON a.delivery_id = d.id WHERE d.endpoint_id = $1 GROUP BY d.id",
            uuid.UUID(ids[path]))

    async def settled() -> bool:
        return [(await delivery(p))["status"] for p in ("/flaky", "/hang", "/busy")] == ["delivered"] * 3

    deadline = time.monotonic() + 10
    while not await settled():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    assert (await delivery("/flaky"))["codes"] == [500, 200]
    hang = await delivery("/hang")
    assert hang["codes"] == [None, 200] and "timed out" in hang["errors"][0]
    for path, reason in (("/gone", "gone"), ("/dying", "failing")):
        _, ep = call(srv, "GET", f"/admin/webhooks/{ids[path]}", token)
        assert (ep["enabled"], ep["disabled_reason"]) == (False, reason), (path, ep)
    assert (await delivery("/gone"))["status"] == "failed"
    assert len(receiver.on("/gone")) == 1
    disabled = await conn.fetchval("SELECT count(*) FROM domain_events WHERE type = 'webhook.endpoint_disabled' "
                                   "AND app_id = $1", uuid.UUID(owner["app"]["id"]))
    assert disabled == 2
    _, ep = call(srv, "GET", f"/admin/webhooks/{ids['/flaky']}", token)
    assert ep["health"]["success_rate"] == 0.5 and ep["health"]["failing_since"] is None
    await conn.close()
    metrics = http("GET", srv.url + "/metrics")[1]
    assert 'replyhq_webhook_deliveries_total{outcome="delivered"}' in metrics
    assert "replyhq_webhook_attempt_duration_seconds_bucket" in metrics


async def test_private_addresses_are_refused_at_save_and_at_connect_time(
        server: ServerProcess, db: asyncpg.Pool, receiver: Receiver) -> None:
    """WEBHOOKS_ALLOW_PRIVATE off (the default): loopback, private, link-local and metadata URLs are
    a 422 and nothing is stored; an endpoint that points there anyway (a name that resolved elsewhere
    at save) is refused when the dispatcher connects, and the receiver hears nothing."""
    session = signup(server, app_name="Guarded")
    token, app_id = session["access_token"], uuid.UUID(session["app"]["id"])
    for url in (receiver.url("/x"), f"http://localhost:{receiver.port}/x", "http://169.254.169.254/latest/meta-data",
                "http://[::1]/x", "http://10.1.2.3/x", "http://192.168.0.10/x", "http://0.0.0.0/x",
                "http://[::ffff:127.0.0.1]/x", "http://100.100.100.200/x", "http://no-such-host.invalid/x"):
        status, out = call(server, "POST", "/admin/webhooks", token, {"url": url})
        assert (status, out["error"]["code"]) == (422, "url_not_allowed"), (url, out)
        assert out["error"]["details"]["reason"] in ("private_address", "unresolvable"), out
    assert await db.fetchval("SELECT count(*) FROM webhook_endpoints") == 0
    for host in ("127.0.0.1", "localhost"):
        endpoint_id = await db.fetchval(
            "INSERT INTO webhook_endpoints (app_id, url, secret) VALUES ($1, $2, 'whsec_AAAA') RETURNING id",
            app_id, f"http://{host}:{receiver.port}/x")
        status, ping = await asyncio.to_thread(call, server, "POST", f"/admin/webhooks/{endpoint_id}/test", token)
        assert status == 200, ping
        assert ping["attempt"]["status_code"] is None and "public" in ping["attempt"]["error"], ping
    assert receiver.received == []


def test_the_docs_list_every_type_and_their_snippets_verify_a_signed_body(tmp_path: Any) -> None:
    """docs/webhooks.md names every type, and its Python and Node snippets accept what the server
    signs (two signatures, after a rotation) and refuse a tampered body."""
    import json
    import re
    import shutil
    import subprocess

    from server.webhooks import signing
    from server.webhooks.event_types import WEBHOOK_TYPES
    from tests.support import ROOT

    page = (ROOT / "docs" / "webhooks.md").read_text()
    assert all(f"| `{t}` |" in page for t in WEBHOOK_TYPES)
    old, new = signing.new_secret(), signing.new_secret()
    body = b'{"type":"webhook.ping","timestamp":"2026-01-01T00:00:00Z","data":{}}'
    headers = signing.headers([new, old], "msg_1", int(time.time()), body)
    python = re.search(r"Or by hand.*?```python\n(.*?)```", page, re.S)
    assert python is not None
    scope: dict[str, Any] = {}
    exec(python.group(1), scope)  # the snippet as documented
    assert scope["verify"](old, headers, body) and scope["verify"](new, headers, body)
    assert not scope["verify"](new, headers, body + b" ")
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    js = re.search(r"### Verify in Node\n\n```js\n(.*?)```", page, re.S)
    assert js is not None
    script = tmp_path / "verify.mjs"
    script.write_text(js.group(1) + f"""
const headers = {json.dumps(headers)};
const body = Buffer.from({json.dumps(body.decode())});
console.log(JSON.stringify(verifyWebhook({json.dumps(old)}, headers, body)));
try {{ verifyWebhook({json.dumps(new)}, headers, Buffer.concat([body, Buffer.from(" ")])); console.log("accepted"); }}
catch {{ console.log("refused"); }}
""")
    out = subprocess.run([node, str(script)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [body.decode(), "refused"]


async def test_the_sender_keeps_connections_alive_and_guards_each_new_one() -> None:
    """The dispatcher's HTTP client on its own: attempts to one origin reuse a kept-alive connection;
    a connection the receiver closed while idle is replaced (the attempt still lands, once); a long
    answer keeps its first KB and ends the connection; Retry-After is read; and with the guard on,
    an address literal or a name resolving to loopback is refused before any connection."""
    from aiohttp import web

    from server.platform.ssrf import UrlRefused
    from server.webhooks.sender import RESPONSE_SNIPPET, Sender

    peers: list[Any] = []
    bodies: list[bytes] = []

    async def hook(request: web.Request) -> web.StreamResponse:
        peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        bodies.append(await request.read())
        if request.path == "/long":
            return web.Response(text="x" * 5000)
        if request.path == "/busy":
            return web.Response(status=429, headers={"Retry-After": "7"})
        if request.path == "/bye":
            return web.Response(text="bye", headers={"Connection": "close"})
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{tail:.*}", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    base = f"http://127.0.0.1:{port}"
    sender = Sender(allow_private=True)
    try:
        assert await sender.post(base + "/a?x=1", b"content-type: application/json\r\n", b"{}") == (200, "ok", None)
        assert await sender.post(base + "/b", b"", b"{}") == (200, "ok", None)
        assert peers[0] == peers[1]  # one connection, kept alive
        status, text, _ = await sender.post(base + "/long", b"", b"{}")
        assert status == 200 and text == "x" * RESPONSE_SNIPPET
        assert (await sender.post(base + "/busy", b"", b"{}"))[::2] == (429, "7")
        assert await sender.post(base + "/bye", b"", b"{}") == (200, "bye", None)
        # The receiver closes an idle kept-alive connection: the next attempt lands once, anew.
        await sender.post(base + "/c", b"", b"{}")
        for conns in sender._idle.values():
            for conn in conns:
                assert conn.transport is not None
                conn.transport.abort()
        await asyncio.sleep(0.05)
        n = len(bodies)
        assert await sender.post(base + "/d", b"", b'{"d":1}') == (200, "ok", None)
        assert bodies[n:] == [b'{"d":1}']
        # ... and when the close is only noticed as the attempt is written.
        for conns in sender._idle.values():
            for conn in conns:
                assert conn.transport is not None
                conn.transport.abort()
        assert await sender.post(base + "/e", b"", b'{"e":1}') == (200, "ok", None)
        assert bodies[n + 1:] == [b'{"e":1}']
    finally:
        await sender.close()
    guarded = Sender(allow_private=False)
    try:
        for url in (base + "/x", f"http://localhost:{port}/x"):
            with pytest.raises((UrlRefused, OSError), match="public"):
                await guarded.post(url, b"", b"{}")
    finally:
        await guarded.close()
        await runner.cleanup()
    assert len(bodies) == 8  # nothing reached the receiver through the guard
