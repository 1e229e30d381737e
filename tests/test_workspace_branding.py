"""Account, workspace and branding against one real server for the module (each test signs up its own
workspace): the admin's own account and password, workspace settings and identity verification modes
seen by the SDK client, the identity secret shown once, branding with logos checked by content, and
/v1/app/config with its ETag. Every refusal stores nothing."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
import socketio

from loadtests.sdk_client import ReplyHQClient
from loadtests.sdk_client.client import ReplyHQError
from server.dev.embedded import EmbeddedServices
from server.platform.db.pool import init_connection
from server.users.identity import user_hash
from tests.admin_helpers import PASSWORD, call, invite_and_join, login, signup
from tests.conftest import cloned_database, module_server
from tests.image_helpers import GIF, HTML_AS_PNG, SVG, TRUNCATED_PNG, jpeg, png, png_claiming, webp, webp_lossless
from tests.support import ServerProcess, http


@pytest.fixture(scope="module")
def brand_db(pg_admin_url: str, template_db: str) -> Iterator[str]:
    with cloned_database(pg_admin_url, template_db, f"brand_{os.getpid()}") as url:
        yield url


@pytest.fixture(scope="module")
def brand_server(services: EmbeddedServices, brand_db: str,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with module_server(services, brand_db, tmp_path_factory.mktemp("brand"), redis_db=13,
                       REPLICA_ID="brand-1") as server:
        yield server


@pytest.fixture
async def db(brand_db: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(brand_db, min_size=1, max_size=2, init=init_connection)
    assert pool is not None
    yield pool
    await pool.close()


@pytest.fixture
def owner(brand_server: ServerProcess) -> dict[str, Any]:
    session = signup(brand_server, app_name="Acme")
    status, key = call(brand_server, "POST", "/admin/api/api-keys", session["access_token"],
                       {"kind": "publishable", "name": "sdk"})
    assert status == 201, key
    return {**session, "token": session["access_token"], "pk": key["key"]}


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


async def events(db: asyncpg.Pool, app_id: str, prefix: str) -> list[asyncpg.Record]:
    return await db.fetch("SELECT type, data, admin_id FROM domain_events WHERE app_id = $1 AND type LIKE $2 "
                          "ORDER BY seq", app_id, prefix + "%")


async def settings_rows(db: asyncpg.Pool, app_id: str) -> tuple[Any, ...]:
    """What a refused write must leave as it was."""
    app = await db.fetchrow("SELECT * FROM apps WHERE id = $1", app_id)
    brand = await db.fetchrow("SELECT * FROM app_branding WHERE app_id = $1", app_id)
    logos = await db.fetch("SELECT sha256 FROM app_logos WHERE app_id = $1 ORDER BY 1", app_id)
    admins = await db.fetch("SELECT id, email, name, password_hash FROM admins WHERE app_id = $1 ORDER BY id", app_id)
    n = await db.fetchval("SELECT count(*) FROM domain_events WHERE app_id = $1", app_id)
    return dict(app), dict(brand) if brand else None, logos, [dict(a) for a in admins], n


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# ---- the admin's own account ------------------------------------------------------------------------

async def test_own_account_name_and_email_need_the_current_password(brand_server: ServerProcess, owner,
                                                                    db: asyncpg.Pool) -> None:
    s, app_id, token = brand_server, owner["app"]["id"], owner["token"]
    status, me = call(s, "GET", "/admin/api/account", token)
    assert status == 200 and me["email"] == owner["admin"]["email"] and me["role"] == "owner", me
    status, me = call(s, "PATCH", "/admin/api/account", token, {"name": "Olivia"})
    assert status == 200 and me["name"] == "Olivia"
    assert call(s, "GET", "/admin/auth/me", token)[1]["admin"]["name"] == "Olivia"

    new_email = "olivia-" + owner["admin"]["email"]
    before = await settings_rows(db, app_id)
    for body, code, want in (({"email": new_email}, 422, "current_password_required"),
                             ({"email": new_email, "current_password": "not my password"}, 403, "wrong_password"),
                             ({"email": "not-an-email", "current_password": PASSWORD}, 422, "validation_error"),
                             ({"email": new_email, "current_password": PASSWORD, "role": "x"}, 422,
                              "validation_error")):
        status, resp = call(s, "PATCH", "/admin/api/account", token, body)
        assert status == code and resp["error"]["code"] == want, (body, resp)
    other = signup(s, app_name="Other")
    status, resp = call(s, "PATCH", "/admin/api/account", token,
                        {"email": other["admin"]["email"].upper(), "current_password": PASSWORD})
    assert status == 409 and resp["error"]["code"] == "email_taken", resp
    assert await settings_rows(db, app_id) == before  # nothing stored by any refusal

    status, me = call(s, "PATCH", "/admin/api/account", token, {"email": new_email, "current_password": PASSWORD})
    assert status == 200 and me["email"] == new_email
    assert login(s, new_email)[0] == 200 and login(s, owner["admin"]["email"])[0] == 401
    recorded = await events(db, app_id, "account.")
    assert [(e["type"], e["data"]["changes"]) for e in recorded] == [("account.updated", ["name"]),
                                                                      ("account.updated", ["email"])]
    assert recorded[1]["data"]["admin"]["email"] == new_email and str(recorded[1]["admin_id"]) == me["id"]


async def test_a_new_password_ends_the_other_sessions_and_keeps_this_one(brand_server: ServerProcess, owner,
                                                                         db: asyncpg.Pool) -> None:
    s, email = brand_server, owner["admin"]["email"]
    status, second = login(s, email)
    assert status == 200
    before = await settings_rows(db, owner["app"]["id"])
    status, resp = call(s, "POST", "/admin/api/account/password", owner["token"],
                        {"current_password": "wrong password", "new_password": "a new password 1"})
    assert status == 403 and resp["error"]["code"] == "wrong_password", resp
    status, resp = call(s, "POST", "/admin/api/account/password", owner["token"],
                        {"current_password": PASSWORD, "new_password": "short"})
    assert status == 422 and resp["error"]["details"]["path"] == "$.new_password", resp
    assert await settings_rows(db, owner["app"]["id"]) == before

    status, resp = call(s, "POST", "/admin/api/account/password", owner["token"],
                        {"current_password": PASSWORD, "new_password": "a new password 1"})
    assert status == 200 and resp == {"ok": True, "other_sessions_ended": 1}, resp
    # this session goes on; the other one is signed out, access and refresh token alike
    assert call(s, "GET", "/admin/api/account", owner["token"])[0] == 200
    status, resp = call(s, "GET", "/admin/api/account", second["access_token"])
    assert status == 401 and resp["error"]["code"] == "session_revoked", resp
    assert http("POST", s.url + "/admin/auth/refresh", {"refresh_token": second["refresh_token"]})[0] == 401
    assert http("POST", s.url + "/admin/auth/refresh", {"refresh_token": owner["refresh_token"]})[0] == 200
    assert login(s, email)[0] == 401 and login(s, email, "a new password 1")[0] == 200
    recorded = await events(db, owner["app"]["id"], "account.password")
    assert len(recorded) == 1 and recorded[0]["data"]["other_sessions_ended"] == 1
    assert "a new password 1" not in str(recorded[0]["data"])


# ---- workspace & security ---------------------------------------------------------------------------

async def test_workspace_settings_timezone_and_a_viewer_who_cannot_write(brand_server: ServerProcess, owner,
                                                                         db: asyncpg.Pool) -> None:
    s, app_id, token = brand_server, owner["app"]["id"], owner["token"]
    status, ws = call(s, "GET", "/admin/api/workspace", token)
    assert status == 200 and ws["timezone"] == "UTC" and ws["identity_verification"] == "off", ws
    status, ws = call(s, "PATCH", "/admin/api/workspace", token,
                      {"name": "Acme EU", "timezone": "Europe/Paris", "identity_verification": "log_only"})
    assert status == 200 and (ws["name"], ws["timezone"], ws["identity_verification"]) == (
        "Acme EU", "Europe/Paris", "log_only"), ws
    viewer = invite_and_join(s, token, "viewer")
    before = await settings_rows(db, app_id)
    for body in ({"timezone": "Mars/Olympus"}, {"timezone": "Europe/../../etc/passwd"}, {"timezone": "utc "},
                 {"identity_verification": "strict"}, {"identity_verification_required": True},
                 {"identity_secret": "mine"}, {"name": "x" * 201}):
        status, resp = call(s, "PATCH", "/admin/api/workspace", token, body)
        assert status == 422 and resp["error"]["code"] in ("invalid_timezone", "validation_error"), (body, resp)
    for method, path, body in (("PATCH", "/admin/api/workspace", {"name": "Viewer's"}),
                               ("POST", "/admin/api/workspace/identity-secret/rotate", {}),
                               ("PATCH", "/admin/api/branding", {"color": "#000000"})):
        status, resp = call(s, method, path, viewer["access_token"], body)
        assert status == 403 and resp["error"]["code"] == "permission_denied", (path, resp)
    status, seen = call(s, "GET", "/admin/api/workspace", viewer["access_token"])
    assert status == 200 and seen["name"] == "Acme EU" and "identity_secret_hint" not in seen
    assert await settings_rows(db, app_id) == before
    recorded = await events(db, app_id, "workspace.updated")
    assert [e["data"]["changes"] for e in recorded] == [["name", "timezone", "identity_verification"]]
    assert recorded[0]["data"]["workspace"]["timezone"] == "Europe/Paris"


async def _until(check: Any, timeout: float = 6.0) -> None:
    """SDK identity caches an app's settings for 2 s per replica: wait for a change to apply."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if await check():
                return
        except (ReplyHQError, AssertionError):
            pass
        assert time.monotonic() < deadline, "the setting did not apply in time"
        await asyncio.sleep(0.2)


