"""Helpers for the admin inbox tests: an agent's token, SDK users starting conversations."""

from __future__ import annotations

import uuid
from typing import Any

from server.tenancy.workspaces import NewWorkspace
from tests.admin_helpers import PASSWORD, call, invite_and_join
from tests.support import ServerProcess, http

DEVICE = {"platform": "ios", "model": "iPhone15,2", "os_version": "17.4", "app_version": "3.2.1",
          "sdk_version": "1.0.0"}


def owner_token(server: ServerProcess, ws: NewWorkspace) -> str:
    status, body = http("POST", server.url + "/admin/auth/login", {"email": ws.email, "password": PASSWORD})
    assert status == 200, body
    return str(body["access_token"])


def teammate(server: ServerProcess, owner: str, role: str) -> dict[str, Any]:
    return invite_and_join(server, owner, role, email=f"{role}-{uuid.uuid4().hex[:8]}@acme.test")


def sdk_headers(ws: NewWorkspace, user_id: str) -> dict[str, str]:
    return {"X-API-Key": ws.publishable_key, "X-User-Id": user_id}


def identify(server: ServerProcess, ws: NewWorkspace, user_id: str, **fields: Any) -> dict[str, Any]:
    status, user = http("POST", server.url + "/v1/users/identify", {"user_id": user_id, **fields},
                        headers={"X-API-Key": ws.publishable_key})
    assert status == 200, user
    return dict(user)


def start_conversation(server: ServerProcess, ws: NewWorkspace, user_id: str, body: str = "hello",
                       subject: str | None = "Help") -> dict[str, Any]:
    status, created = http("POST", server.url + "/v1/conversations",
                           {"subject": subject, "message": {"client_id": uuid.uuid4().hex, "body": body}},
                           headers=sdk_headers(ws, user_id))
    assert status == 201, created
    return dict(created["conversation"])


def reply(server: ServerProcess, token: str, conversation_id: str, body: str, kind: str = "messages"
          ) -> tuple[int, Any]:
    return call(server, "POST", f"/admin/api/conversations/{conversation_id}/{kind}", token,
                {"client_id": uuid.uuid4().hex, "body": body})
