"""A filter as one SQL boolean expression over `end_users u`, its values as parameters, never in the text.

Semantics (what the tests' Python reference also says):
- `neq` is the complement of `eq`: a user without the value matches it (IS DISTINCT FROM).
- `contains` is a case-insensitive substring match; a missing value never contains anything.
- `gt`/`lt` on a missing value, or one of another type, is false.
- `{"days_ago": n}` is n * 24 hours before the statement's now(): instants, so DST never shifts it.
- versions compare part by part as numbers, trailing zero parts ignored (9.0 < 10.0, 17.4 == 17.4.0),
  by the migration's segment_version(); custom times parse with segment_attr_time() (UTC when naive).
- an empty `all` is every user, an empty `any` nobody.
"""

from __future__ import annotations

from typing import Any

import msgspec

from server.segments.filters import Condition, DaysAgo, Filter, Group, custom_name, parse_time

_json = msgspec.json.Encoder()

_COLUMNS = {
    "external_id": "u.external_id",
    "name": "u.name",
    "email": "u.email",
    "first_seen_at": "u.first_seen_at",
    "last_seen_at": "u.last_seen_at",
    "device.platform": "(u.metadata->'device'->>'platform')",
    "device.model": "(u.metadata->'device'->>'model')",
    "device.os_version": "(u.metadata->'device'->>'os_version')",
    "device.app_version": "(u.metadata->'device'->>'app_version')",
    "device.sdk_version": "(u.metadata->'device'->>'sdk_version')",
}
_OPEN_CONVERSATION = "EXISTS (SELECT 1 FROM conversations c WHERE c.user_id = u.id AND c.status = 'open')"


class _Params:
    def __init__(self, params: list[object]) -> None:
        self.params = params

    def add(self, value: object) -> str:
        self.params.append(value)
        return f"${len(self.params)}"


def compile_filter(f: Filter, params: list[object]) -> str:
    """The SQL condition; its values are appended to params ($n numbering continues after the caller's)."""
    return _group(f, _Params(params))


def _group(g: Group, p: _Params) -> str:
    if not g.items:
        return "TRUE" if g.kind == "all" else "FALSE"
    parts = [_group(i, p) if isinstance(i, Group) else _condition(i, p) for i in g.items]
    return "(" + (" AND " if g.kind == "all" else " OR ").join(parts) + ")"


def _condition(c: Condition, p: _Params) -> str:
    if c.field == "anonymous":
        return "u.external_id IS NULL" if c.value else "u.external_id IS NOT NULL"
    if c.field == "has_open_conversation":
        return _OPEN_CONVERSATION if c.value else f"NOT {_OPEN_CONVERSATION}"
    if c.field.startswith("custom."):
        return _custom(c, p)
    column = _COLUMNS[c.field]
    if c.op == "exists":
        return f"{column} IS NOT NULL" if c.value else f"{column} IS NULL"
    if c.field.endswith("_seen_at"):
        return f"{column} {'>' if c.op == 'gt' else '<'} {_instant(c.value, p)}"
    if c.field.startswith("device.") and c.field.endswith("_version"):
        return _version(column, c, p)
    return _string(column, c, p)


def _instant(value: Any, p: _Params) -> str:
    if isinstance(value, DaysAgo):
        return f"(now() - {p.add(value.days_ago)}::integer * interval '24 hours')"
    parsed = parse_time(value)
    assert parsed is not None  # parse_filter checked it
    # As text with its offset: Postgres takes instants (year 1 at +14:00 is 1 BC in UTC) asyncpg cannot encode.
    return f"{p.add(parsed.isoformat())}::text::timestamptz"


def _string(column: str, c: Condition, p: _Params) -> str:
    if c.op == "eq":
        return f"{column} = {p.add(c.value)}::text"
    if c.op == "neq":
        return f"{column} IS DISTINCT FROM {p.add(c.value)}::text"
    if c.op == "contains":
        return f"strpos(lower({column}), lower({p.add(c.value)}::text)) > 0"
    assert c.op == "in" and isinstance(c.value, tuple)
    return f"{column} = ANY({p.add(list(c.value))}::text[])"


def _version(column: str, c: Condition, p: _Params) -> str:
    mine, theirs = f"segment_version({column})", f"segment_version({p.add(c.value)}::text)"
    if c.op == "neq":
        return f"{mine} IS DISTINCT FROM {theirs}"
    return f"{mine} {dict(eq='=', gt='>', lt='<')[c.op]} {theirs}"


def _custom(c: Condition, p: _Params) -> str:
    key = p.add(custom_name(c.field))
    attr = f"(u.attributes->{key}::text)"
    if c.op == "exists":
        present = f"COALESCE(jsonb_typeof({attr}) <> 'null', false)"
        return present if c.value else f"NOT {present}"
    if c.op == "eq":
        return f"{attr} = {_jsonb(c.value, p)}"
    if c.op == "neq":
        return f"{attr} IS DISTINCT FROM {_jsonb(c.value, p)}"
    if c.op == "in":
        assert isinstance(c.value, tuple)
        return f"{attr} = ANY (SELECT jsonb_array_elements({_jsonb(list(c.value), p)}))"
    text = f"(u.attributes->>{key}::text)"
    if c.op == "contains":
        return f"(jsonb_typeof({attr}) = 'string' AND strpos(lower({text}), lower({p.add(c.value)}::text)) > 0)"
    sign = ">" if c.op == "gt" else "<"
    if isinstance(c.value, int | float) and not isinstance(c.value, bool):
        # CASE, not AND: only a number may reach the cast (AND does not fix the order of evaluation).
        number = p.add(_json.encode(c.value).decode())
        return f"(CASE WHEN jsonb_typeof({attr}) = 'number' THEN {attr}::numeric {sign} {number}::text::numeric " \
               f"ELSE false END)"
    return f"(CASE WHEN jsonb_typeof({attr}) = 'string' THEN COALESCE(segment_attr_time({text}) {sign} " \
           f"{_instant(c.value, p)}, false) ELSE false END)"


def _jsonb(value: object, p: _Params) -> str:
    # JSON text cast in SQL: works whatever jsonb codec the connection has.
    return f"{p.add(_json.encode(value).decode())}::text::jsonb"
