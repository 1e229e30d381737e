"""A plain-Python reading of the segment filter semantics (docs/broadcasts.md, server/segments/compile.py),
seeded users to run it on, and a seeded generator of filters: the SQL must select exactly what this says."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

# Instants either side of the 2026 DST changes (Europe: 29 Mar / 25 Oct, US: 8 Mar / 1 Nov): the same
# instant written with different offsets must compare the same whatever the session time zone.
DST_TIMES = [
    "2026-03-29T00:30:00Z", "2026-03-29T01:30:00+00:00", "2026-03-29T03:30:00+02:00", "2026-03-29T02:59:59+01:00",
    "2026-10-25T01:30:00+02:00", "2026-10-25T01:30:00+01:00", "2026-10-25T00:30Z", "2026-11-01T01:30:00-04:00",
    "2026-11-01T01:30:00-05:00", "2026-03-08T02:30", "2026-03-08", "2026-11-01T06:30:00Z", "2026-10-25",
]
VERSIONS = ["9", "9.0", "9.0.1", "10", "10.0", "10.0.0", "17.4", "17.4.0", "17.4.1", "16.10", "16.9.9", "1.2.3",
            "0.0", "0.1", "2"]
STORED_VERSIONS = [*VERSIONS, "1.2.3-beta", "v2.0", "abc", " 17.4.1", "10.0 (build 7)", ""]
# Whatever the date, some of these reach back across exactly one DST change (45 from December, 180 from July).
DAYS_AGO = [0, 1, 2, 7, 30, 45, 90, 180, 270, 365]
PLATFORMS = ["ios", "android", "web", "iOS"]
MODELS = ["iPhone15,2", "Pixel 8", "SM-G991B", "iPad13,1", "Chrome"]
NAMES = ["Ann", "anna", "ANNE", "Bob", "Émile", "Zoë", "", "bobby tables"]
PLANS = ["pro", "free", "Pro", "team", ""]
ATTR_TIMES = [*DST_TIMES, "2026-02-30", "2025-12-31T23:59:59.5+00:00", "not a time", "2026-13-01"]


@dataclass
class User:
    id: str = ""
    external_id: str | None = None
    anonymous_id: str | None = None
    name: str | None = None
    email: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    first_seen_at: datetime = datetime(2026, 1, 1, tzinfo=UTC)
    last_seen_at: datetime = datetime(2026, 1, 1, tzinfo=UTC)
    conversations: list[str] = field(default_factory=list)  # statuses


def make_users(rng: random.Random, n: int, now: datetime) -> list[User]:
    users = []
    for i in range(n):
        u = User()
        if rng.random() < 0.25:
            u.anonymous_id = f"anon-{i}"
        else:
            u.external_id = rng.choice(["user-", "User-", "acct_", "x"]) + str(i)
        u.name = rng.choice([None, *NAMES])
        u.email = rng.choice([None, f"u{i}@acme.test", f"U{i}@Example.com", "shared@acme.test"])
        attrs: dict[str, Any] = {}
        for key, values in (
                ("plan", [*PLANS, 1, True]),
                ("age", [17, 18, 30, 30.5, 65, "30", -1, 0, 10**20]),
                ("score", [0.5, 1.5, 2, 1e3, False, None]),
                ("vip", [True, False, "true", 1, None]),
                ("signup", ATTR_TIMES),
                ("tags", [["a", "b"], {"k": "v"}, "a"]),
                ("a.b", ["dotted", 1])):
            if rng.random() < 0.6:
                attrs[key] = rng.choice(values)
        u.attributes = attrs
        if rng.random() < 0.8:
            device: dict[str, Any] = {}
            for key, values in (("platform", PLATFORMS), ("model", MODELS), ("os_version", STORED_VERSIONS),
                                ("app_version", STORED_VERSIONS), ("sdk_version", STORED_VERSIONS)):
                if rng.random() < 0.75:
                    device[key] = rng.choice(values)
            u.metadata = {"device": device}
        # Whole hours plus half an hour back from now: never on a days_ago boundary, but half an hour
        # either side of one often (a calendar-day "days ago" across a DST change would misplace them).
        u.first_seen_at = rng.choice([
            now - timedelta(hours=rng.randrange(0, 24 * 60), minutes=30),
            now - timedelta(hours=24 * rng.choice(DAYS_AGO), minutes=rng.choice([-30, 30])),
            _time(rng.choice(DST_TIMES)) + timedelta(seconds=rng.choice([-1, 0, 1]))])
        u.last_seen_at = max(u.first_seen_at, rng.choice([
            now - timedelta(hours=rng.randrange(0, 24 * 30), minutes=30),
            now - timedelta(hours=24 * rng.choice(DAYS_AGO), minutes=rng.choice([-30, 30]))]))
        u.conversations = rng.choice([[], [], ["open"], ["closed"], ["closed", "open"], ["pending"], ["snoozed"]])
        users.append(u)
    return users


# -- the reference --------------------------------------------------------------------------------

def _time(text: str) -> datetime:
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


_ISO = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?"
                  r"(Z|[+-](0[0-9]|1[0-4])(:?[0-5][0-9])?)?)?$")


def _attr_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not _ISO.match(value):
        return None
    try:
        return _time(value)
    except ValueError:
        return None


def version(text: Any) -> tuple[int, ...] | None:
    if not isinstance(text, str):
        return None
    m = re.match(r"^\s*[vV]?([0-9]+(?:\.[0-9]+)*)", text)
    if not m:
        return None
    return tuple(int(p) for p in re.sub(r"(\.0+)+$", "", m.group(1)).split("."))


def _kind(v: Any) -> str:
    return "bool" if isinstance(v, bool) else "number" if isinstance(v, int | float) else type(v).__name__


def _json_eq(a: Any, b: Any) -> bool:
    return a is not None and _kind(a) == _kind(b) and a == b


def _instant(value: Any, now: datetime) -> datetime:
    if isinstance(value, dict):
        return now - timedelta(hours=24 * value["days_ago"])
    return _time(value)


def matches(node: dict[str, Any], u: User, now: datetime) -> bool:
    if "all" in node:
        return all(matches(i, u, now) for i in node["all"])
    if "any" in node:
        return any(matches(i, u, now) for i in node["any"])
    fld, op, value = node["field"], node["op"], node["value"]
    if fld == "anonymous":
        return (u.external_id is None) == value
    if fld == "has_open_conversation":
        return ("open" in u.conversations) == value
    if fld.startswith("custom."):
        return _custom(u.attributes.get(fld[7:]), op, value, now)
    column: Any = {"external_id": u.external_id, "name": u.name, "email": u.email,
                   "first_seen_at": u.first_seen_at, "last_seen_at": u.last_seen_at}.get(fld)
    if fld.startswith("device."):
        column = u.metadata.get("device", {}).get(fld[7:])
    if op == "exists":
        return (column is not None) == value
    if fld.endswith("_seen_at"):
        return column > _instant(value, now) if op == "gt" else column < _instant(value, now)
    if fld.endswith("_version"):
        mine, theirs = version(column), version(value)
        if op == "neq":
            return mine != theirs
        if mine is None:
            return False
        return {"eq": mine == theirs, "gt": mine > theirs, "lt": mine < theirs}[op]  # type: ignore[operator]
    return {"eq": lambda: column is not None and column == value,
            "neq": lambda: column != value,
            "contains": lambda: column is not None and value.lower() in column.lower(),
            "in": lambda: column is not None and column in value}[op]()


def _custom(a: Any, op: str, value: Any, now: datetime) -> bool:
    if op == "exists":
        return (a is not None) == value
    if op == "eq":
        return _json_eq(a, value)
    if op == "neq":
        return not _json_eq(a, value)
    if op == "in":
        return any(_json_eq(a, v) for v in value)
    if op == "contains":
        return isinstance(a, str) and value.lower() in a.lower()
    if _kind(value) == "number":
        if _kind(a) != "number":
            return False
        return a > value if op == "gt" else a < value
    t = _attr_time(a)
    if t is None:
        return False
    return t > _instant(value, now) if op == "gt" else t < _instant(value, now)


# -- the generator --------------------------------------------------------------------------------

def _condition(rng: random.Random) -> dict[str, Any]:
    fld = rng.choice(["external_id", "name", "email", "anonymous", "first_seen_at", "last_seen_at",
                      "has_open_conversation", "device.platform", "device.model", "device.os_version",
                      "device.app_version", "device.sdk_version", "custom.plan", "custom.age", "custom.score",
                      "custom.vip", "custom.signup", "custom.tags", "custom.a.b", "custom.missing"])
    strings = {"external_id": ["user-1", "User-", "acct", "x3", "USER"], "name": [*NAMES[:-2], "ann", "BOB", "e"],
               "email": ["shared@acme.test", "acme", "EXAMPLE", "u1@acme.test"], "device.platform": PLATFORMS,
               "device.model": [*MODELS, "iphone", "pixel", "SM-"]}
    if fld in ("anonymous", "has_open_conversation"):
        return {"field": fld, "op": "eq", "value": rng.random() < 0.5}
    if fld.endswith("_seen_at"):
        op = rng.choice(["gt", "lt", "gt", "lt", "exists"])
        if op == "exists":
            return {"field": fld, "op": op, "value": rng.random() < 0.5}
        value: Any = rng.choice([{"days_ago": rng.choice(DAYS_AGO)}, rng.choice(DST_TIMES)])
        return {"field": fld, "op": op, "value": value}
    if fld.endswith("_version"):
        op = rng.choice(["eq", "neq", "gt", "lt", "exists"])
        value = rng.random() < 0.5 if op == "exists" else rng.choice(VERSIONS)
        return {"field": fld, "op": op, "value": value}
    if fld in strings:
        ops = ["eq", "neq", "in", "exists"] + ([] if fld == "device.platform" else ["contains"])
        op = rng.choice(ops)
        if op == "exists":
            value = rng.random() < 0.5
        elif op == "in":
            value = rng.sample(strings[fld], rng.randint(1, 3))
        else:
            value = rng.choice([v for v in strings[fld] if v or op != "contains"])
        return {"field": fld, "op": op, "value": value}
    op = rng.choice(["eq", "neq", "contains", "in", "gt", "lt", "exists"])
    scalars: list[Any] = [*PLANS, "pro", "30", "dotted", "a", 1, 0, 17, 18, 30, 30.5, 0.5, 2, 1000, -1, 10**20,
                          True, False, "true"]
    if op == "exists":
        value = rng.random() < 0.5
    elif op == "contains":
        value = rng.choice(["pro", "P", "ree", "a", "dot", "30", "2026-03"])
    elif op == "in":
        value = rng.sample(scalars, rng.randint(1, 4))
    elif op in ("gt", "lt"):
        value = rng.choice([rng.choice([0, 17, 18, 29.9, 30, 30.25, 1, 1.5, 10**19, -5]), rng.choice(DST_TIMES),
                            {"days_ago": rng.choice([0, 10, 200, 400])}])
    else:
        value = rng.choice(scalars)
    return {"field": fld, "op": op, "value": value}


def make_filter(rng: random.Random, depth: int = 1) -> dict[str, Any]:
    items: list[Any] = []
    for _ in range(rng.choice([0, 1, 1, 1, 2, 2, 3, 4]) if depth == 1 else rng.choice([0, 1, 2, 2, 3])):
        if depth < 4 and rng.random() < 0.3:
            items.append(make_filter(rng, depth + 1))
        else:
            items.append(_condition(rng))
    return {rng.choice(["all", "any"]): items}
