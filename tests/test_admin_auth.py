"""Admin auth: signup, login, me, rotating refresh tokens, reuse detection, logout, throttling."""

from __future__ import annotations

import time
from typing import Any

import jwt

from server.auth.login_limits import LoginLimits
from tests.admin_helpers import PASSWORD, bearer, call, login, signup
from tests.conftest import TEST_JWT_SECRET
from tests.sockets import refused_handshake
from tests.support import ServerProcess, http


def test_signup_creates_a_workspace_and_signs_the_owner_in(server: ServerProcess) -> None:
    session = signup(server, "founder@acme.test", app_name="Acme Inc")
    assert session["token_type"] == "Bearer"
    assert session["expires_in"] == 900
    assert session["access_token"] and session["refresh_token"].startswith("rhq_rt_")
    assert session["admin"]["email"] == "founder@acme.test" and session["admin"]["role"] == "owner"
    assert session["app"]["name"] == "Acme Inc"
    status, me = call(server, "GET", "/admin/auth/me", session["access_token"])
    assert status == 200
    assert me["admin"]["id"] == session["admin"]["id"] and me["app"]["id"] == session["app"]["id"]
    assert "team.write" in me["admin"]["permissions"]


def test_signup_with_a_taken_email_is_409(server: ServerProcess) -> None:
    signup(server, "taken@acme.test")
    status, body = http("POST", server.url + "/admin/auth/signup",
                        {"email": "TAKEN@acme.test", "password": PASSWORD, "app_name": "Other"})
    assert status == 409 and body["error"]["code"] == "email_taken"


def test_login_returns_the_snake_case_session_contract(server: ServerProcess) -> None:
    signup(server, "olive@acme.test", app_name="Acme")
    status, body = login(server, "Olive@Acme.test")
    assert status == 200, body
    assert set(body) == {"access_token", "refresh_token", "expires_in", "token_type", "admin", "app"}
    assert set(body["admin"]) == {"id", "email", "name", "role"} and set(body["app"]) == {"id", "name"}
    assert body["admin"]["name"] == "Olive Owner" and body["app"]["name"] == "Acme"


def test_wrong_password_and_unknown_email_are_the_same_401(server: ServerProcess) -> None:
    signup(server, "olive@acme.test")
    for email, password in (("olive@acme.test", "wrong password"), ("nobody@acme.test", PASSWORD)):
        status, body = login(server, email, password)
        assert status == 401
        assert body["error"]["code"] == "invalid_credentials"
        assert body["error"]["message"] == "wrong email or password"


def test_refresh_rotates_and_reusing_a_rotated_token_revokes_the_session(server: ServerProcess) -> None:
    first = signup(server)
    status, second = http("POST", server.url + "/admin/auth/refresh", {"refresh_token": first["refresh_token"]})
    assert status == 200, second
    assert second["refresh_token"] != first["refresh_token"] and second["access_token"]
    assert call(server, "GET", "/admin/auth/me", second["access_token"])[0] == 200
    status, third = http("POST", server.url + "/admin/auth/refresh", {"refresh_token": second["refresh_token"]})
    assert status == 200
    # The first token was already rotated: someone replayed it. The whole family dies,
    status, body = http("POST", server.url + "/admin/auth/refresh", {"refresh_token": first["refresh_token"]})
    assert status == 401 and body["error"]["code"] == "refresh_token_reused"
    # including the newest token the legitimate client holds.
    status, body = http("POST", server.url + "/admin/auth/refresh", {"refresh_token": third["refresh_token"]})
    assert status == 401 and body["error"]["code"] == "invalid_refresh_token"


def test_other_sessions_survive_a_revoked_family(server: ServerProcess) -> None:
    a = signup(server, "olive@acme.test")
    _, b = login(server, "olive@acme.test")
    http("POST", server.url + "/admin/auth/refresh", {"refresh_token": a["refresh_token"]})
    http("POST", server.url + "/admin/auth/refresh", {"refresh_token": a["refresh_token"]})  # reuse
    assert http("POST", server.url + "/admin/auth/refresh", {"refresh_token": b["refresh_token"]})[0] == 200


def test_logout_revokes_the_refresh_token(server: ServerProcess) -> None:
    session = signup(server)
    status, body = http("POST", server.url + "/admin/auth/logout", {"refresh_token": session["refresh_token"]})
    assert status == 200 and body == {"ok": True}
    status, body = http("POST", server.url + "/admin/auth/refresh", {"refresh_token": session["refresh_token"]})
    assert status == 401 and body["error"]["code"] == "invalid_refresh_token"
    # logout is idempotent and says nothing about unknown tokens
    assert http("POST", server.url + "/admin/auth/logout", {"refresh_token": "rhq_rt_unknown"})[0] == 200


def test_unknown_refresh_token_is_401(server: ServerProcess) -> None:
    status, body = http("POST", server.url + "/admin/auth/refresh", {"refresh_token": "rhq_rt_nope"})
    assert status == 401 and body["error"]["code"] == "invalid_refresh_token"


def test_repeated_failed_logins_are_throttled_per_account_with_retry_after(server: ServerProcess) -> None:
    import urllib.error
    import urllib.request

    signup(server, "olive@acme.test")
    limit = LoginLimits().per_account_address
    for _ in range(limit):
        assert login(server, "olive@acme.test", "wrong password")[0] == 401
    # now even the right password is refused until the window passes
    status, body = login(server, "olive@acme.test", PASSWORD)
    assert status == 429
    assert body["error"]["code"] == "too_many_attempts" and body["error"]["details"]["retry_after"] > 0
    req = urllib.request.Request(server.url + "/admin/auth/login", method="POST",
                                 data=b'{"email":"olive@acme.test","password":"x"}',
                                 headers={"content-type": "application/json"})
    try:
        urllib.request.urlopen(req)
        raise AssertionError("expected 429")
    except urllib.error.HTTPError as err:
        assert err.code == 429 and 0 < int(err.headers["retry-after"]) <= LoginLimits().window
    # another account from the same address is not locked by this one's failures
    other = signup(server, "gus@globex.test")
    assert login(server, "gus@globex.test")[0] == 200, other


