"""Verifying a ReplyHQ webhook on the receiving side (Standard Webhooks).

    from loadtests.sdk_client import verify_webhook, WebhookVerificationError

    event = verify_webhook(secret, request.headers, raw_body)   # {"type", "timestamp", "data"}

`headers` is any mapping (case-insensitive lookups are done here); `body` the raw bytes as received,
before any JSON parsing. Raises WebhookVerificationError when a header is missing, the timestamp
is more than `tolerance` seconds (5 minutes) away from now (a replay), or no `v1` signature in
`webhook-signature` matches (during a secret rotation it carries two, space-separated).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any


class WebhookVerificationError(Exception):
    pass


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    raise WebhookVerificationError(f"missing header {name}")


def verify_webhook(secret: str, headers: Mapping[str, str], body: bytes | str, tolerance: int = 300,
                   now: float | None = None) -> dict[str, Any]:
    """The parsed body of a genuine, fresh webhook; WebhookVerificationError otherwise."""
    raw = body.encode() if isinstance(body, str) else body
    msg_id = _header(headers, "webhook-id")
    stamp = _header(headers, "webhook-timestamp")
    signatures = _header(headers, "webhook-signature")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not a number") from None
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        raise WebhookVerificationError("webhook-timestamp is too far from now (a replay, or a skewed clock)")
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = base64.b64encode(
        hmac.new(key, f"{msg_id}.{timestamp}.".encode() + raw, hashlib.sha256).digest()).decode()
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            parsed: dict[str, Any] = json.loads(raw)
            return parsed
    raise WebhookVerificationError("no signature matches")
