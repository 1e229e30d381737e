"""Segments: filters validate with the bad node's path, compile to SQL that selects exactly the users the
filter describes, and are saved, previewed and scoped to their app over REST."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.dev.embedded import EmbeddedServices
from server.errors import ValidationFailed
from server.platform.db.pool import init_connection
from server.segments.compile import compile_filter
from server.segments.filters import filter_to_json, parse_filter
from server.tenancy.workspaces import NewWorkspace
from tests import segment_reference as ref
from tests.admin_helpers import call, invite_and_join, signup
from tests.conftest import cloned_database, module_server
from tests.support import ServerProcess, http

# -- compile_filter against the Python reference --------------------------------------------------


async def _seed(db: asyncpg.Pool, app_id: Any, users: list[ref.User]) -> None:
    for u in users:
        u.id = str(await db.fetchval(
            """INSERT INTO end_users (app_id, external_id, anonymous_id, name, email, attributes, metadata,
                                      first_seen_at, last_seen_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id""",
            app_id, u.external_id, u.anonymous_id, u.name, u.email, u.attributes, u.metadata,
            u.first_seen_at, u.last_seen_at))
        for status in u.conversations:
            await db.execute("INSERT INTO conversations (app_id, user_id, status) VALUES ($1, $2, $3)",
                             app_id, u.id, status)


async def _select(conn: asyncpg.Connection, app_id: Any, f: Any) -> tuple[set[str], datetime]:
    """The ids the compiled filter selects and the now() they were selected at (one transaction)."""
    params: list[object] = [app_id]
    where = compile_filter(f, params)
    async with conn.transaction():
        now = await conn.fetchval("SELECT now()")
        found = await conn.fetch(f"SELECT u.id FROM end_users u WHERE u.app_id = $1 AND {where}", *params)
    return {str(r["id"]) for r in found}, now


async def test_compiled_filters_select_what_the_reference_says(db: asyncpg.Pool, workspace: NewWorkspace,
                                                               other_workspace: NewWorkspace) -> None:
    rng = random.Random(16)
    now = datetime.now(UTC)
    users = ref.make_users(rng, 300, now)
    await _seed(db, workspace.app_id, users)
    # the same people in another app: never selected
    await _seed(db, other_workspace.app_id, ref.make_users(random.Random(16), 300, now))
    everyone = {u.id for u in users}
    between = 0
    async with db.acquire() as conn:
        # Day arithmetic in a zone with DST would move days_ago by an hour: it must not.
        await conn.execute("SET TIME ZONE 'America/New_York'")
        for n in range(500):
            tree = ref.make_filter(rng)
            f = parse_filter(tree)
            assert filter_to_json(f) == tree and parse_filter(filter_to_json(f)) == f
            got, at = await _select(conn, workspace.app_id, f)
            want = {u.id for u in users if ref.matches(tree, u, at)}
            assert got == want, (n, tree, len(got ^ want))
            between += 0 < len(want) < len(everyone)
        await conn.execute("RESET TIME ZONE")
    assert between > 200  # the generated filters mostly split the users: the comparison says something


@pytest.mark.parametrize(("op", "value", "matching"), [
    ("lt", "10.0", ["9", "9.0", "9.0.1", "v2.0", "1.2.3-beta"]),
    ("gt", "9.0", ["9.0.1", "10", "10.0", "10.0.0 (42)", "10.0.1", "17.4.1"]),
    ("eq", "10", ["10", "10.0", "10.0.0 (42)"]),
    ("neq", "10", ["9", "9.0", "9.0.1", "10.0.1", "17.4.1", "v2.0", "1.2.3-beta", "beta", None]),
])
async def test_versions_compare_part_by_part_as_numbers(db: asyncpg.Pool, workspace: NewWorkspace, op: str,
                                                        value: str, matching: list[str | None]) -> None:
    stored = ["9", "9.0", "9.0.1", "10", "10.0", "10.0.0 (42)", "10.0.1", "17.4.1", "v2.0", "1.2.3-beta", "beta", None]
    users = [ref.User(external_id=f"v{i}", metadata={"device": {"os_version": v}} if v else {})
             for i, v in enumerate(stored)]
    await _seed(db, workspace.app_id, users)
    f = parse_filter({"all": [{"field": "device.os_version", "op": op, "value": value}]})
    async with db.acquire() as conn:
        got, _ = await _select(conn, workspace.app_id, f)
    assert sorted(stored[int(u.external_id[1:])] or "" for u in users if u.id in got) == \
        sorted(v or "" for v in matching)


JUNK_ATTRIBUTES = ["2026-02-30", "2026-01-01T25:00", "2026-01-01T10:00+99", "0000-01-01", "2026-00-10",
                   "2026-01-01T10:00:60", "2026-01-01 24:00", "9999-12-31T23:59:59-23:59", "1e400", "NaN", "",
                   "\u00e9t\u00e9", 10**40, -(10**40), 1.5e300, None, [], {}, {"a": [1]}, True]
EXTREME_VALUES: list[Any] = [
    0, -1, 10**40, 1.5e300, -1.5e300, "0001-01-01T00:00+14:00", "9999-12-31T23:59:59-14:00", "2026-03-29T02:30",
    {"days_ago": 0}, {"days_ago": 36500}]


async def test_junk_attributes_and_extreme_values_never_fail_the_query(db: asyncpg.Pool,
                                                                      workspace: NewWorkspace) -> None:
    users = [ref.User(external_id=f"j{i}", attributes={"x": junk},
                      metadata={"device": {"os_version": str(junk)[:40], "platform": str(junk)[:40]}})
             for i, junk in enumerate(JUNK_ATTRIBUTES)]
    await _seed(db, workspace.app_id, users)
    conditions = [{"field": "custom.x", "op": op, "value": value} for op in ("gt", "lt") for value in EXTREME_VALUES]
    conditions += [{"field": "custom.x", "op": op, "value": v} for op in ("eq", "neq") for v in ("", 10**40, True)]
    conditions += [{"field": "custom.x", "op": "in", "value": [10**40, "", False]},
                   {"field": "custom.x", "op": "contains", "value": "%_\\"},
                   {"field": "name", "op": "contains", "value": "%"},
                   {"field": "device.os_version", "op": "gt", "value": "999999999999999999." * 15 + "1"},
                   {"field": "first_seen_at", "op": "gt", "value": "0001-01-01T00:00+14:00"},
                   {"field": "last_seen_at", "op": "lt", "value": "9999-12-31T23:59:59-14:00"},
                   {"field": "last_seen_at", "op": "gt", "value": {"days_ago": 36500}}]
    async with db.acquire() as conn:
        for c in conditions:
            tree = {"all": [c]}
            got, at = await _select(conn, workspace.app_id, parse_filter(tree))
            want = {u.id for u in users if ref.matches(tree, u, at)}
            assert got == want, (c, [(u.attributes["x"], u.id in got) for u in users if u.id in got ^ want])


# -- parse_filter ---------------------------------------------------------------------------------

def _cond(field: str = "name", op: str = "eq", value: Any = "Ann") -> dict[str, Any]:
    return {"field": field, "op": op, "value": value}


def _deep(levels: int) -> dict[str, Any]:
    node: dict[str, Any] = {"all": [_cond()]}
    for _ in range(levels - 1):
        node = {"any": [_cond(), node]}
    return node


BAD_FILTERS = [
    ("unknown field", {"all": [_cond(), {"any": [_cond(field="nickname")]}]}, "$.filter.all[1].any[0].field"),
    ("unknown custom name", {"all": [_cond(field="custom.")]}, "$.filter.all[0].field"),
    ("op the field does not take", {"all": [_cond(), _cond(), _cond(field="device.platform", op="contains")]},
     "$.filter.all[2].op"),
    ("gt on a string field", {"any": [_cond(op="gt")]}, "$.filter.any[0].op"),
    ("wrong value type", {"all": [_cond(), _cond(), _cond(field="anonymous", value="yes")]}, "$.filter.all[2].value"),
    ("a number for a name", {"all": [_cond(value=3)]}, "$.filter.all[0].value"),
    ("bad version", {"all": [_cond("device.os_version", "gt", "17.x")]}, "$.filter.all[0].value"),
    ("bad time", {"all": [_cond("last_seen_at", "gt", "yesterday")]}, "$.filter.all[0].value"),
    ("offset past 14 h", {"all": [_cond("last_seen_at", "lt", "2026-01-01T10:00-23:59")]}, "$.filter.all[0].value"),
    ("hour 24", {"all": [_cond("last_seen_at", "lt", "2026-01-01T24:00")]}, "$.filter.all[0].value"),
    ("bad days_ago", {"all": [_cond("last_seen_at", "gt", {"days_ago": -1})]}, "$.filter.all[0].value.days_ago"),
    ("days_ago with more", {"all": [_cond("first_seen_at", "lt", {"days_ago": 1, "x": 1})]},
     "$.filter.all[0].value.x"),
    ("empty in", {"all": [_cond(op="in", value=[])]}, "$.filter.all[0].value"),
    ("bad in item", {"all": [_cond(op="in", value=["a", 2])]}, "$.filter.all[0].value[1]"),
    ("exists takes a bool", {"all": [_cond(op="exists", value="yes")]}, "$.filter.all[0].value"),
    ("contains a number", {"all": [_cond("custom.plan", "contains", 3)]}, "$.filter.all[0].value"),
    ("custom gt on a word", {"all": [_cond("custom.age", "gt", "thirty")]}, "$.filter.all[0].value"),
    ("NUL in a value", {"all": [_cond(value="a\u0000b")]}, "$.filter.all[0].value"),
    ("NUL in an attribute name", {"all": [_cond(field="custom.a\u0000b")]}, "$.filter.all[0].field"),
    ("unknown condition key", {"all": [{**_cond(), "negate": True}]}, "$.filter.all[0].negate"),
    ("missing value", {"all": [{"field": "name", "op": "eq"}]}, "$.filter.all[0].value"),
    ("unknown group key", {"all": [], "none": []}, "$.filter.none"),
    ("both all and any", {"all": [], "any": []}, "$.filter"),
    ("not an object", {"all": [[_cond()]]}, "$.filter.all[0]"),
    ("items not a list", {"any": {"field": "name"}}, "$.filter.any"),
    ("too deep", _deep(5), "$.filter.any[1].any[1].any[1].any[1]"),
    ("too many conditions", {"all": [_cond()] * 30 + [{"any": [_cond()] * 21}]}, "$.filter.all[30].any[20]"),
    ("too many groups", {"all": [{"any": []}] * 50}, "$.filter.all[49]"),
]


@pytest.mark.parametrize(("tree", "path"), [(t, p) for _, t, p in BAD_FILTERS], ids=[n for n, _, _ in BAD_FILTERS])
def test_a_bad_filter_names_the_bad_node(tree: Any, path: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        parse_filter(tree)
    assert err.value.details["path"] == path


def test_limits_are_inclusive() -> None:
    parse_filter(_deep(4))
    parse_filter({"all": [_cond()] * 30 + [{"any": [_cond()] * 20}]})
    parse_filter({"all": [{"any": []}] * 49})
    parse_filter({"all": [_cond(op="in", value=[str(i) for i in range(100)])]})
    with pytest.raises(ValidationFailed):
        parse_filter({"all": [_cond(op="in", value=[str(i) for i in range(101)])]})


# -- REST -----------------------------------------------------------------------------------------

VIP = {"all": [{"field": "custom.plan", "op": "eq", "value": "pro"},
               {"any": [{"field": "device.os_version", "op": "gt", "value": "9.0"},
                        {"field": "last_seen_at", "op": "gt", "value": {"days_ago": 7}}]}]}


@pytest.fixture(scope="module")
def seg_db(pg_admin_url: str, template_db: str) -> Iterator[str]:
    with cloned_database(pg_admin_url, template_db, f"segments_{os.getpid()}") as url:
        yield url


@pytest.fixture(scope="module")
def seg_server(services: EmbeddedServices, seg_db: str,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with module_server(services, seg_db, tmp_path_factory.mktemp("segments"), redis_db=13) as server:
        yield server


def _workspace(server: ServerProcess, users: int = 0) -> dict[str, Any]:
    """A signed-up owner (token, app_id) and, with `users`, that many SDK users identified with varied
    attributes and devices: user i has plan pro when i is even, os_version 9.<i> and app_version <i>.0."""
    session = signup(server)
    out = {"token": session["access_token"], "app_id": session["app"]["id"], "session": session}
    if users:
        status, key = call(server, "POST", "/admin/api/api-keys", out["token"], {"kind": "publishable", "name": "s"})
        assert status == 201, key
        for i in range(users):
            status, body = http("POST", server.url + "/v1/users/identify", {
                "user_id": f"u{i}", "name": f"User {i}", "attributes": {"plan": "pro" if i % 2 == 0 else "free",
                                                                        "seats": i},
                "device": {"platform": "ios" if i % 3 else "android", "os_version": f"9.{i}",
                           "app_version": f"{i}.0"}}, headers={"X-API-Key": key["key"], "X-User-Id": f"u{i}"})
            assert status == 200, body
    return out


async def _rows(db_url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(db_url)
    try:
        await init_connection(conn)
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def test_segments_are_created_read_renamed_refiltered_and_deleted_with_their_events(
        seg_server: ServerProcess, seg_db: str) -> None:
    ws = _workspace(seg_server)
    token, app_id = ws["token"], ws["app_id"]
    status, created = call(seg_server, "POST", "/admin/api/segments", token, {"name": "VIPs", "filter": VIP})
    assert status == 201, created
    assert created["name"] == "VIPs" and created["filter"] == VIP
    assert created["created_by"] == ws["session"]["admin"]["id"]
    sid = created["id"]
    assert call(seg_server, "GET", f"/admin/api/segments/{sid}", token) == (200, created)
    status, second = call(seg_server, "POST", "/admin/api/segments", token,
                          {"name": "Everyone", "filter": {"all": []}})
    assert status == 201
    status, listed = call(seg_server, "GET", "/admin/api/segments", token)
    assert status == 200 and [s["id"] for s in listed["segments"]] == [second["id"], sid]

    assert call(seg_server, "PATCH", f"/admin/api/segments/{sid}", token, {}) == (200, created)  # no event
    status, renamed = call(seg_server, "PATCH", f"/admin/api/segments/{sid}", token, {"name": "Pro users"})
    assert status == 200 and renamed["name"] == "Pro users" and renamed["filter"] == VIP
    assert renamed["updated_at"] > created["updated_at"]
    android = {"any": [{"field": "device.platform", "op": "in", "value": ["android"]}]}
    status, refiltered = call(seg_server, "PATCH", f"/admin/api/segments/{sid}", token, {"filter": android})
    assert status == 200 and refiltered["name"] == "Pro users" and refiltered["filter"] == android
    assert call(seg_server, "GET", f"/admin/api/segments/{sid}", token) == (200, refiltered)

    status, deleted = call(seg_server, "DELETE", f"/admin/api/segments/{sid}", token)
    assert (status, deleted) == (200, {"id": sid, "deleted": True})
    assert call(seg_server, "GET", f"/admin/api/segments/{sid}", token)[0] == 404
    assert call(seg_server, "DELETE", f"/admin/api/segments/{sid}", token)[0] == 404
    assert call(seg_server, "PATCH", f"/admin/api/segments/{sid}", token, {"name": "x"})[0] == 404

    events = await _rows(seg_db, "SELECT type, data, admin_id FROM domain_events WHERE app_id = $1::uuid "
                                 "AND type LIKE 'segment.%' ORDER BY seq", app_id)
    assert [(e["type"], e["data"]["segment"]["id"], e["data"].get("changes")) for e in events] == [
        ("segment.created", sid, None), ("segment.created", second["id"], None),
        ("segment.updated", sid, ["name"]), ("segment.updated", sid, ["filter"]), ("segment.deleted", sid, None)]
    assert events[0]["data"]["segment"] == created and events[3]["data"]["segment"] == refiltered
    assert {str(e["admin_id"]) for e in events} == {ws["session"]["admin"]["id"]}


async def test_another_apps_segment_is_a_404_and_its_users_are_never_counted(seg_server: ServerProcess,
                                                                             seg_db: str) -> None:
    acme, globex = _workspace(seg_server, users=3), _workspace(seg_server, users=2)
    status, ours = call(seg_server, "POST", "/admin/api/segments", acme["token"], {"name": "A", "filter": VIP})
    assert status == 201
    g = globex["token"]
    for method, body in (("GET", None), ("PATCH", {"name": "stolen"}), ("DELETE", None)):
        status, resp = call(seg_server, method, f"/admin/api/segments/{ours['id']}", g, body)
        assert (status, resp["error"]["code"]) == (404, "segment_not_found"), (method, resp)
    assert call(seg_server, "GET", "/admin/api/segments", g) == (200, {"segments": []})
    assert call(seg_server, "GET", f"/admin/api/segments/{ours['id']}", acme["token"]) == (200, ours)
    everyone = {"filter": {"all": []}}
    assert call(seg_server, "POST", "/admin/api/segments/preview", acme["token"], everyone)[1]["count"] == 3
    status, theirs = call(seg_server, "POST", "/admin/api/segments/preview", g, everyone)
    assert status == 200 and theirs["count"] == 2 and {u["user_id"] for u in theirs["users"]} == {"u0", "u1"}
    assert {u["app_id"] for u in theirs["users"]} == {globex["app_id"]}


async def test_a_role_without_broadcasts_write_reads_and_previews_but_cannot_change(
        seg_server: ServerProcess, seg_db: str) -> None:
    ws = _workspace(seg_server, users=2)
    status, seg = call(seg_server, "POST", "/admin/api/segments", ws["token"], {"name": "VIPs", "filter": VIP})
    assert status == 201
    agent = invite_and_join(seg_server, ws["token"], "agent")["access_token"]
    assert call(seg_server, "GET", "/admin/api/segments", agent) == (200, {"segments": [seg]})
    assert call(seg_server, "GET", f"/admin/api/segments/{seg['id']}", agent) == (200, seg)
    assert call(seg_server, "POST", "/admin/api/segments/preview", agent, {"filter": VIP})[0] == 200
    before = await _rows(seg_db, "SELECT count(*) AS n FROM domain_events WHERE app_id = $1::uuid", ws["app_id"])
    for method, path, body in (("POST", "/admin/api/segments", {"name": "x", "filter": VIP}),
                               ("PATCH", f"/admin/api/segments/{seg['id']}", {"name": "x"}),
                               ("DELETE", f"/admin/api/segments/{seg['id']}", None)):
        status, resp = call(seg_server, method, path, agent, body)
        assert status == 403 and resp["error"]["details"] == {"permission": "broadcasts.write"}, (method, resp)
    assert call(seg_server, "GET", "/admin/api/segments", ws["token"]) == (200, {"segments": [seg]})
    assert await _rows(seg_db, "SELECT count(*) AS n FROM domain_events WHERE app_id = $1::uuid",
                       ws["app_id"]) == before


async def test_a_bad_filter_is_a_422_naming_the_node_and_nothing_is_stored(seg_server: ServerProcess,
                                                                          seg_db: str) -> None:
    ws = _workspace(seg_server)
    token = ws["token"]
    status, seg = call(seg_server, "POST", "/admin/api/segments", token, {"name": "Kept", "filter": VIP})
    assert status == 201
    for name, tree, path in BAD_FILTERS:
        for method, url, body in (("POST", "/admin/api/segments", {"name": "bad", "filter": tree}),
                                  ("PATCH", f"/admin/api/segments/{seg['id']}", {"name": "bad", "filter": tree}),
                                  ("POST", "/admin/api/segments/preview", {"filter": tree})):
            status, resp = call(seg_server, method, url, token, body)
            assert status == 422, (name, method, url, resp)
            assert resp["error"]["code"] == "validation_error" and resp["error"]["details"]["path"] == path, \
                (name, method, resp)
    # the body's own shape is checked first, with msgspec's path
    for body, path in (({"name": "x"}, "$"), ({"name": "x", "filter": []}, "$.filter"),
                       ({"name": "", "filter": VIP}, "$.name"), ({"name": "x", "filter": VIP, "id": "mine"}, "$")):
        status, resp = call(seg_server, "POST", "/admin/api/segments", token, body)
        assert status == 422 and resp["error"]["details"]["path"] == path, (body, resp)
    assert call(seg_server, "GET", "/admin/api/segments", token) == (200, {"segments": [seg]})
    events = await _rows(seg_db, "SELECT type FROM domain_events WHERE app_id = $1::uuid AND type LIKE 'segment.%'",
                         ws["app_id"])
    assert [e["type"] for e in events] == ["segment.created"]


def test_the_preview_counts_the_audience_and_shows_20_users_as_the_users_list_does(
        seg_server: ServerProcess) -> None:
    ws = _workspace(seg_server, users=45)
    token = ws["token"]

    def preview(f: dict[str, Any]) -> dict[str, Any]:
        status, out = call(seg_server, "POST", "/admin/api/segments/preview", token, {"filter": f})
        assert status == 200, out
        return dict(out)

    listed = {u["id"]: u for u in call(seg_server, "GET", "/admin/api/users?limit=100", token)[1]["users"]}
    pro = preview({"all": [{"field": "custom.plan", "op": "eq", "value": "pro"}]})
    assert pro["count"] == 23 and len(pro["users"]) == 20
    assert all(u == listed[u["id"]] for u in pro["users"])  # the same shape and values as GET /admin/api/users
    seen = [u["last_seen_at"] for u in pro["users"]]
    assert seen == sorted(seen, reverse=True)
    # os_version 9.<i>: numerically, 9.10 .. 9.44 are above 9.9 (as text, only 9.9 would not be below it)
    newer = preview({"all": [{"field": "device.os_version", "op": "gt", "value": "9.9"}]})
    assert newer["count"] == 35
    few = preview({"all": [{"field": "custom.seats", "op": "lt", "value": 3},
                           {"field": "device.platform", "op": "neq", "value": "android"}]})
    assert few["count"] == 2 and sorted(u["user_id"] for u in few["users"]) == ["u1", "u2"]
    assert preview({"any": []}) == {"count": 0, "users": []}


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=30)
_value = st.one_of(
    st.booleans(), st.integers(-5, 50), st.floats(), st.lists(st.sampled_from(["a", 1, True]), max_size=3),
    st.sampled_from(["9.0", "10", "pro", "2026-03-29T02:30Z", "2026-02-30", "", "x\u0000"]),
    st.fixed_dictionaries({"days_ago": st.integers(-1, 40)}), st.dictionaries(st.text(max_size=3), _json))
_condition = st.fixed_dictionaries({
    "field": st.sampled_from(["name", "anonymous", "last_seen_at", "has_open_conversation", "device.platform",
                              "device.os_version", "custom.plan", "custom.", "nickname"]),
    "op": st.sampled_from(["eq", "neq", "contains", "in", "exists", "gt", "lt", "like"]), "value": _value})


def _group(items: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(lambda kind, found: {kind: found}, st.sampled_from(["all", "any"]), st.lists(items, max_size=4))


_near = _group(st.recursive(_condition, _group, max_leaves=12))


@settings(max_examples=400, deadline=None, derandomize=True)
@given(st.one_of(_json, _near))
def test_any_json_is_a_filter_or_a_422_with_a_path_under_filter(obj: Any) -> None:
    try:
        f = parse_filter(obj)
    except ValidationFailed as err:
        assert err.details["path"].startswith("$.filter")
        return
    assert filter_to_json(f) == obj and parse_filter(filter_to_json(f)) == f
    params: list[object] = []
    assert compile_filter(f, params).count("$") == len(params)
