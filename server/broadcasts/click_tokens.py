"""Signed click tokens: the button URL of a delivery names it without letting anyone forge another.

token = base64url(delivery_id) "." base64url(HMAC-SHA256(signing key, purpose + delivery_id)[:16]).
GET /v1/r/{token} verifies it and redirects to the broadcast's stored button_url.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

_PURPOSE = b"replyhq.broadcast-click:"
MAX_TOKEN_LENGTH = 200


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: str, delivery_id: str) -> bytes:
    return hmac.new(key.encode(), _PURPOSE + delivery_id.encode(), hashlib.sha256).digest()[:16]


def sign(key: str, delivery_id: str) -> str:
    return f"{_b64(delivery_id.encode())}.{_b64(_mac(key, delivery_id))}"


def verify(key: str, token: str) -> str | None:
    """The delivery id the token names, or None when it is malformed or not ours."""
    if len(token) > MAX_TOKEN_LENGTH or token.count(".") != 1:
        return None
    body, mac = token.split(".")
    try:
        delivery_id = _unb64(body).decode()
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    # Compared as text, in the one spelling sign() gives: base64 decoding is lenient (it skips
    # stray characters and ignores the unused bits of the last one), so bytes compared after
    # decoding would let several spellings of one token through.
    if body != _b64(delivery_id.encode()):
        return None
    return delivery_id if hmac.compare_digest(mac, _b64(_mac(key, delivery_id))) else None
