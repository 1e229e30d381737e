"""NUL (\\u0000) in any string of any admin request body is a 422 validation_error naming the field, and
nothing is stored (Postgres text cannot hold NUL: before, such a body was a 500).

The walk covers every documented /admin operation with a body and every string in its schema (found
from the msgspec types, so a new admin route or field is walked without editing this file); a route
without an example body below fails the test, so it has to be added."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import msgspec.inspect as mi

import server.app  # noqa: F401  (registers every route's operations)
from server.http.openapi import REGISTRY
from server.tenancy.workspaces import NewWorkspace
from tests.admin_helpers import PASSWORD, bearer, call
from tests.inbox_helpers import owner_token, start_conversation, teammate
from tests.refusal_helpers import diff, stored_state
from tests.support import ServerProcess, http

NUL = "a\u0000b"
# A body each operation accepts; the walk puts NUL into one string of it at a time.
EXAMPLES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/admin/auth/signup"): {"email": "new@acme.test", "password": PASSWORD, "name": "Nia",
                                     "app_name": "Nul Inc"},
    ("POST", "/admin/auth/login"): {"email": "{email}", "password": PASSWORD},
    ("POST", "/admin/auth/refresh"): {"refresh_token": "some-token"},
    ("POST", "/admin/auth/logout"): {"refresh_token": "some-token"},
    ("POST", "/admin/auth/accept-invite"): {"token": "some-token", "password": PASSWORD, "name": "Nia"},
    ("PATCH", "/admin/api/account"): {"name": "Olive 2", "email": "{email}", "current_password": PASSWORD},
    ("POST", "/admin/api/account/password"): {"current_password": PASSWORD, "new_password": PASSWORD},
    ("PATCH", "/admin/api/workspace"): {"name": "Acme 2", "timezone": "UTC", "identity_verification": "off"},
    ("POST", "/admin/api/workspace/identity-secret/rotate"): {"previous_valid_hours": 24},
    ("PATCH", "/admin/api/branding"): {"color": "#112233", "launcher_position": "left", "greeting": "Hi",
                                       "team_intro": "We reply fast", "logo": "aGVsbG8="},
    ("POST", "/admin/api/api-keys"): {"kind": "secret", "name": "server"},
    ("PATCH", "/admin/api/api-keys/{key_id}"): {"name": "renamed", "scopes": ["users.read"]},
    ("POST", "/admin/api/api-keys/{key_id}/rotate"): {"grace_seconds": 60},
    ("POST", "/admin/api/team/invite"): {"email": "new@acme.test", "role": "agent", "name": "Nia"},
    ("PATCH", "/admin/api/team/{admin_id}"): {"role": "viewer"},
    ("POST", "/admin/api/conversations/{conversation_id}/messages"): {"client_id": "c-1", "body": "hi"},
    ("POST", "/admin/api/conversations/{conversation_id}/notes"): {"client_id": "n-1", "body": "note"},
    ("POST", "/admin/api/conversations/{conversation_id}/assign"): {"assignee_id": "{admin_id}"},
    ("POST", "/admin/api/conversations/{conversation_id}/status"): {"status": "snoozed",
                                                                    "snoozed_until": "2099-01-01T09:00:00Z"},
    ("POST", "/admin/api/conversations/{conversation_id}/tags"): {"add": ["vip"], "remove": ["old"]},
    ("POST", "/admin/api/conversations/{conversation_id}/read"): {"seq": 1},
    ("POST", "/admin/webhooks"): {"url": "https://hooks.example.com/in", "description": "crm",
                                  "event_types": ["message.created"]},
    # The body is read before the endpoint is looked up: a NUL is refused even for an unknown id.
    ("PATCH", "/admin/webhooks/{endpoint_id}"): {"url": "https://hooks.example.com/in", "description": "crm",
                                                 "event_types": ["message.created"]},
    ("POST", "/admin/api/segments"): {"name": "VIPs", "filter": {"all": []}},
    ("POST", "/admin/api/segments/preview"): {"filter": {"all": []}},
    ("PATCH", "/admin/api/segments/{segment_id}"): {"name": "renamed", "filter": {"all": []}},
    ("POST", "/admin/api/broadcasts"): {
        "name": "News", "message": {"text": "Hi", "button_url": "https://acme.test/new", "button_label": "See"},
        "audience": {"filter": {"all": []}}, "schedule": {"kind": "once", "at": "2099-01-01T09:00",
                                                          "timezone": "UTC"}},
    ("PATCH", "/admin/api/broadcasts/{broadcast_id}"): {
        "name": "News", "message": {"text": "Hi", "button_url": "https://acme.test/new", "button_label": "See"},
        "schedule": {"kind": "once", "at": "2099-01-01T09:00", "timezone": "UTC"}},
    ("POST", "/admin/api/broadcasts/cron-preview"): {"cron": "0 9 * * 1", "timezone": "UTC"},
}
# A schedule is one of several shapes (its `kind`): strings of the other shapes are walked in these.
MORE_EXAMPLES: dict[tuple[str, str], list[dict[str, Any]]] = {
    op: [{**EXAMPLES[op], "schedule": {"kind": "recurring", "cron": "0 9 * * 1", "timezone": "UTC"}}]
    for op in (("POST", "/admin/api/broadcasts"), ("PATCH", "/admin/api/broadcasts/{broadcast_id}"))}


def _example_for(op: tuple[str, str], path: tuple[str | int, ...]) -> dict[str, Any]:
    """The first example in which the string at `path` already has a place (so the walk never adds a
    field another shape of the body does not take)."""
    candidates = [EXAMPLES[op], *MORE_EXAMPLES.get(op, [])]
    for example in candidates:
        node: Any = example
        for step in path[:-1]:
            node = node.get(step) if isinstance(node, dict) and not isinstance(step, int) else None
        if isinstance(node, dict) and path[-1] in node:
            return example
    return candidates[0]
# The fields the issue found failing with a 500: the walk must reach them.
REPORTED = {("POST", "/admin/api/api-keys", "$.name"), ("POST", "/admin/api/team/invite", "$.email"),
            ("POST", "/admin/api/team/invite", "$.name"), ("POST", "/admin/auth/signup", "$.email"),
            ("POST", "/admin/auth/signup", "$.name"), ("POST", "/admin/auth/signup", "$.app_name"),
            ("POST", "/admin/auth/login", "$.email"), ("PATCH", "/admin/api/account", "$.name")}


def _string_paths(info: mi.Type, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """Where a string can go in a body of this type (a list's strings as its first item)."""
    if isinstance(info, mi.StrType):
        yield path
    elif isinstance(info, mi.UnionType):
        for member in info.types:
            yield from _string_paths(member, path)
    elif isinstance(info, mi.StructType):
        for f in info.fields:
            yield from _string_paths(f.type, (*path, f.encode_name))
    elif isinstance(info, (mi.ListType, mi.SetType, mi.FrozenSetType, mi.VarTupleType)):
        yield from _string_paths(info.item_type, (*path, 0))
    elif isinstance(info, mi.DictType) and isinstance(info.value_type, mi.AnyType):
        return  # free-form JSON read by its own parser (a segment filter: NUL cases in tests/test_segments.py)
    elif isinstance(info, mi.DictType):
        raise AssertionError(f"teach _string_paths dicts (at {_json_path(path)})")


def _with(body: dict[str, Any], path: tuple[str | int, ...], value: str) -> dict[str, Any]:
    out = copy.deepcopy(body)
    node: Any = out
    for i, step in enumerate(path[:-1]):
        nxt: Any = [] if isinstance(path[i + 1], int) else {}
        if isinstance(step, int):
            node = node[0] if node else (node.append(nxt) or node[0])
        else:
            node = node.setdefault(step, nxt)
    last = path[-1]
    if isinstance(last, int):
        node[:1] = [value]
    else:
        node[last] = value
    return out


def _json_path(path: tuple[str | int, ...]) -> str:
    return "$" + "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in path)


def _fill(text: str, ids: dict[str, str]) -> str:
    for name, value in ids.items():
        text = text.replace("{" + name + "}", value)
    return text


async def test_nul_in_any_admin_string_is_a_422_naming_the_field_and_stores_nothing(
        server: ServerProcess, workspace: NewWorkspace, db: asyncpg.Pool, redis_url: str) -> None:
    token = owner_token(server, workspace)
    conv = start_conversation(server, workspace, f"user-{uuid.uuid4().hex[:8]}")
    agent = teammate(server, token, "agent")
    keys = call(server, "GET", "/admin/api/api-keys", token)[1]["api_keys"]
    ids = {"conversation_id": conv["id"], "admin_id": agent["admin"]["id"], "key_id": keys[0]["id"],
           "email": workspace.email, "endpoint_id": str(uuid.uuid4()), "segment_id": str(uuid.uuid4()),
           "broadcast_id": str(uuid.uuid4())}
    operations = [op for op in REGISTRY if op.path.startswith("/admin") and op.body is not None]
    missing = {(op.method, op.path) for op in operations} - set(EXAMPLES)
    assert not missing, f"add an example body for {missing}"
    before = await stored_state(db, redis_url)
    walked: set[tuple[str, str, str]] = set()
    for op in operations:
        assert op.body is not None
        headers = bearer(token) if op.auth == "admin_jwt" else {}
        for path in _string_paths(mi.type_info(op.body)):
            example = {k: _fill(v, ids) if isinstance(v, str) else v
                       for k, v in _example_for((op.method, op.path), path).items()}
            body = _with(example, path, NUL)
            status, resp = http(op.method, server.url + _fill(op.path, ids), body, headers=headers)
            where = _json_path(path)
            assert status == 422, (op.method, op.path, body, status, resp)
            assert resp["error"]["code"] == "validation_error", resp
            assert resp["error"]["details"]["path"] == where, (op.path, resp)
            walked.add((op.method, op.path, where))
    assert REPORTED <= walked
    assert len(walked) >= 20
    assert diff(before, await stored_state(db, redis_url)) == {}
    # the same bodies without the NUL are taken: the refusal was the NUL, nothing else
    status, created = call(server, "POST", "/admin/api/api-keys", token, {"kind": "secret", "name": "a-b"})
    assert status == 201 and created["api_key"]["name"] == "a-b", created
