"""The segment filter tree: its msgspec types, its validation from JSON, and its JSON form (the jsonb).

A filter is a group `{"all": [...]}` or `{"any": [...]}` whose items are groups or conditions
`{"field", "op", "value"}` (docs/broadcasts.md, "Segments"). parse_filter checks everything a
condition can get wrong and names the node in `details.path`, so compile.py only sees valid trees.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal, TypeAlias

import msgspec

from server.errors import ValidationFailed

MAX_DEPTH = 4  # the root group is depth 1
MAX_CONDITIONS = 50
MAX_GROUPS = 50  # the root included: empty groups would otherwise make a body's worth of SQL
MAX_IN_VALUES = 100
MAX_STRING = 1000
MAX_DAYS_AGO = 36_500
MAX_CUSTOM_NAME = 100  # an attribute key's own limit (server/conversations/requests.py Attributes)

Op = Literal["eq", "neq", "contains", "in", "exists", "gt", "lt"]
Kind = Literal["string", "bool", "time", "version", "custom"]
Scalar: TypeAlias = str | int | float | bool


class DaysAgo(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`{"days_ago": n}`: n * 24 hours before the moment the filter is evaluated."""
    days_ago: int


Value: TypeAlias = Scalar | DaysAgo | tuple[Scalar, ...]


class Condition(msgspec.Struct, frozen=True, kw_only=True):
    field: str
    op: Op
    value: Value


class Group(msgspec.Struct, frozen=True, kw_only=True):
    kind: Literal["all", "any"]
    items: tuple[Group | Condition, ...]


Filter: TypeAlias = Group

_STRING_OPS = frozenset({"eq", "neq", "contains", "in", "exists"})
# field -> (kind, ops it takes)
FIELDS: dict[str, tuple[Kind, frozenset[str]]] = {
    "external_id": ("string", _STRING_OPS),
    "name": ("string", _STRING_OPS),
    "email": ("string", _STRING_OPS),
    "anonymous": ("bool", frozenset({"eq"})),
    "first_seen_at": ("time", frozenset({"gt", "lt", "exists"})),
    "last_seen_at": ("time", frozenset({"gt", "lt", "exists"})),
    "has_open_conversation": ("bool", frozenset({"eq"})),
    "device.platform": ("string", frozenset({"eq", "neq", "in", "exists"})),
    "device.os_version": ("version", frozenset({"eq", "neq", "gt", "lt", "exists"})),
    "device.app_version": ("version", frozenset({"eq", "neq", "gt", "lt", "exists"})),
    "device.sdk_version": ("version", frozenset({"eq", "neq", "gt", "lt", "exists"})),
    "device.model": ("string", _STRING_OPS),
}
CUSTOM_PREFIX = "custom."
CUSTOM_OPS = frozenset({"eq", "neq", "contains", "in", "gt", "lt", "exists"})

# A version is numeric parts separated by dots ("17.4.1"); the SQL side reads stored values the same way.
VERSION_RE = re.compile(r"^[0-9]{1,18}(\.[0-9]{1,18}){0,15}$")
# ISO 8601 dates and date-times (offsets up to 14 hours, as the world has and Postgres takes), as the
# SQL side (segment_attr_time) recognises them in attributes.
ISO_TIME_RE = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?"
    r"(Z|[+-](0[0-9]|1[0-4])(:?[0-5][0-9])?)?)?$")


def field_kind(name: str) -> tuple[Kind, frozenset[str]] | None:
    if name in FIELDS:
        return FIELDS[name]
    custom = name[len(CUSTOM_PREFIX):] if name.startswith(CUSTOM_PREFIX) else None
    if custom and len(custom) <= MAX_CUSTOM_NAME and "\x00" not in custom:
        return "custom", CUSTOM_OPS
    return None


def parse_time(text: str) -> datetime | None:
    """An ISO 8601 date or date-time as an aware datetime (UTC when it names no offset), else None."""
    if not ISO_TIME_RE.match(text):
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.year < 1 or parsed.year > 9999:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def custom_name(field: str) -> str:
    return field[len(CUSTOM_PREFIX):]


# -- validation -----------------------------------------------------------------------------------

def _fail(path: str, reason: str) -> ValidationFailed:
    return ValidationFailed("filter failed validation", {"path": path, "reason": reason})


class _Budget:
    def __init__(self) -> None:
        self.conditions = 0
        self.groups = 0


def parse_filter(obj: object, path: str = "$.filter") -> Filter:
    """Validate JSON (already decoded) into a Filter; ValidationFailed names the bad node."""
    return _group(obj, path, 1, _Budget())


