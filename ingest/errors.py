"""One error shape for the whole API and the one exception handler that produces it.

    {"error": "<code>", "message": "<human text>", "details": [{"field": ..., "message": ...}]}

A 5xx never carries internals: unexpected exceptions are logged and answered with a bare 500
(or 503 when the database is unreachable, so clients retry).
"""

import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response

logger = logging.getLogger(__name__)


class ApiError(exceptions.APIException):
    """An error with a machine code, a message and optional per-field details."""

    def __init__(
        self,
        *,
        status_code: int,
        code: str,
        message: str,
        details: list | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status_code = status_code
        self.code = code
        self.message = message
        self.details = details
        self.extra_headers = headers or {}
        super().__init__(detail=message, code=code)


def validation_failed(details: list[dict]) -> ApiError:
    return ApiError(status_code=400, code="validation_failed", message="The event failed validation.", details=details)


def bad_request(message: str, code: str = "bad_request") -> ApiError:
    return ApiError(status_code=400, code=code, message=message)


NESTED_TOO_DEEPLY = "nested too deeply"


def invalid_json(reason: str) -> ApiError:
    """A body that is not JSON, or nests deeper than a decoder holds (~1,000 levels): every JSON API's 400."""
    return bad_request(
        f"The body is not valid JSON ({reason}); NaN, Infinity and trailing commas are not allowed.",
        code="invalid_json",
    )


_DRF_CODES = {
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.AuthenticationFailed: "unauthorized",
    exceptions.NotAuthenticated: "unauthorized",
    exceptions.NotFound: "not_found",
    exceptions.PermissionDenied: "forbidden",
    exceptions.Throttled: "rate_limited",
    exceptions.ParseError: "bad_request",
}


UNAVAILABLE_MESSAGE = "The database is unavailable; retry with backoff."


def error_body(code: str, message: str, details: list | None = None) -> dict:
    body: dict[str, Any] = {"error": code, "message": message}
    if details is not None:
        body["details"] = details
    return body


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """DRF's hook: every error leaves through here in the same shape."""
    # Django's own 404/403 (e.g. DRF's `?format=` negotiation raises Http404) are client errors,
    # as DRF's default handler treats them, never a 500.
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, ApiError):
        response = Response(error_body(exc.code, exc.message, exc.details), status=exc.status_code)
        response.error_code = exc.code  # type: ignore[attr-defined]  # read by the metrics middleware
        for name, value in exc.extra_headers.items():
            response[name] = value
        return response
    if isinstance(exc, exceptions.APIException):
        code = next((c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)), "error")
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        response = Response(error_body(code, message), status=exc.status_code)
        response.error_code = code  # type: ignore[attr-defined]  # read by the metrics middleware
        # drf-stubs omit Throttled.wait (set in its __init__), hence the ignores.
        if isinstance(exc, exceptions.Throttled) and exc.wait is not None:  # type: ignore[attr-defined]
            response["Retry-After"] = str(max(1, int(exc.wait + 0.999)))  # type: ignore[attr-defined]
        if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
            response.status_code = status.HTTP_401_UNAUTHORIZED
        return response
    if isinstance(exc, OperationalError | InterfaceError | DatabaseError):
        logger.exception("database unavailable while handling %s", context["request"].path)
        # Ingest views say what was not done (the event was not stored); reads say only what failed.
        message = getattr(context.get("view"), "unavailable_message", UNAVAILABLE_MESSAGE)
        response = Response(error_body("unavailable", message), status=503)
        response["Retry-After"] = "5"
        return response
    logger.exception("unhandled error on %s", context["request"].path)
    return Response(error_body("internal_error", "Internal error; retry with backoff."), status=500)