def test_failed_logins_from_one_address_are_throttled_across_accounts(server: ServerProcess) -> None:
    limits = LoginLimits()
    for i in range(limits.per_address):
        assert login(server, f"spray{i}@acme.test", "guess")[0] == 401
    status, body = login(server, "someone-else@acme.test", "guess")
    assert status == 429 and body["error"]["code"] == "too_many_attempts"


def _login_from(server: ServerProcess, address: str, email: str, password: str = PASSWORD) -> tuple[int, Any]:
    """A login through a proxy that names the client in X-Forwarded-For."""
    return http("POST", server.url + "/admin/auth/login", {"email": email, "password": password},
                headers={"x-forwarded-for": address})


def test_an_attacker_failing_from_one_address_does_not_lock_the_owner_out(start_server) -> None:
    server = start_server(SANIC_PROXIES_COUNT="1")  # behind one proxy: the client is its X-Forwarded-For
    signup(server, "olive@acme.test")
    attacker, owner = "203.0.113.7", "198.51.100.20"
    for _ in range(LoginLimits().per_account_address * 3):
        assert _login_from(server, attacker, "olive@acme.test", "guess")[0] in (401, 429)
    status, body = _login_from(server, attacker, "olive@acme.test")  # even the right password
    assert status == 429 and body["error"]["code"] == "too_many_attempts"
    status, body = _login_from(server, owner, "olive@acme.test")
    assert status == 200, body
    # the owner signing in elsewhere does not lift the attacker's throttle
    assert _login_from(server, attacker, "olive@acme.test", "guess")[0] == 429
    # an IPv6 attacker gains nothing by moving inside its /64
    for host in range(1, LoginLimits().per_account_address + 1):
        assert _login_from(server, f"2001:db8:1:2::{host}", "olive@acme.test", "guess")[0] == 401
    assert _login_from(server, "2001:db8:1:2::99", "olive@acme.test")[0] == 429


def test_guesses_spread_over_many_addresses_are_throttled_per_account(start_server) -> None:
    server = start_server(SANIC_PROXIES_COUNT="1")
    signup(server, "olive@acme.test")
    limits = LoginLimits()
    for n in range(limits.per_account):
        address = f"10.0.{n // limits.per_account_address}.1"  # each address stays under its own limits
        assert _login_from(server, address, "olive@acme.test", "guess")[0] == 401, n
    status, body = _login_from(server, "10.9.9.9", "olive@acme.test", "guess")
    assert status == 429 and body["error"]["code"] == "too_many_attempts"
    assert 0 < body["error"]["details"]["retry_after"] <= limits.account_window
    assert _login_from(server, "10.9.9.9", "gus@globex.test", "guess")[0] == 401  # other accounts are not


def test_forwarded_headers_are_ignored_unless_a_proxy_is_configured(server: ServerProcess) -> None:
    signup(server, "olive@acme.test")
    for n in range(LoginLimits().per_account_address):  # a client rotating a header it made up
        assert _login_from(server, f"192.0.2.{n}", "olive@acme.test", "guess")[0] == 401
    assert _login_from(server, "192.0.2.200", "olive@acme.test")[0] == 429


def test_a_successful_login_resets_the_account_counter(server: ServerProcess) -> None:
    signup(server, "olive@acme.test")
    for _ in range(LoginLimits().per_account_address - 1):
        login(server, "olive@acme.test", "wrong password")
    assert login(server, "olive@acme.test")[0] == 200
    for _ in range(LoginLimits().per_account_address - 1):
        assert login(server, "olive@acme.test", "wrong password")[0] == 401
    assert login(server, "olive@acme.test")[0] == 200


def test_bearer_header_must_be_well_formed(server: ServerProcess) -> None:
    session = signup(server)
    for headers in ({}, {"authorization": session["access_token"]}, {"authorization": "Basic abc"},
                    {"authorization": "Bearer "}):
        status, body = http("GET", server.url + "/admin/auth/me", headers=headers)
        assert status == 401 and body["error"]["code"] == "missing_token", headers
    assert http("GET", server.url + "/admin/auth/me", headers=bearer(session["access_token"]))[0] == 200


def _token_without_session(admin: dict[str, Any]) -> str:
    """Signed with the server's key and otherwise valid, but naming no sign-in (no `sess` claim)."""
    now = int(time.time())
    return jwt.encode({"sub": admin["admin"]["id"], "app": admin["app"]["id"], "role": "owner", "iat": now,
                       "exp": now + 600, "aud": "replyhq-admin", "jti": "x", "typ": "access"},
                      TEST_JWT_SECRET, algorithm="HS256")


async def test_an_access_token_without_a_session_is_refused_on_rest_and_socket(server: ServerProcess) -> None:
    owner = signup(server, "olive@acme.test")
    token = _token_without_session(owner)
    status, body = call(server, "GET", "/admin/auth/me", token)
    assert status == 401 and body["error"]["code"] == "invalid_token"
    error = await refused_handshake(server.url, "/admin", auth={"admin_token": token})
    assert error["data"]["error"]["code"] == "invalid_token", error
    # the tokens the server issues (each naming its sign-in) work on both
    assert call(server, "GET", "/admin/auth/me", owner["access_token"])[0] == 200
