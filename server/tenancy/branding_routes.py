"""Branding REST: the messenger's colour, launcher position, greeting, team intro and logo.

The logo is uploaded inside the JSON body as base64 (a `data:image/...;base64,` prefix is accepted
too, as a browser's FileReader makes it), and `"logo": null` removes it. Its type and size come from
its bytes (server/tenancy/images.py): PNG, JPEG or WebP, at most 256 KB and 4096 px a side; anything
else, a disguised file included, is a 422 and nothing is stored.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime
from typing import Annotated, Any

import msgspec
from msgspec import UNSET, Meta, UnsetType
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from server.auth.rbac import current_admin, requires
from server.auth.schemas import Body
from server.context import context_of
from server.conversations.models import NO_NUL
from server.errors import ValidationFailed
from server.http.openapi import Operation, document
from server.http.payloads import decode_body
from server.tenancy import branding, images
from server.tenancy.branding import LauncherPosition

bp = Blueprint("admin_branding", url_prefix="/admin/api/branding")

Color = Annotated[str, Meta(pattern=r"^#[0-9A-Fa-f]{6}$", description="#RRGGBB")]
Greeting = Annotated[str, Meta(max_length=280, pattern=NO_NUL)]
TeamIntro = Annotated[str, Meta(max_length=500, pattern=NO_NUL)]
# base64 of at most 256 KB is 349,528 characters; a little more is let through so that an oversized
# logo is named as such (422 logo_too_large) rather than as a long string.
LogoData = Annotated[str, Meta(min_length=1, max_length=400_000, pattern=NO_NUL,
                               description="base64 of a PNG, JPEG or WebP (≤ 256 KB), or a data: URL")]
_DATA_URL = re.compile(r"^data:[a-z0-9.+/-]{1,64};base64,", re.IGNORECASE)


class LogoOut(msgspec.Struct, kw_only=True):
    url: str  # relative to the API base URL: /v1/app/logo/{sha256}
    content_type: str
    width: int
    height: int


class BrandingOut(msgspec.Struct, kw_only=True):
    color: str
    launcher_position: LauncherPosition
    greeting: str
    team_intro: str
    logo: LogoOut | None
    updated_at: datetime | None = None  # null until the first change (the defaults apply)


class BrandingPatch(Body, kw_only=True):
    color: Color | None = None
    launcher_position: LauncherPosition | None = None
    greeting: Greeting | None = None
    team_intro: TeamIntro | None = None
    logo: LogoData | UnsetType | None = UNSET  # absent: keep; null: remove


document(
    Operation("GET", "/admin/api/branding", "The messenger's branding", "branding",
              response=BrandingOut, auth="admin_jwt", errors=(403,)),
    Operation("PATCH", "/admin/api/branding", "Change the messenger's colour, launcher, texts or logo", "branding",
              body=BrandingPatch, response=BrandingOut, auth="admin_jwt", errors=(403,),
              extra={"description": "logo: base64 (or a data: URL) of a PNG, JPEG or WebP of at most 256 KB "
                                    "and 4096 px a side, checked by content; null removes it. 422 codes: "
                                    "invalid_logo (not base64, or a header that does not parse), "
                                    "unsupported_image (not PNG/JPEG/WebP, e.g. a disguised file), "
                                    "logo_too_large, logo_dimensions."}),
)


def branding_out(b: branding.Branding) -> BrandingOut:
    logo = LogoOut(url=b.logo.url, content_type=b.logo.content_type, width=b.logo.width,
                   height=b.logo.height) if b.logo else None
    return BrandingOut(color=b.color, launcher_position=b.launcher_position,
                       greeting=b.greeting, team_intro=b.team_intro, logo=logo, updated_at=b.updated_at)


def decode_logo(value: str) -> tuple[bytes, images.ImageInfo]:
    encoded = _DATA_URL.sub("", value, count=1)
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationFailed("logo is not valid base64", {"path": "$.logo"}, code="invalid_logo") from None
    return data, images.inspect(data)


@bp.get("")
@requires("settings.read")
async def get_branding(request: Request) -> HTTPResponse:
    p = current_admin(request)
    return json(msgspec.to_builtins(branding_out(await branding.get(context_of(request).pool, p.app_id))))


@bp.patch("")
@requires("settings.write")
async def patch_branding(request: Request) -> HTTPResponse:
    body = decode_body(request, BrandingPatch)
    fields: dict[str, Any] = {"color": body.color.upper() if body.color else None,
                              "launcher_position": body.launcher_position, "greeting": body.greeting,
                              "team_intro": body.team_intro}
    if body.logo is not UNSET:
        fields["logo"] = None if body.logo is None else decode_logo(body.logo)  # every check before a write
    p = current_admin(request)
    b = await branding.apply(context_of(request).pool, p.app_id, p.admin_id, **fields)
    return json(msgspec.to_builtins(branding_out(b)))
