"""Typed errors and the one place they become HTTP / Socket.IO error bodies."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from sanic import Request, Sanic
from sanic.exceptions import SanicException
from sanic.response import HTTPResponse, json

from server.platform.storage_errors import storage_unavailable

log = logging.getLogger("replyhq.errors")


class ApiError(Exception):
    status = 400
    code = "bad_request"
    headers: dict[str, str] = {}  # extra response headers (Retry-After on 429)

    def __init__(self, message: str, details: Any = None, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if code:
            self.code = code

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message, self.details)


class ValidationFailed(ApiError):
    status = 422
    code = "validation_error"


class MalformedJSON(ApiError):
    status = 400
    code = "malformed_json"


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"


class Forbidden(ApiError):
    status = 403
    code = "forbidden"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class Conflict(ApiError):
    status = 409
    code = "conflict"


class PayloadTooLarge(ApiError):
    status = 413
    code = "payload_too_large"


class RateLimited(ApiError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, details: Any = None, *, code: str | None = None,
                 retry_after: int | None = None) -> None:
        super().__init__(message, details, code=code)
        if retry_after is not None:
            self.headers = {"retry-after": str(retry_after)}


class ServiceUnavailable(ApiError):
    status = 503
    code = "unavailable"
    headers = {"retry-after": "1"}  # a moment's outage (a restart, a failover): retry soon


def storage_error() -> ServiceUnavailable:
    """What a request that found Postgres or Redis out of reach is answered: the same as the
    message path's (`storage`), to retry."""
    return ServiceUnavailable("storage unavailable; retry", code="storage")


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


def from_validation_error(err: msgspec.DecodeError) -> ApiError:
    """msgspec already names the path of a bad field: pass it on as details."""
    text = str(err)
    if isinstance(err, msgspec.ValidationError):
        path = text.split(" - at `", 1)[1].rstrip("`") if " - at `" in text else "$"
        return ValidationFailed("request body failed validation", {"path": path, "reason": text})
    return MalformedJSON("request body is not valid JSON", {"reason": text})


_SANIC_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large",
                400: "bad_request", 408: "request_timeout", 503: "unavailable", 401: "unauthorized",
                403: "forbidden", 416: "range_not_satisfiable"}


def install_error_handlers(app: Sanic) -> None:
    @app.exception(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> HTTPResponse:
        return json(exc.body(), status=exc.status, headers=exc.headers or None)

    @app.exception(msgspec.DecodeError)
    async def _decode_error(request: Request, exc: msgspec.DecodeError) -> HTTPResponse:
        api = from_validation_error(exc)
        return json(api.body(), status=api.status)

    @app.exception(SanicException)
    async def _sanic_error(request: Request, exc: SanicException) -> HTTPResponse:
        status = int(getattr(exc, "status_code", 500) or 500)
        if status >= 500:
            log.error("server error", exc_info=exc)
            return json(error_body("internal", "internal server error"), status=status)
        return json(error_body(_SANIC_CODES.get(status, "bad_request"), str(exc)), status=status)

    @app.exception(Exception)
    async def _unexpected(request: Request, exc: Exception) -> HTTPResponse:
        if storage_unavailable(exc):  # Postgres or Redis restarting: nothing is wrong with the request
            log.warning("storage unavailable on %s %s: %r", request.method, request.path, exc)
            return await _api_error(request, storage_error())
        log.exception("unhandled error on %s %s", request.method, request.path)
        return json(error_body("internal", "internal server error"), status=500)
