"""Standard Webhooks signing (https://www.standardwebhooks.com).

Each endpoint has a secret `whsec_<base64 of 32 random bytes>`; the HMAC key is the decoded bytes.
Every attempt carries:

    webhook-id:        the delivery's message id, the same on every retry (deduplicate on it)
    webhook-timestamp: Unix seconds of this attempt (receivers refuse ones too far from now)
    webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">

For 24 h after a rotation the signature by the previous secret follows, space-separated, so a
receiver that still has the old secret keeps verifying while it is updated.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets

PREFIX = "whsec_"


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(PREFIX))


@functools.lru_cache(maxsize=4096)
def _mac(secret: str) -> hmac.HMAC:
    """The keyed HMAC state of a secret, made once: each signature copies it."""
    return hmac.new(_key(secret), digestmod=hashlib.sha256)


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    mac = _mac(secret).copy()
    mac.update(f"{msg_id}.{timestamp}.".encode())
    mac.update(body)
    return "v1," + base64.b64encode(mac.digest()).decode()


def headers(secrets_: list[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers of one attempt, signed by each secret given (current first)."""
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": " ".join(signature(s, msg_id, timestamp, body) for s in secrets_),
            "content-type": "application/json", "user-agent": "ReplyHQ-Webhooks/1"}


def header_lines(secrets_: list[str], msg_id: str, timestamp: int, body: bytes) -> bytes:
    """`headers` as HTTP/1.1 header lines (the sender's wire format)."""
    return "".join(f"{k}: {v}\r\n" for k, v in headers(secrets_, msg_id, timestamp, body).items()).encode()
