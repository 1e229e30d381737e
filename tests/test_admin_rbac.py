"""RBAC matrix over the admin routes: who may call what, and that refusals change nothing."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest

from server.auth.roles import ALL_PERMISSIONS, load_roles
from server.auth.tokens import issue_access_token
from tests.admin_helpers import bearer, call, invite_and_join, signup
from tests.conftest import TEST_JWT_SECRET
from tests.support import ServerProcess, http

# (method, path, permission, body) for every admin route that needs a signed-in admin.
ROUTES: list[tuple[str, str, str | None, Any]] = [
    ("GET", "/admin/auth/me", None, None),
    ("GET", "/admin/api/team", "team.read", None),
    ("POST", "/admin/api/team/invite", "team.write", {"email": "new@acme.test", "role": "viewer"}),
    ("PATCH", "/admin/api/team/{member}", "team.write", {"role": "viewer"}),
    ("DELETE", "/admin/api/team/{member}", "team.write", None),
    ("GET", "/admin/api/api-keys", "api_keys.read", None),
    ("POST", "/admin/api/api-keys", "api_keys.write", {"kind": "secret", "name": "x"}),
    ("DELETE", "/admin/api/api-keys/{key}", "api_keys.write", None),
    ("GET", "/admin/api/account", "settings.read", None),
    ("PATCH", "/admin/api/account", "settings.write", {"name": "Renamed"}),
]


async def _snapshot(db: asyncpg.Pool) -> tuple[Any, ...]:
    """Everything a refused call could have changed."""
    return (
        await db.fetch("SELECT id, role, disabled_at, password_hash FROM admins ORDER BY id"),
        await db.fetch("SELECT id, revoked_at FROM api_keys ORDER BY id"),
        await db.fetch("SELECT id, name, identity_verification_required FROM apps ORDER BY id"),
        await db.fetchval("SELECT count(*) FROM admin_invitations"),
    )


def _fill(path: str, ids: dict[str, str]) -> str:
    return path.format(**ids)


@pytest.fixture
def acme(server: ServerProcess) -> dict[str, Any]:
    owner = signup(server, app_name="Acme")
    viewer = invite_and_join(server, owner["access_token"], "viewer")
    agent = invite_and_join(server, owner["access_token"], "agent")
    keys = call(server, "GET", "/admin/api/api-keys", owner["access_token"])[1]["api_keys"]
    return {"owner": owner, "viewer": viewer, "agent": agent,
            "ids": {"member": agent["admin"]["id"], "key": keys[0]["id"]}}


async def test_permission_names_in_code_are_exactly_those_of_the_roles_table(db: asyncpg.Pool) -> None:
    roles = await load_roles(db)
    assert set().union(*(r.permissions for r in roles.values())) == ALL_PERMISSIONS
    assert [r.name for r in roles.values()] == ["owner", "admin", "agent", "viewer"]


async def test_requests_without_a_valid_token_are_401_and_change_nothing(server: ServerProcess, acme,
                                                                        db: asyncpg.Pool) -> None:
    owner = acme["owner"]
    expired, _ = issue_access_token(TEST_JWT_SECRET, admin_id=uuid.UUID(owner["admin"]["id"]),
                                    app_id=uuid.UUID(owner["app"]["id"]), role="owner", ttl=-10)
    forged, _ = issue_access_token("another-secret-" + "y" * 40, admin_id=uuid.UUID(owner["admin"]["id"]),
                                   app_id=uuid.UUID(owner["app"]["id"]), role="owner", ttl=600)
    ghost, _ = issue_access_token(TEST_JWT_SECRET, admin_id=uuid.uuid4(), app_id=uuid.UUID(owner["app"]["id"]),
                                  role="owner", ttl=600)
    # a real admin's id claimed for another app: the app must match the admin row
    wrong_app, _ = issue_access_token(TEST_JWT_SECRET, admin_id=uuid.UUID(owner["admin"]["id"]),
                                      app_id=uuid.uuid4(), role="owner", ttl=600)
    cases = [({}, "missing_token"), (bearer("not-a-jwt"), "invalid_token"), (bearer(expired), "token_expired"),
             (bearer(forged), "invalid_token"), (bearer(ghost), "admin_disabled"),
             (bearer(wrong_app), "admin_disabled"),
             (bearer(owner["refresh_token"]), "invalid_token")]
    before = await _snapshot(db)
    for method, path, _, body in ROUTES:
        for headers, code in cases:
            status, resp = http(method, server.url + _fill(path, acme["ids"]), body, headers=headers)
            assert status == 401, (method, path, code, resp)
            assert resp["error"]["code"] == code, (method, path, resp)
    assert await _snapshot(db) == before


async def test_roles_without_the_permission_get_403_and_change_nothing(server: ServerProcess, acme,
                                                                      db: asyncpg.Pool) -> None:
    before = await _snapshot(db)
    refused = 0
    for who in ("viewer", "agent"):
        session = acme[who]
        me = call(server, "GET", "/admin/auth/me", session["access_token"])[1]
        granted = set(me["admin"]["permissions"])
        for method, path, permission, body in ROUTES:
            if permission is None or permission in granted:
                continue
            status, resp = call(server, method, _fill(path, acme["ids"]), session["access_token"], body)
            assert status == 403, (who, method, path, resp)
            assert resp["error"] == {"code": "permission_denied", "details": {"permission": permission},
                                     "message": resp["error"]["message"]}
            refused += 1
    assert refused >= 10
    assert await _snapshot(db) == before
    # and what they may do, they can
    for who in ("viewer", "agent"):
        for path in ("/admin/api/team", "/admin/api/account"):
            assert call(server, "GET", path, acme[who]["access_token"])[0] == 200


async def test_another_apps_resources_are_404_and_never_shown(server: ServerProcess, acme,
                                                             db: asyncpg.Pool) -> None:
    globex = signup(server, app_name="Globex")
    token = globex["access_token"]
    before = await _snapshot(db)
    for method, path, body in (("PATCH", "/admin/api/team/{member}", {"role": "viewer"}),
                               ("DELETE", "/admin/api/team/{member}", None),
                               ("DELETE", "/admin/api/api-keys/{key}", None)):
        status, resp = call(server, method, _fill(path, acme["ids"]), token, body)
        assert status == 404, (method, path, resp)
        assert acme["ids"]["member"] not in str(resp) and acme["ids"]["key"] not in str(resp)
    # the owner of Acme by id is just as invisible
    status, _ = call(server, "PATCH", f"/admin/api/team/{acme['owner']['admin']['id']}", token, {"role": "viewer"})
    assert status == 404
    assert await _snapshot(db) == before
    team = call(server, "GET", "/admin/api/team", token)[1]
    assert [m["email"] for m in team["members"]] == [globex["admin"]["email"]]
    keys = call(server, "GET", "/admin/api/api-keys", token)[1]["api_keys"]
    assert acme["ids"]["key"] not in {k["id"] for k in keys}
    account = call(server, "GET", "/admin/api/account", token)[1]
    assert account["id"] == globex["app"]["id"] and account["name"] == "Globex"
    # ids that are not even UUIDs are plain 404s too
    assert call(server, "DELETE", "/admin/api/team/not-a-uuid", token)[0] == 404


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


async def test_malformed_admin_bodies_are_4xx_and_change_nothing(server: ServerProcess, acme,
                                                                db: asyncpg.Pool) -> None:
    token = acme["owner"]["access_token"]
    member = acme["ids"]["member"]
    before = await _snapshot(db)
    for method, path, raw in (
            ("POST", "/admin/api/team/invite", b'{"email": "x@acme.test"}'),
            ("POST", "/admin/api/team/invite", b'{"email": "x@acme.test", "role": "agent", "is_owner": 1}'),
            ("POST", "/admin/api/team/invite", b'{"email": "' + b"x" * 300 + b'@a.co", "role": "agent"}'),
            ("PATCH", f"/admin/api/team/{member}", b'{"role": 5}'),
            ("PATCH", f"/admin/api/team/{member}", b"nope"),
            ("POST", "/admin/api/api-keys", b'{"kind": "secret", "name": "' + b"n" * 201 + b'"}'),
            ("PATCH", "/admin/api/account", b'{"identity_verification_required": "yes"}'),
            ("PATCH", "/admin/api/account", b'{"identity_secret": "mine"}'),
    ):
        status, body = http(method, server.url + path, raw=raw, headers=bearer(token))
        assert status in (400, 422), (path, raw, body)
        assert body["error"]["code"] in ("malformed_json", "validation_error")
    assert await _snapshot(db) == before


def test_every_admin_api_route_declares_a_permission_and_is_documented(server: ServerProcess) -> None:
    from server.app import create_app
    from server.settings import load_settings

    settings = load_settings({"DATABASE_URL": "postgresql://unused/x", "REDIS_URL": "redis://unused",
                              "JWT_SECRET": TEST_JWT_SECRET, "REPLYHQ_ENV": "test"})
    app = create_app(settings, name="rbac_inventory")
    checked = 0
    for route in app.router.routes:
        path = "/" + route.path
        if path.startswith("/admin/api/") or path == "/admin/auth/me":
            assert hasattr(route.handler, "__permission__"), path
            checked += 1
    assert checked >= len(ROUTES) - 3  # routes sharing a path with another method count once
    doc = http("GET", server.url + "/openapi.json")[1]
    for method, path, _, _ in ROUTES:
        doc_path = path.replace("{member}", "{admin_id}").replace("{key}", "{key_id}")
        assert method.lower() in doc["paths"][doc_path], path
        assert doc["paths"][doc_path][method.lower()]["security"] == [{"adminBearer": []}]
    for path in ("/admin/auth/signup", "/admin/auth/login", "/admin/auth/refresh", "/admin/auth/logout",
                 "/admin/auth/accept-invite"):
        assert "post" in doc["paths"][path]
