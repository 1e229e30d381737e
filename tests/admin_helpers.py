"""Helpers for the admin API tests: sign up, log in, call with a bearer token."""

from __future__ import annotations

import itertools
from typing import Any

from tests.support import ServerProcess, http

PASSWORD = "correct horse battery"
_n = itertools.count(1)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def signup(server: ServerProcess, email: str | None = None, app_name: str = "Acme") -> dict[str, Any]:
    email = email or f"owner{next(_n)}@acme.test"
    status, body = http("POST", server.url + "/admin/auth/signup",
                        {"email": email, "password": PASSWORD, "name": "Olive Owner", "app_name": app_name})
    assert status == 201, body
    return body


def login(server: ServerProcess, email: str, password: str = PASSWORD) -> tuple[int, Any]:
    return http("POST", server.url + "/admin/auth/login", {"email": email, "password": password})


def call(server: ServerProcess, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
    return http(method, server.url + path, body, headers=bearer(token))


def invite_and_join(server: ServerProcess, owner_token: str, role: str, email: str | None = None) -> dict[str, Any]:
    """A teammate with `role` who accepted the invitation; returns their signed-in session."""
    email = email or f"{role}{next(_n)}@acme.test"
    status, inv = call(server, "POST", "/admin/api/team/invite", owner_token,
                       {"email": email, "role": role, "name": role.title()})
    assert status == 201, inv
    status, session = http("POST", server.url + "/admin/auth/accept-invite",
                           {"token": inv["invite_token"], "password": PASSWORD})
    assert status == 200, session
    return dict(session)
