"""Admin access tokens: short-lived HS256 JWTs naming admin, app and role."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from uuid import UUID

import jwt

from server.errors import Unauthorized

_ALG = "HS256"
_AUDIENCE = "replyhq-admin"


@dataclass(frozen=True)
class AdminClaims:
    admin_id: UUID
    app_id: UUID
    role: str
    token_id: str
    expires_at: int
    session_id: UUID  # the refresh-token family (sign-in) the token was issued for


def issue_access_token(secret: str, *, admin_id: UUID, app_id: UUID, role: str, ttl: int,
                       session_id: UUID) -> tuple[str, int]:
    """`session_id` (claim `sess`) ties the token to a sign-in: once that session is signed out (or its
    refresh token is replayed), the access token stops working too, before it expires."""
    now = int(time.time())
    exp = now + ttl
    claims = {"sub": str(admin_id), "app": str(app_id), "role": role, "iat": now, "exp": exp,
              "aud": _AUDIENCE, "jti": uuid.uuid4().hex, "typ": "access", "sess": str(session_id)}
    token = jwt.encode(claims, secret, algorithm=_ALG)
    return token, exp


def decode_access_token(secret: str, token: str) -> AdminClaims:
    try:
        claims = jwt.decode(token, secret, algorithms=[_ALG], audience=_AUDIENCE,
                            options={"require": ["exp", "sub", "app", "role"]})
    except jwt.ExpiredSignatureError:
        raise Unauthorized("access token expired", code="token_expired") from None
    except jwt.PyJWTError:
        raise Unauthorized("invalid access token", code="invalid_token") from None
    if claims.get("typ") != "access":
        raise Unauthorized("not an access token", code="invalid_token")
    if "sess" not in claims:
        # Every token the server issues names its sign-in; one without could never be signed out.
        raise Unauthorized("access token names no session; sign in again", code="invalid_token")
    try:
        return AdminClaims(UUID(claims["sub"]), UUID(claims["app"]), str(claims["role"]),
                           str(claims.get("jti", "")), int(claims["exp"]), UUID(claims["sess"]))
    except (ValueError, TypeError, AttributeError):
        raise Unauthorized("invalid access token", code="invalid_token") from None
