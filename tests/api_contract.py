"""The REST contract check shared by `make fuzz` and its short pass in `make test`: credentials for
every security scheme of /openapi.json, and the schemathesis configuration that uses them."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from tests.support import http

# What a response must satisfy, whatever was sent (schemathesis check names).
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_schema_conformance", "negative_data_rejection")


@dataclass(frozen=True)
class Credentials:
    admin_token: str  # adminBearer
    publishable_key: str  # publishableKey (with the X-User-Id header schemathesis generates)
    secret_key: str  # secretKey


def provision(base_url: str) -> Credentials:
    """A fresh workspace signed up over REST (so this works against any running server), with a key
    of each kind."""
    suffix = secrets.token_hex(4)
    status, session = http("POST", base_url + "/admin/auth/signup", {
        "email": f"fuzz-{suffix}@replyhq.test", "password": secrets.token_urlsafe(16),
        "name": "Fuzz Owner", "app_name": f"Fuzz {suffix}"})
    assert status == 201, (status, session)
    bearer = {"authorization": f"Bearer {session['access_token']}"}
    keys = {}
    for kind in ("publishable", "secret"):
        status, created = http("POST", base_url + "/admin/api/api-keys", {"kind": kind, "name": "fuzz"},
                               headers=bearer)
        assert status == 201, (status, created)
        keys[kind] = created["key"]
    return Credentials(session["access_token"], keys["publishable"], keys["secret"])


def auth_config(creds: Credentials, *, sdk_key: str = "publishable") -> dict[str, Any]:
    """[auth.openapi] of schemathesis.toml. An SDK route accepts either key and schemathesis uses the
    first scheme it has credentials for, so each SDK key kind is its own pass (sdk_key)."""
    schemes: dict[str, Any] = {"adminBearer": {"bearer": creds.admin_token}}
    if sdk_key == "publishable":
        schemes["publishableKey"] = {"api_key": creds.publishable_key}
    else:
        schemes["secretKey"] = {"api_key": creds.secret_key}
    return {"openapi": schemes}


def settings(creds: Credentials, *, sdk_key: str = "publishable") -> dict[str, Any]:
    """schemathesis.toml as a dict: the credentials and the checks, shared by both runners."""
    return {
        "auth": auth_config(creds, sdk_key=sdk_key),
        "checks": {
            "enabled": False,  # only CHECKS, switched on below
            **{name: {"enabled": True} for name in CHECKS},
            # A body over the server's request size limit (1 MB) is refused before it is read: 413.
            "negative_data_rejection": {"enabled": True, "expected-statuses": [
                400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]},
        },
    }


def to_toml(data: dict[str, Any], prefix: str = "") -> str:
    """Just enough TOML for settings(): nested tables of strings, booleans and integer lists."""
    lines: list[str] = []
    tables: list[tuple[str, dict[str, Any]]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append((f"{prefix}{key}", value))
        elif isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        elif isinstance(value, list):
            lines.append(f"{key} = [{', '.join(str(v) for v in value)}]")
        else:
            lines.append(f"{key} = {json.dumps(str(value))}")
    out = ([f"[{prefix[:-1]}]"] if prefix and lines else []) + lines
    for name, table in tables:
        out.append(to_toml(table, f"{name}."))
    return "\n".join(out)