def _unverified(server: ServerProcess) -> float:
    text = http("GET", server.url + "/metrics")[1]
    return sum(float(m.group(1)) for m in re.finditer(r'^replyhq_identity_unverified_total\{[^}]*\} (\S+)$',
                                                       text, re.M))


async def test_identity_verification_modes_and_rotation_with_the_sdk_client(brand_server: ServerProcess,
                                                                            owner, db: asyncpg.Pool) -> None:
    s, token, pk = brand_server, owner["token"], owner["pk"]
    secret = await db.fetchval("SELECT identity_secret FROM apps WHERE id = $1", owner["app"]["id"])

    async def identify(user: str, hash_: str | None) -> int:
        client = ReplyHQClient(s.url, pk, user_id=user, user_hash=hash_)
        try:
            await client.identify(name=user)
            return 200
        except ReplyHQError as err:
            return int(err.body["status"])
        finally:
            await client.close()

    # off: a wrong hash does not matter
    assert await identify("u-off", "00" * 32) == 200
    # log_only: accepted, logged and counted
    assert call(s, "PATCH", "/admin/api/workspace", token, {"identity_verification": "log_only"})[0] == 200
    counted = _unverified(s)

    async def log_only_counts() -> bool:
        return await identify("u-log", "00" * 32) == 200 and _unverified(s) > counted
    await _until(log_only_counts)
    assert await identify("u-log", None) == 200 and await identify("u-log", user_hash(secret, "u-log")) == 200
    assert "identity verification (log_only)" in s.log()
    # enforce: refused over REST and over the socket, unless the hash matches
    assert call(s, "PATCH", "/admin/api/workspace", token, {"identity_verification": "enforce"})[0] == 200

    async def enforced() -> bool:
        return await identify("u-enf", "00" * 32) == 401
    await _until(enforced)
    assert await identify("u-enf", None) == 401 and await identify("u-enf", user_hash(secret, "u-enf")) == 200
    sock = ReplyHQClient(s.url, pk, user_id="u-enf", user_hash="00" * 32, sync_on_connect=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await sock.connect(timeout=5)
    await sock.close()
    good = ReplyHQClient(s.url, pk, user_id="u-enf", user_hash=user_hash(secret, "u-enf"), sync_on_connect=False)
    await good.connect(timeout=5)
    await good.close()

    # rotation: the new secret is shown once; the old one still verifies during the grace period
    status, rotated = call(s, "POST", "/admin/api/workspace/identity-secret/rotate", token, {})
    assert status == 200 and len(rotated["identity_secret"]) > 20 and rotated["identity_secret"] != secret
    assert rotated["workspace"]["identity_secret_hint"] == "…" + rotated["identity_secret"][-4:]
    assert rotated["workspace"]["previous_secret_valid_until"] is not None
    status, ws = call(s, "GET", "/admin/api/workspace", token)
    assert rotated["identity_secret"] not in str(ws) and secret not in str(ws)
    new = rotated["identity_secret"]

    async def new_secret_works() -> bool:
        return await identify("u-rot", user_hash(new, "u-rot")) == 200
    await _until(new_secret_works)
    assert await identify("u-rot", user_hash(secret, "u-rot")) == 200  # grace
    # rotating with no grace ends the previous secret at once
    status, again = call(s, "POST", "/admin/api/workspace/identity-secret/rotate", token, {"previous_valid_hours": 0})
    assert status == 200 and again["workspace"]["previous_secret_valid_until"] is None

    async def old_refused() -> bool:
        return await identify("u-rot", user_hash(new, "u-rot")) == 401
    await _until(old_refused)
    assert await identify("u-rot", user_hash(again["identity_secret"], "u-rot")) == 200
    recorded = await events(db, owner["app"]["id"], "workspace.identity_secret_rotated")
    assert len(recorded) == 2 and all(new not in str(e["data"]) for e in recorded)


# ---- branding and /v1/app/config ---------------------------------------------------------------------

async def test_branding_with_logos_checked_by_content(brand_server: ServerProcess, owner, db: asyncpg.Pool) -> None:
    s, app_id, token = brand_server, owner["app"]["id"], owner["token"]
    status, b = call(s, "GET", "/admin/api/branding", token)
    assert status == 200 and b == {"color": "#1F6FEB", "launcher_position": "right", "greeting": "",
                                   "team_intro": "", "logo": None, "updated_at": None}, b
    status, b = call(s, "PATCH", "/admin/api/branding", token,
                     {"color": "#e11d48", "launcher_position": "left", "greeting": "Hi 👋", "team_intro": "We reply",
                      "logo": "data:image/png;base64," + b64(png(32, 16))})
    assert status == 200 and b["color"] == "#E11D48" and b["launcher_position"] == "left", b
    assert b["logo"]["content_type"] == "image/png" and (b["logo"]["width"], b["logo"]["height"]) == (32, 16)
    first_logo = b["logo"]["url"]
    status, headers, data = fetch(s.url + first_logo)
    assert status == 200 and data == png(32, 16) and headers["content-type"] == "image/png"
    assert "immutable" in headers["cache-control"] and headers["x-content-type-options"] == "nosniff"

    before = await settings_rows(db, app_id)
    refused = {
        "bad colour": ({"color": "red"}, "validation_error"), "short colour": ({"color": "#FFF"}, "validation_error"),
        "colour not hex": ({"color": "#12345G"}, "validation_error"),
        "side": ({"launcher_position": "top"}, "validation_error"),
        "long greeting": ({"greeting": "g" * 281}, "validation_error"),
        "not base64": ({"logo": "%%%"}, "invalid_logo"),
        "gif": ({"logo": b64(GIF)}, "unsupported_image"), "svg": ({"logo": b64(SVG)}, "unsupported_image"),
        "html behind png magic": ({"logo": b64(HTML_AS_PNG)}, "invalid_logo"),
        "truncated png": ({"logo": b64(TRUNCATED_PNG)}, "invalid_logo"),
        "png as data url of jpeg": ({"logo": "data:image/jpeg;base64," + b64(b"just text")}, "unsupported_image"),
        "huge dimensions": ({"logo": b64(png_claiming(60000, 60000))}, "logo_dimensions"),
        "over 256 KB": ({"logo": b64(png(padding=262144))}, "logo_too_large"),
        "unknown field": ({"colour": "#000000"}, "validation_error"),
    }
    for what, (body, code) in refused.items():
        status, resp = call(s, "PATCH", "/admin/api/branding", token, {"greeting": "changed", **body})
        assert status == 422 and resp["error"]["code"] == code, (what, resp)
    status, _ = call(s, "PATCH", "/admin/api/branding", token, {"logo": "A" * 1_100_000})
    assert status == 413
    assert await settings_rows(db, app_id) == before

    for image, kind, size in ((jpeg(40, 30), "image/jpeg", (40, 30)), (webp(64, 48), "image/webp", (64, 48)),
                              (webp_lossless(20, 10), "image/webp", (20, 10))):
        status, b = call(s, "PATCH", "/admin/api/branding", token, {"logo": b64(image)})
        assert status == 200 and b["logo"]["content_type"] == kind, b
        assert (b["logo"]["width"], b["logo"]["height"]) == size
    assert fetch(s.url + first_logo)[0] == 404  # a replaced logo is gone
    status, b = call(s, "PATCH", "/admin/api/branding", token, {"logo": None})
    assert status == 200 and b["logo"] is None
    assert await db.fetchval("SELECT count(*) FROM app_logos WHERE app_id = $1", app_id) == 0
    assert call(s, "PATCH", "/admin/api/branding", token, {"greeting": "Hi 👋"})[1]["greeting"] == "Hi 👋"
    recorded = await events(db, app_id, "branding.")
    assert [e["data"]["changes"] for e in recorded] == [
        ["color", "launcher_position", "greeting", "team_intro", "logo"], ["logo"], ["logo"], ["logo"], ["logo"]]
    assert fetch(s.url + "/v1/app/logo/" + "0" * 64)[0] == 404 and fetch(s.url + "/v1/app/logo/nope")[0] == 404


def test_app_config_follows_branding_with_an_etag(brand_server: ServerProcess, owner) -> None:
    s, token, pk = brand_server, owner["token"], owner["pk"]
    url = s.url + "/v1/app/config"
    status, headers, body = fetch(url, {"X-API-Key": pk})
    assert status == 200, body
    config = json.loads(body)
    assert config["app"] == {"id": owner["app"]["id"], "name": "Acme"}
    assert config["branding"]["color"] == "#1F6FEB" and config["branding"]["logo_url"] is None
    etag = headers["etag"]
    assert headers["cache-control"] == "no-cache" and "sdk-key" in headers["ratelimit-policy"]
    for presented in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        status, again, body = fetch(url, {"X-API-Key": pk, "If-None-Match": presented})
        assert status == 304 and body == b"" and again["etag"] == etag, presented
    assert fetch(url, {"X-API-Key": pk, "If-None-Match": '"stale"'})[0] == 200

    call(s, "PATCH", "/admin/api/branding", token, {"color": "#112233", "greeting": "Welcome",
                                                     "logo": b64(png(4, 4))})
    status, headers, body = fetch(url, {"X-API-Key": pk, "If-None-Match": etag})
    config = json.loads(body)
    assert status == 200 and headers["etag"] != etag
    assert config["branding"]["color"] == "#112233" and config["branding"]["greeting"] == "Welcome"
    assert config["branding"]["logo_url"].startswith("/v1/app/logo/")
    assert fetch(s.url + config["branding"]["logo_url"])[2] == png(4, 4)
    call(s, "PATCH", "/admin/api/workspace", token, {"name": "Acme Renamed"})
    status, _, body = fetch(url, {"X-API-Key": pk, "If-None-Match": headers["etag"]})
    assert status == 200 and json.loads(body)["app"]["name"] == "Acme Renamed"
    # the key alone is enough (no user headers), a secret key works too; no key or a wrong one is a 401
    secret = call(s, "POST", "/admin/api/api-keys", token, {"kind": "secret", "name": "srv"})[1]["key"]
    assert fetch(url, {"X-API-Key": secret})[0] == 200
    for headers in ({}, {"X-API-Key": "rhq_pk_nope"}):
        status, _, body = fetch(url, headers)
        assert status == 401 and json.loads(body)["error"]["code"] in ("missing_api_key", "invalid_api_key")
    # another workspace's key sees its own config only
    other = signup(s, app_name="Globex")
    other_pk = call(s, "POST", "/admin/api/api-keys", other["access_token"],
                    {"kind": "publishable", "name": "sdk"})[1]["key"]
    theirs = json.loads(fetch(url, {"X-API-Key": other_pk})[2])
    assert theirs["app"]["name"] == "Globex" and theirs["branding"]["color"] == "#1F6FEB"
