"""The /v1 request's caller: API key + user id headers -> (SdkCaller, EndUser), counted against the
SDK rate limits."""

from __future__ import annotations

from uuid import UUID

from sanic import Request

from server.context import context_of
from server.conversations.models import EndUser
from server.http.openapi import Param
from server.http.sdk_limits import SdkRateLimited, note_verdicts, user_subject
from server.http.source_address import source_address
from server.users.identity import SdkCaller

_USER_ID = {"type": "string", "minLength": 1, "maxLength": 255}  # an empty or longer id is a 422
HEADER_PARAMS: tuple[Param, ...] = (
    ("X-User-Id", "header", "the app's own id of the user (or send X-Anonymous-Id)", _USER_ID),
    ("X-Anonymous-Id", "header", "SDK-generated id of a visitor not yet identified", _USER_ID),
    ("X-User-Hash", "header", "HMAC-SHA256(identity_secret, user id), hex; required when the app verifies identity"),
)


def sdk_scope(method: str, path: str) -> str:
    """The permission a secret key needs for a /v1 call: the user routes read or write users, the
    others read conversations or reply in them."""
    write = method not in ("GET", "HEAD", "OPTIONS")
    if path.startswith("/v1/users"):
        return "users.write" if write else "users.read"
    return "conversations.reply" if write else "conversations.read"


async def sdk_caller(request: Request, *, external_id: str | None = None,
                     anonymous_id: str | None = None) -> SdkCaller:
    """Authenticate the key and user named by headers (or, for identify, by the body)."""
    h = request.headers
    caller: SdkCaller = await context_of(request).sdk_identity.authenticate(
        h.get("x-api-key"),
        external_id=external_id if external_id is not None else h.get("x-user-id"),
        anonymous_id=anonymous_id if anonymous_id is not None else h.get("x-anonymous-id"),
        presented_hash=h.get("x-user-hash"), scope=sdk_scope(request.method, request.path),
        address=source_address(request))
    try:
        verdicts = context_of(request).sdk_limits.use(
            caller.key_id, user_subject(caller.app_id, caller.external_id, caller.anonymous_id))
    except SdkRateLimited as exc:
        note_verdicts(request, exc.verdicts)
        raise
    note_verdicts(request, verdicts)
    if caller.key_kind == "secret":
        context_of(request).usage.secret_call(caller.app_id)  # usage: secret-key API calls
    return caller


async def sdk_app(request: Request) -> UUID:
    """The app of the API key in X-API-Key, for routes about the app rather than a user (no user headers);
    counted against the key's rate limit only."""
    ctx = context_of(request)
    key = await ctx.sdk_identity.key(request.headers.get("x-api-key"), source_address(request))
    try:
        verdicts = ctx.sdk_limits.use_key(key.id)
    except SdkRateLimited as exc:
        note_verdicts(request, exc.verdicts)
        raise
    note_verdicts(request, verdicts)
    return key.app_id


async def sdk_user(request: Request) -> tuple[SdkCaller, EndUser]:
    caller = await sdk_caller(request)
    return caller, await context_of(request).sdk_identity.user(caller)
