"""Signed click tokens: `/v1/r/<token>` names a delivery ("<run_id>.<ord>") that only the server
could have named, so a click is recorded for the delivery the message was sent to and nobody can
forge a click (or a redirect) for another.

The token is `<delivery id, base64url>.<HMAC-SHA256 of it, first 16 bytes, base64url>`, keyed with
the server's signing key under a purpose label (the same key signs admin tokens: the label keeps a
token of one kind from ever verifying as the other).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

_PURPOSE = b"replyhq broadcast click v1\x00"
_MAC_BYTES = 16
_MAX_TOKEN = 200  # a delivery id is at most 36 + 1 + 19 characters


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: str, delivery_id: str) -> bytes:
    return hmac.new(key.encode(), _PURPOSE + delivery_id.encode(), hashlib.sha256).digest()[:_MAC_BYTES]


def sign(key: str, delivery_id: str) -> str:
    """A URL-safe token naming `delivery_id`."""
    return f"{_b64(delivery_id.encode())}.{_b64(_mac(key, delivery_id))}"


def verify(key: str, token: str) -> str | None:
    """The delivery id the token names, or None when it is malformed or not signed with `key`."""
    if len(token) > _MAX_TOKEN or token.count(".") != 1:
        return None
    body, mac = token.split(".")
    try:
        delivery_id = _unb64(body).decode()
        presented = _unb64(mac)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    if not hmac.compare_digest(presented, _mac(key, delivery_id)):
        return None
    return delivery_id
