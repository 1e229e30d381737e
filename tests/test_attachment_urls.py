"""Attachment URLs are web URLs only: absolute http(s) with a host. Anything a dashboard could render
as a link that runs script (javascript:, data:, vbscript:, a scheme hidden behind whitespace) is a 422
naming the field, on every way an SDK sends a message (REST and socket, new conversation or reply),
and nothing is stored."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest

from loadtests.sdk_client import ReplyHQClient, ReplyHQError
from tests.support import ServerProcess, http

SCRIPT_URLS = ["javascript:alert(1)", "JavaScript:alert(document.cookie)", " javascript:alert(1)",
               "java\tscript:alert(1)", "data:text/html,<script>alert(1)</script>", "vbscript:msgbox(1)",
               "https://x.test/a\n", "//evil.test/a.png", "/uploads/a.png", "https:evil.test", "https://",
               "ftp://files.test/a.png", "https://:443/a.png"]
WEB_URLS = ["https://cdn.example.test/a%20b.png?size=2#top", "http://files.test", "HTTPS://Files.Test:8443/x",
            "https://[2001:db8::1]/a.png", "https://192.0.2.1/a.png"]


def _headers(key: str, user: str) -> dict[str, str]:
    return {"X-API-Key": key, "X-User-Id": user}


async def _counts(db: asyncpg.Pool) -> dict[str, int]:
    return {t: await db.fetchval(f"SELECT count(*) FROM {t}") for t in ("conversations", "messages")}


async def test_script_urls_are_refused_on_every_send_and_store_nothing(server: ServerProcess, workspace,
                                                                      db: asyncpg.Pool) -> None:
    user = f"u-{uuid.uuid4().hex[:8]}"
    h = _headers(workspace.publishable_key, user)
    status, created = http("POST", server.url + "/v1/conversations", {"subject": "files"}, headers=h)
    assert status == 201, created
    conv = created["conversation"]["id"]
    client = ReplyHQClient(server.url, workspace.publishable_key, user)
    await client.connect()
    try:
        before = await _counts(db)
        for url in SCRIPT_URLS:
            att = [{"url": url, "name": "a.png"}]
            sends: list[tuple[str, Any, str]] = [
                (f"/v1/conversations/{conv}/messages", {"client_id": "c", "body": "x", "attachments": att},
                 "$.attachments[0].url"),
                ("/v1/conversations", {"message": {"client_id": "c", "body": "x", "attachments": att}},
                 "$.message.attachments[0].url")]
            for path, body, where in sends:
                status, err = http("POST", server.url + path, body, headers=h)
                assert status == 422 and err["error"]["code"] == "validation_error", (url, path, err)
                assert err["error"]["details"]["path"] == where, err
            for event, payload, where in (
                    ("message:send", {"conversation_id": conv, "client_id": "c", "body": "x", "attachments": att},
                     "$.attachments[0].url"),
                    ("conversation:create", {"message": {"client_id": "c", "body": "x", "attachments": att}},
                     "$.message.attachments[0].url")):
                with pytest.raises(ReplyHQError) as refused:
                    await client.call(event, payload, retry=False)
                assert (refused.value.status, refused.value.code) == (422, "validation_error"), (url, event)
                assert refused.value.body["error"]["details"]["path"] == where
        assert await _counts(db) == before
        # web URLs are taken, and come back as sent
        for i, url in enumerate(WEB_URLS):
            ack = await client.call("message:send", {"conversation_id": conv, "client_id": f"ok-{i}", "body": "file",
                                                     "attachments": [{"url": url}]}, retry=False)
            assert ack["message"]["attachments"] == [{"url": url, "name": None, "content_type": None, "size": None}]
    finally:
        await client.close()
