"""Typed query-string parameters: a bad value is a 422 naming the parameter."""

from __future__ import annotations

from datetime import datetime

from sanic import Request

from server.errors import ValidationFailed


def int_param(request: Request, name: str, default: int | None, *, lo: int, hi: int) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = lo - 1
    if not lo <= value <= hi:
        raise ValidationFailed(f"query parameter {name} must be an integer from {lo} to {hi}",
                               {"path": f"?{name}", "value": raw[:50]}, code="invalid_query")
    return value


def text_param(request: Request, name: str, max_length: int) -> str | None:
    """A free-text parameter (search, tag): trimmed and cut to max_length; None when empty. A NUL
    character cannot be stored or searched for in Postgres text, so it is refused, not a 500."""
    raw = (request.args.get(name) or "").strip()[:max_length]
    if "\x00" in raw:
        raise ValidationFailed(f"query parameter {name} must not contain NUL characters",
                               {"path": f"?{name}"}, code="invalid_query")
    return raw or None


def time_param(request: Request, name: str) -> datetime | None:
    raw = request.args.get(name)
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        raise ValidationFailed(f"query parameter {name} must be an ISO 8601 timestamp with a zone",
                               {"path": f"?{name}", "value": raw[:50]}, code="invalid_query")
    return value
