"""The OpenAPI document: each route module declares its operations; the app serves the union.

The generator, not each route, adds what every operation of a kind can answer (a body route's 400,
413 and 422; an SDK route's 401 and 422 for its key and user headers; an admin route's 401 and 403;
a route that uses Postgres or Redis, its 503 while they are out of reach),
and every schema reference is the one msgspec generated for the type, so none can dangle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

Auth = Literal["api_key", "admin_jwt"]
# (name, in, description) or (name, in, description, JSON schema of the value; a string by default)
Param = tuple[str, str, str] | tuple[str, str, str, dict[str, Any]]

JSON = "application/json"
ERROR_REF = "#/components/schemas/ErrorBody"
# What any operation with a body, or with an auth scheme, can answer besides its own errors.
_BODY_ERRORS = (400, 413, 422)  # malformed JSON, over the request size limit, fails validation
_AUTH_ERRORS: dict[str, tuple[int, ...]] = {
    "api_key": (401, 403, 422),  # missing/unknown key or user; a secret key outside its scopes; a bad user header
    "admin_jwt": (401,),  # missing/invalid/expired token (a route needing a permission declares its 403)
}
# An SDK route accepts either kind of key: the first a client has is used.
_SECURITY: dict[str, list[dict[str, list[str]]]] = {
    "api_key": [{"publishableKey": []}, {"secretKey": []}],
    "admin_jwt": [{"adminBearer": []}],
}


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    tag: str
    body: type | None = None
    response: type | None = None
    auth: Auth | None = None
    params: tuple[Param, ...] = ()
    errors: tuple[int, ...] = ()
    status: int = 200  # the success status: a handler answers with op.status, so the two cannot differ
    also: tuple[int, ...] = ()  # other success statuses with the same body (a resend's 200 after a 201)
    empty: tuple[int, ...] = ()  # statuses answered without a body (a conditional GET's 304)
    content_type: str = JSON  # of the success response
    extra: dict[str, Any] = field(default_factory=dict)
    storage: bool = True  # it reads or writes Postgres or Redis: a 503 `storage` while they are out of reach

    def error_statuses(self) -> list[int]:
        implied = (*(_BODY_ERRORS if self.body is not None else ()), *_AUTH_ERRORS.get(self.auth or "", ()))
        return sorted({*self.errors, *implied})


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
    """/v1 operations count against the SDK rate limits (server/http/sdk_limits.py)."""
    for status, response in responses.items():
        if status.startswith("2"):
            response["headers"] = _RATE_LIMIT_HEADERS
    responses["429"] = {
        "description": "rate_limited: the API key or the user is over its limit; details name the policy "
                       "and retry_after",
        "headers": {**_RATE_LIMIT_HEADERS, "Retry-After": {
            "description": "seconds until the window ends", "schema": {"type": "integer"}}},
        "content": {JSON: {"schema": {"$ref": ERROR_REF}}}}


_STORAGE_UNAVAILABLE = {
    "description": "storage (or the operation's own 503 code): Postgres or Redis is out of reach for the "
                   "moment; retry after Retry-After seconds",
    "headers": {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}},
    "content": {JSON: {"schema": {"$ref": ERROR_REF}}}}


def _parameter(param: Param) -> dict[str, Any]:
    name, where, description, *schema = param
    return {"name": name, "in": where, "description": description, "required": where == "path",
            "schema": schema[0] if schema else {"type": "string"}}


def _operation(op: Operation, refs: dict[type, dict[str, Any]]) -> dict[str, Any]:
    entry: dict[str, Any] = {"summary": op.summary, "tags": [op.tag], "responses": {}}
    if op.body is not None:
        entry["requestBody"] = {"required": True, "content": {JSON: {"schema": refs[op.body]}}}
    ok: dict[str, Any] = {"description": "OK" if op.status == 200 else "Created" if op.status == 201 else "Done"}
    if op.response is not None:
        ok["content"] = {op.content_type: {"schema": refs[op.response]}}
    elif op.content_type != JSON:
        ok["content"] = {op.content_type: {"schema": {"type": "string"}}}
    for status in (op.status, *op.also):
        entry["responses"][str(status)] = ok
    for status in op.empty:
        entry["responses"][str(status)] = {"description": "Not Modified" if status == 304 else "No body"}
    for status in op.error_statuses():
        entry["responses"][str(status)] = {"description": "Error", "content": {JSON: {
            "schema": {"$ref": ERROR_REF}}}}
    if op.storage:
        entry["responses"]["503"] = _STORAGE_UNAVAILABLE
    if op.params:
        entry["parameters"] = [_parameter(p) for p in op.params]
    if op.auth is not None:
        entry["security"] = _SECURITY[op.auth]
    if op.auth == "api_key":
        _rate_limited(entry["responses"])
    entry.update(op.extra)
    return entry


def build_document(version: str = "0.1.0") -> dict[str, Any]:
    types = sorted({t for op in REGISTRY for t in (op.body, op.response) if t is not None},
                   key=lambda t: (t.__name__, t.__module__))
    # msgspec names each component (module-qualified when two types share a name) and hands back the
    # reference to it: using those references, rather than spelling names here, keeps every $ref valid.
    schemas, components = msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")
    refs = dict(zip(types, schemas, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for op in REGISTRY:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, refs)
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
                "publishableKey": {
                    "type": "apiKey", "in": "header", "name": "X-API-Key",
                    "description": "The app's publishable (SDK) key, with X-User-Id (and X-User-Hash when the "
                                   "app verifies identity) or X-Anonymous-Id naming the user."},
                "secretKey": {
                    "type": "apiKey", "in": "header", "name": "X-API-Key",
                    "description": "A secret (server) key: it may act for any user of its app, no X-User-Hash."},
                "adminBearer": {
                    "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                    "description": "The admin access token from /admin/auth/login. 401 codes: missing_token, "
                                   "invalid_token, token_expired (refresh it), admin_disabled, session_revoked "
                                   "(signed out). A role without the route's permission gets 403 "
                                   "permission_denied; another app's ids are 404, like missing ones."},
            },
        },
    }
