"""What the SDK's messenger needs before anyone is identified: GET /v1/app/config (branding and the
workspace's name, with an ETag) and the logo at a public, content-addressed URL.

The config authenticates the API key only (either kind, no user headers) and counts against the
key's rate limit. Clients send the ETag back in If-None-Match and get a 304 while nothing changed;
`Cache-Control: no-cache` makes them ask each time, which a 304 keeps cheap.
"""

from __future__ import annotations

import hashlib
import re

import msgspec
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, raw

from server.context import context_of
from server.errors import NotFound
from server.http.openapi import Operation, document
from server.tenancy import branding
from server.tenancy.branding_routes import LauncherPosition, LogoOut
from server.users.sdk_auth import sdk_app

bp = Blueprint("sdk_app", url_prefix="/v1/app")
_SHA = re.compile(r"^[0-9a-f]{64}$")
_encode = msgspec.json.Encoder().encode


class AppInfo(msgspec.Struct, kw_only=True):
    id: str
    name: str


class BrandingConfig(msgspec.Struct, kw_only=True):
    color: str
    launcher_position: LauncherPosition
    greeting: str
    team_intro: str
    logo_url: str | None  # relative to the API base URL; null: no logo
    logo: LogoOut | None


class AppConfig(msgspec.Struct, kw_only=True):
    app: AppInfo
    branding: BrandingConfig


_IF_NONE_MATCH = ("If-None-Match", "header", "the ETag of the config the client has: 304 while it is current")
CONFIG = Operation(
    "GET", "/v1/app/config", "The messenger's branding and the workspace's name", "sdk", response=AppConfig,
    auth="api_key", params=(_IF_NONE_MATCH,), empty=(304,),
    extra={"description": "Needs only X-API-Key (no user headers). Answers with an ETag and "
                          "Cache-Control: no-cache; a matching If-None-Match gets 304 Not Modified."})
LOGO = Operation(
    "GET", "/v1/app/logo/{sha256}", "A workspace's logo (public, cacheable forever)", "sdk",
    params=(("sha256", "path", "the logo's SHA-256, as in the config's logo_url",
             {"type": "string", "pattern": "^[0-9a-f]{64}$"}),),
    errors=(404,), content_type="image/*",
    extra={"description": "image/png, image/jpeg or image/webp. The address changes with the content, so "
                          "it is served with Cache-Control: public, max-age=31536000, immutable; a replaced "
                          "logo's address answers 404."})
document(CONFIG, LOGO)


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    tags = [t.strip() for t in if_none_match.split(",")]
    return "*" in tags or any(t.removeprefix("W/") == etag for t in tags)


def config_of(b: branding.Branding) -> AppConfig:
    logo = LogoOut(url=b.logo.url, content_type=b.logo.content_type, width=b.logo.width,
                   height=b.logo.height) if b.logo else None
    return AppConfig(app=AppInfo(id=str(b.app_id), name=b.app_name), branding=BrandingConfig(
        color=b.color, launcher_position=b.launcher_position,
        greeting=b.greeting, team_intro=b.team_intro, logo_url=logo.url if logo else None, logo=logo))


@bp.get("/config")
async def app_config(request: Request) -> HTTPResponse:
    app_id = await sdk_app(request)
    body = _encode(config_of(await branding.get(context_of(request).pool, app_id)))
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {"etag": etag, "cache-control": "no-cache", "vary": "X-API-Key"}
    if _matches(request.headers.get("if-none-match"), etag):
        return HTTPResponse(status=304, headers=headers)
    return raw(body, status=CONFIG.status, headers=headers, content_type="application/json")


@bp.get("/logo/<sha256:str>")
async def app_logo(request: Request, sha256: str) -> HTTPResponse:
    found = await branding.logo_bytes(context_of(request).pool, sha256) if _SHA.match(sha256) else None
    if found is None:
        raise NotFound("no such logo", code="logo_not_found")
    content_type, data = found
    return raw(data, content_type=content_type, headers={
        "cache-control": "public, max-age=31536000, immutable", "etag": f'"{sha256}"',
        "x-content-type-options": "nosniff", "content-security-policy": "default-src 'none'"})
