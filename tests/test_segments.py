"""Segments: filters validate with the bad node's path, compile to SQL that selects exactly the users the
filter describes, and are saved, previewed and scoped to their app over REST."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from server.errors import ValidationFailed
from server.segments.compile import compile_filter
from server.segments.filters import filter_to_json, parse_filter
from server.tenancy.workspaces import NewWorkspace
from tests import segment_reference as ref

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
    ("bad days_ago", {"all": [_cond("last_seen_at", "gt", {"days_ago": -1})]}, "$.filter.all[0].value.days_ago"),
    ("days_ago with more", {"all": [_cond("first_seen_at", "lt", {"days_ago": 1, "x": 1})]},
     "$.filter.all[0].value.x"),
    ("empty in", {"all": [_cond(op="in", value=[])]}, "$.filter.all[0].value"),
    ("bad in item", {"all": [_cond(op="in", value=["a", 2])]}, "$.filter.all[0].value[1]"),
    ("exists takes a bool", {"all": [_cond(op="exists", value="yes")]}, "$.filter.all[0].value"),
    ("contains a number", {"all": [_cond("custom.plan", "contains", 3)]}, "$.filter.all[0].value"),
    ("custom gt on a word", {"all": [_cond("custom.age", "gt", "thirty")]}, "$.filter.all[0].value"),
    ("unknown condition key", {"all": [{**_cond(), "negate": True}]}, "$.filter.all[0].negate"),
    ("missing value", {"all": [{"field": "name", "op": "eq"}]}, "$.filter.all[0].value"),
    ("unknown group key", {"all": [], "none": []}, "$.filter.none"),
    ("both all and any", {"all": [], "any": []}, "$.filter"),
    ("not an object", {"all": [[_cond()]]}, "$.filter.all[0]"),
    ("items not a list", {"any": {"field": "name"}}, "$.filter.any"),
    ("too deep", _deep(5), "$.filter.any[1].any[1].any[1].any[1]"),
    ("too many conditions", {"all": [_cond()] * 30 + [{"any": [_cond()] * 21}]}, "$.filter.all[30].any[20]"),
]


@pytest.mark.parametrize(("tree", "path"), [(t, p) for _, t, p in BAD_FILTERS], ids=[n for n, _, _ in BAD_FILTERS])
def test_a_bad_filter_names_the_bad_node(tree: Any, path: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        parse_filter(tree)
    assert err.value.details["path"] == path


def test_limits_are_inclusive() -> None:
    parse_filter(_deep(4))
    parse_filter({"all": [_cond()] * 30 + [{"any": [_cond()] * 20}]})
    parse_filter({"all": [_cond(op="in", value=[str(i) for i in range(100)])]})
    with pytest.raises(ValidationFailed):
        parse_filter({"all": [_cond(op="in", value=[str(i) for i in range(101)])]})
