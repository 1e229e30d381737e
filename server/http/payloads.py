"""Decoding request bodies into msgspec Structs at the edge; encoders made once."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from sanic import Request

from server.errors import MalformedJSON, ValidationFailed, from_validation_error

T = TypeVar("T")
json_encoder = msgspec.json.Encoder()


def dumps(obj: Any, **_: Any) -> str:
    return json_encoder.encode(obj).decode()


def decode_body(request: Request, typ: type[T]) -> T:
    if not request.body:
        raise MalformedJSON("request body is empty; a JSON object was expected")
    try:
        return msgspec.json.decode(request.body, type=typ)
    except msgspec.DecodeError as err:
        raise from_validation_error(err) from None
    except RecursionError:  # past the decoder's depth, or a recursive check's (__post_init__) after it
        raise MalformedJSON("request body is nested too deeply", {"reason": "nested too deeply"}) from None


def convert(data: Any, typ: type[T]) -> T:
    """Validate an already-parsed object (a Socket.IO payload) into a Struct."""
    try:
        return msgspec.convert(data, typ)
    except msgspec.ValidationError as err:
        raise from_validation_error(err) from None
    except RecursionError:  # a payload just under the packet decoder's depth, checked recursively
        raise ValidationFailed("payload is nested too deeply", {"path": "$", "reason": "nested too deeply"}) from None
