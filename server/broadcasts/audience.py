"""A broadcast's audience as a SQL condition on `end_users u`: its segment's filter, or its own."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from server.segments.compile import compile_filter
from server.segments.filters import parse_filter


class AudienceGone(Exception):
    """The audience cannot be read any more (its segment was deleted, or its filter is invalid)."""


def compile_audience(filter_: Any, params: list[Any]) -> str:
    """The filter's SQL condition; its values are appended to `params` (never formatted in)."""
    try:
        return compile_filter(parse_filter(filter_), params)
    except Exception as exc:  # a stored filter that no longer validates
        raise AudienceGone(f"the audience filter is invalid: {exc}") from None


async def audience_filter(conn: asyncpg.Connection, app_id: UUID, audience: dict[str, Any]) -> Any:
    """The filter tree of the audience (a segment's is read now, at snapshot time)."""
    if "filter" in audience and audience["filter"] is not None:
        return audience["filter"]
    segment_id = audience.get("segment_id")
    if segment_id is None:
        raise AudienceGone("the broadcast has no audience")
    try:
        sid = UUID(str(segment_id))
    except ValueError:
        raise AudienceGone("the audience's segment id is not valid") from None
    found = await conn.fetchval("SELECT filter FROM segments WHERE id = $1 AND app_id = $2", sid, app_id)
    if found is None:
        raise AudienceGone("the audience's segment was deleted")
    return found
