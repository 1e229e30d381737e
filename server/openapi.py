"""The OpenAPI document: each route module declares its operations; the app serves the union."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    tag: str
    body: type | None = None
    response: type | None = None
    auth: str | None = None  # "api_key" | "admin_jwt" | None
    params: tuple[tuple[str, str, str], ...] = ()  # (name, in, description)
    errors: tuple[int, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


REGISTRY: list[Operation] = []


def document(*ops: Operation) -> None:
    REGISTRY.extend(ops)


_RATE_LIMIT_HEADERS = {
    "RateLimit-Policy": {"description": 'The limits this request counts against (draft-ietf-httpapi-ratelimit-'
                                        'headers), e.g. "sdk-key";q=200000;w=10, "sdk-user";q=2000;w=10',
                         "schema": {"type": "string"}},
    "RateLimit": {"description": 'What is left of each in the current window and the seconds until it ends, '
                                 'e.g. "sdk-key";r=199990;t=7, "sdk-user";r=1990;t=7',
                  "schema": {"type": "string"}},
}


def _rate_limited(responses: dict[str, Any]) -> None:
    """/v1 operations count against the SDK rate limits (server/sdk_limits.py)."""
    for status, response in responses.items():
        if status.startswith("2"):
            response["headers"] = _RATE_LIMIT_HEADERS
    responses["429"] = {
        "description": "rate_limited: the API key or the user is over its limit; details name the policy "
                       "and retry_after",
        "headers": {**_RATE_LIMIT_HEADERS, "Retry-After": {
            "description": "seconds until the window ends", "schema": {"type": "integer"}}},
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}


def build_document(version: str = "0.1.0") -> dict[str, Any]:
    types = {t for op in REGISTRY for t in (op.body, op.response) if t is not None}
    _, components = msgspec.json.schema_components(sorted(types, key=lambda t: t.__name__),
                                                   ref_template="#/components/schemas/{name}")
    paths: dict[str, dict[str, Any]] = {}
    for op in REGISTRY:
        entry: dict[str, Any] = {"summary": op.summary, "tags": [op.tag], "responses": {}}
        if op.body is not None:
            entry["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{op.body.__name__}"}}}}
        ok: dict[str, Any] = {"description": "OK"}
        if op.response is not None:
            ok["content"] = {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{op.response.__name__}"}}}
        entry["responses"]["200"] = ok
        for status in op.errors:
            entry["responses"][str(status)] = {"description": "Error", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
        params = [{"name": n, "in": where, "description": d, "required": where == "path",
                   "schema": {"type": "string"}} for n, where, d in op.params]
        if params:
            entry["parameters"] = params
        if op.auth == "api_key":
            entry["security"] = [{"apiKey": []}]
            _rate_limited(entry["responses"])
        elif op.auth == "admin_jwt":
            entry["security"] = [{"adminBearer": []}]
        entry.update(op.extra)
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    components["ErrorBody"] = {
        "type": "object", "required": ["error"],
        "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
            "code": {"type": "string"}, "message": {"type": "string"}, "details": {}}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "ReplyHQ API", "version": version,
                 "description": "SDK REST (/v1), admin REST (/admin), operations. "
                                "Socket.IO events: /docs/socket-events"},
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": components,
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "adminBearer": {
                    "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                    "description": "The admin access token from /admin/auth/login. 401 codes: missing_token, "
                                   "invalid_token, token_expired (refresh it), admin_disabled, session_revoked "
                                   "(signed out). A role without the route's permission gets 403 "
                                   "permission_denied; another app's ids are 404, like missing ones."},
            },
        },
    }