def _group(obj: object, path: str, depth: int, budget: _Budget) -> Group:
    if not isinstance(obj, dict):
        raise _fail(path, "a group must be an object: {\"all\": [...]} or {\"any\": [...]}")
    if depth > MAX_DEPTH:
        raise _fail(path, f"groups nest at most {MAX_DEPTH} deep")
    budget.groups += 1
    if budget.groups > MAX_GROUPS:
        raise _fail(path, f"a filter has at most {MAX_GROUPS} groups")
    for key in obj:
        if key not in ("all", "any"):
            raise _fail(f"{path}.{key}", "unknown key in a group: expected all or any")
    if len(obj) != 1:
        raise _fail(path, "a group has exactly one of all or any")
    kind: Literal["all", "any"] = "all" if "all" in obj else "any"
    items = obj[kind]
    path = f"{path}.{kind}"
    if not isinstance(items, list):
        raise _fail(path, "a group's items must be a list")
    out: list[Group | Condition] = []
    for index, item in enumerate(items):
        item_path = f"{path}[{index}]"
        if isinstance(item, dict) and ("all" in item or "any" in item):
            out.append(_group(item, item_path, depth + 1, budget))
        elif isinstance(item, dict):
            budget.conditions += 1
            if budget.conditions > MAX_CONDITIONS:
                raise _fail(item_path, f"a filter has at most {MAX_CONDITIONS} conditions")
            out.append(_condition(item, item_path))
        else:
            raise _fail(item_path, "an item must be a group or a condition object")
    return Group(kind=kind, items=tuple(out))


def _condition(obj: dict[str, Any], path: str) -> Condition:
    for key in obj:
        if key not in ("field", "op", "value"):
            raise _fail(f"{path}.{key}", "unknown key in a condition: expected field, op and value")
    for key in ("field", "op", "value"):
        if key not in obj:
            raise _fail(f"{path}.{key}", f"a condition needs {key}")
    field, op, value = obj["field"], obj["op"], obj["value"]
    spec = field_kind(field) if isinstance(field, str) else None
    if spec is None:
        raise _fail(f"{path}.field", "unknown field")
    kind, ops = spec
    if not isinstance(op, str) or op not in ops:
        raise _fail(f"{path}.op", f"{field} takes {', '.join(sorted(ops))}")
    checked = _value(kind, op, value, f"{path}.value")
    return Condition(field=field, op=op, value=checked)  # type: ignore[arg-type]  # op checked against ops


def _string(value: object, path: str, *, min_length: int = 0) -> str:
    if not isinstance(value, str):
        raise _fail(path, "expected a string")
    if not min_length <= len(value) <= MAX_STRING or "\x00" in value:
        raise _fail(path, f"expected a string of {min_length}..{MAX_STRING} characters without NUL")
    return value


def _bool(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(path, "expected true or false")
    return value


def _number(value: object, path: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float) or \
            (isinstance(value, float) and not math.isfinite(value)):
        raise _fail(path, "expected a number")
    return value


def _version(value: object, path: str) -> str:
    if not isinstance(value, str) or not VERSION_RE.match(value):
        raise _fail(path, "expected a version: numbers separated by dots, like 17.4.1")
    return value


def _time(value: object, path: str) -> str | DaysAgo:
    if isinstance(value, dict):
        if set(value) != {"days_ago"}:
            extra = next((k for k in value if k != "days_ago"), None)
            raise _fail(f"{path}.{extra}" if extra else path, "expected {\"days_ago\": n}")
        days = value["days_ago"]
        if isinstance(days, bool) or not isinstance(days, int) or not 0 <= days <= MAX_DAYS_AGO:
            raise _fail(f"{path}.days_ago", f"expected a whole number of days, 0..{MAX_DAYS_AGO}")
        return DaysAgo(days)
    if isinstance(value, str) and parse_time(value) is not None:
        return value
    raise _fail(path, "expected an ISO 8601 time or {\"days_ago\": n}")


def _scalar(value: object, path: str) -> Scalar:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return _number(value, path)
    return _string(value, path)


def _list(value: object, path: str, item: Callable[[object, str], Scalar]) -> tuple[Scalar, ...]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_IN_VALUES:
        raise _fail(path, f"expected a list of 1..{MAX_IN_VALUES} values")
    return tuple(item(v, f"{path}[{i}]") for i, v in enumerate(value))


def _value(kind: Kind, op: str, value: object, path: str) -> Value:
    if op == "exists":
        return _bool(value, path)
    if kind == "bool":
        return _bool(value, path)
    if kind == "string":
        if op == "in":
            return _list(value, path, _string)
        return _string(value, path, min_length=1 if op == "contains" else 0)
    if kind == "time":
        return _time(value, path)
    if kind == "version":
        return _version(value, path)
    # custom: the value's own type says how the attribute is compared
    if op == "in":
        return _list(value, path, _scalar)
    if op == "contains":
        return _string(value, path, min_length=1)
    if op in ("gt", "lt"):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return _number(value, path)
        if isinstance(value, str | dict):
            return _time(value, path)
        raise _fail(path, "gt and lt take a number, an ISO 8601 time or {\"days_ago\": n}")
    return _scalar(value, path)


# -- the JSON form --------------------------------------------------------------------------------

def filter_to_json(f: Filter) -> dict[str, Any]:
    """The filter as JSON (what segments.filter stores); parse_filter reads it back unchanged."""
    return {f.kind: [filter_to_json(i) if isinstance(i, Group) else _condition_json(i) for i in f.items]}


def _condition_json(c: Condition) -> dict[str, Any]:
    value: Any = c.value
    if isinstance(value, DaysAgo):
        value = {"days_ago": value.days_ago}
    elif isinstance(value, tuple):
        value = list(value)
    return {"field": c.field, "op": c.op, "value": value}


def conditions(f: Filter) -> list[Condition]:
    """Every condition of the tree, depth first."""
    out: list[Condition] = []
    for item in f.items:
        out.extend(conditions(item) if isinstance(item, Group) else [item])
    return out
