"""Request and response Structs shared by the admin auth, team, API-key and account routes."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from server.auth.sessions import SessionTokens
from server.conversations.models import NO_NUL

# Every admin string refuses NUL (NO_NUL, or \x00 excluded from its own pattern): Postgres text
# cannot hold it, and a refusal at the edge is a 422 naming the field instead of a 500.
Email = Annotated[str, Meta(min_length=3, max_length=254, pattern=r"^[^@\s\x00]+@[^@\s\x00]+\.[^@\s\x00]+$")]
# Upper bound: Argon2 hashes any length, but megabyte passwords are only a way to burn CPU.
Password = Annotated[str, Meta(min_length=8, max_length=256, pattern=NO_NUL)]
# No minimum at sign-in: a wrong password should be a 401, not a hint about password rules.
LoginPassword = Annotated[str, Meta(max_length=256, pattern=NO_NUL)]
Name = Annotated[str, Meta(max_length=200, pattern=NO_NUL)]
AppName = Annotated[str, Meta(min_length=1, max_length=200, pattern=NO_NUL)]
OpaqueToken = Annotated[str, Meta(min_length=1, max_length=512, pattern=NO_NUL)]
RoleName = Annotated[str, Meta(min_length=1, max_length=50, pattern=NO_NUL)]


class Body(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of every admin request body: unknown fields are an error, not silently dropped."""


class AdminOut(msgspec.Struct, kw_only=True):
    id: str
    email: str
    name: str
    role: str


class AppOut(msgspec.Struct, kw_only=True):
    id: str
    name: str


class AuthSession(msgspec.Struct, kw_only=True):
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str
    admin: AdminOut
    app: AppOut


def session_body(tokens: SessionTokens) -> AuthSession:
    p = tokens.principal
    return AuthSession(access_token=tokens.access_token, refresh_token=tokens.refresh_token,
                       expires_in=tokens.expires_in, token_type="Bearer",
                       admin=AdminOut(id=str(p.admin_id), email=p.email, name=p.name, role=p.role),
                       app=AppOut(id=str(p.app_id), name=p.app_name))


class Ok(msgspec.Struct, kw_only=True):
    ok: bool = True


KeyKind = Literal["publishable", "secret"]
