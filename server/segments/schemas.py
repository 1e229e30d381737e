"""What the segment routes take and answer (msgspec Structs)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from server.conversations.admin_schemas import AdminUser
from server.conversations.models import NO_NUL

SegmentName = Annotated[str, Meta(min_length=1, max_length=200, pattern=NO_NUL)]
# The tree is checked by server/segments/filters.py (parse_filter), which names the bad node in the
# 422's details.path; as JSON it is only "an object" here.
FilterJSON = Annotated[dict[str, Any], Meta(description=(
    'A group {"all": [...]} or {"any": [...]} of groups and conditions {"field", "op", "value"}: at most '
    "4 deep, 50 conditions and 50 groups. Fields and their ops: docs/broadcasts.md, Segments."))]


class NewSegment(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: SegmentName
    filter: FilterJSON


class SegmentPatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: SegmentName | msgspec.UnsetType = msgspec.UNSET
    filter: FilterJSON | msgspec.UnsetType = msgspec.UNSET


class PreviewRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    filter: FilterJSON


class Segment(msgspec.Struct, kw_only=True):
    id: str
    name: str
    filter: dict[str, Any]
    created_by: str | None  # the admin who created it (null once they are deleted)
    created_at: datetime
    updated_at: datetime


class SegmentList(msgspec.Struct, kw_only=True):
    segments: list[Segment]


class Preview(msgspec.Struct, kw_only=True):
    count: int  # users the filter selects now
    users: list[AdminUser]  # up to 20 of them, most recently seen first (as GET /admin/api/users shows them)


class Deleted(msgspec.Struct, kw_only=True):
    id: str
    deleted: bool = True
