"""OpenAPI pieces shared by the analytics endpoints: the two ways to authenticate and the error answers."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse


class PersonalKeyScheme(OpenApiAuthenticationExtension):
    target_class = "analytics.authentication.PersonalKeyAuthentication"
    name = "PersonalApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A personal API key (`stp_...`): the request acts as the key's user.",
        }


def error_response(status: int, code: str, description: str, details: list | None = None) -> OpenApiResponse:
    body: dict[str, Any] = {"error": code, "message": description}
    if details is not None:
        body["details"] = details
    return OpenApiResponse(
        OpenApiTypes.OBJECT,
        description=description,
        examples=[OpenApiExample(code, value=body, response_only=True, status_codes=[str(status)])],
    )


ERRORS_READ = {
    401: error_response(401, "unauthorized", "No session and no valid personal API key."),
    404: error_response(404, "not_found", "Unknown application, or one the caller may not read."),
}


# --- The answers every analytics operation shares --------------------------------------------------
# Views document their own success bodies and their particular errors; this hook adds what the
# common machinery answers for all of them (authentication, the app lookup, content negotiation,
# parsing, the exception handler), so no view can forget one and a new view gets them for free.

ANALYTICS_PREFIX = "/api/v1/analytics/"
# A string that holds more than whitespace, in both regex dialects: the server trims with Python's
# `str.strip()`, for which `\x1c-\x1f\x85` are whitespace, and JSON Schema's `\s` (ECMA) leaves them out.
NOT_BLANK = r"[^\s\x1c-\x1f\x85]"
_METHODS = ("get", "put", "post", "delete", "patch")
_UNSAFE = ("put", "post", "delete", "patch")
_ERROR_SCHEMA = {"$ref": "#/components/schemas/ApiError"}

_COMMON_ERRORS: dict[int, tuple[str, str]] = {
    401: ("unauthorized", "No session and no valid personal API key (`Authorization: Bearer stp_...`)."),
    404: (
        "not_found",
        "Unknown application (another company's answers the same), unknown resource, or a `format` "
        "query parameter naming no format this endpoint renders.",
    ),
    405: ("method_not_allowed", "Method not allowed (authentication is checked first)."),
    406: ("not_acceptable", "`Accept` names no media type this endpoint renders."),
    503: ("unavailable", "The database is unreachable; retry with backoff."),
}
_WITH_PARAMETERS = {400: ("validation_failed", "A query parameter or the body is invalid; `details` names it.")}
_WITH_BODY = {415: ("unsupported_media_type", "The body is not `application/json`.")}
_WRITES = {
    403: (
        "forbidden",
        "Not allowed: a session request without its CSRF token, or a change only owners and admins may make; "
        "`application_inactive`: the application (or its company) is deactivated, its analytics read-only.",
    )
}
_READS = {
    504: (
        "query_timeout",
        "The read ran longer than ANALYTICS_QUERY_TIMEOUT (default 10 s) and was cancelled; narrow the window.",
    )
}


def analytics_errors_hook(result: dict, generator: object, request: object, public: bool) -> dict:
    """A drf-spectacular postprocessing hook (SPECTACULAR_SETTINGS): every analytics answer is documented.

    Adds the error answers the shared machinery gives (401, 404, 405, 406, 503; 400 where the
    operation takes parameters or a body; 403 for writes; 504 for reads; 415 where there is a body) unless the view
    documents them itself, and gives every error answer the one error shape (`ApiError`) as
    `application/json` only: errors are never rendered as CSV.
    """
    for path, item in result.get("paths", {}).items():
        if not path.startswith(ANALYTICS_PREFIX):
            continue
        for method, operation in item.items():
            if method in _METHODS:
                if "requestBody" in operation:
                    # Every analytics body is required (a raw schema in `extend_schema` leaves it optional).
                    operation["requestBody"]["required"] = True
                _document_errors(operation, method)
                if operation.get("operationId") not in _HAND_PARSED:
                    _empty_means_absent(operation)
    return result


# Parsed by hand rather than by `params.parse` (a DRF serializer, which reads `?to=` as no `to`).
_HAND_PARSED = {"analytics_stream", "analytics_query"}


def _empty_means_absent(operation: dict) -> None:
    for parameter in operation.get("parameters", []):
        if parameter.get("in") == "query" and not parameter.get("required"):
            parameter["allowEmptyValue"] = True


def _document_errors(operation: dict, method: str) -> None:
    errors = dict(_COMMON_ERRORS)
    has_query = any(parameter.get("in") == "query" for parameter in operation.get("parameters", []))
    if has_query or "requestBody" in operation:
        errors.update(_WITH_PARAMETERS)
    if "requestBody" in operation:
        errors.update(_WITH_BODY)
    if method in _UNSAFE:
        errors.update(_WRITES)
    if method == "get":
        errors.update(_READS)  # every read runs under the statement timeout (analytics/reads.py)
    responses = operation.setdefault("responses", {})
    for status, (code, text) in errors.items():
        responses.setdefault(
            str(status),
            {
                "description": text,
                "content": {"application/json": {"examples": {code: {"value": {"error": code, "message": text}}}}},
            },
        )
    for status, response in responses.items():
        if int(status) >= 400:
            _as_error_shape(response)
    operation["responses"] = dict(sorted(responses.items()))


def _as_error_shape(response: dict) -> None:
    """The error shape as JSON only, keeping the view's own description and examples."""
    examples = (response.get("content") or {}).get("application/json", {}).get("examples")
    response["content"] = {
        "application/json": {"schema": _ERROR_SCHEMA, **({"examples": examples} if examples else {})}
    }
    response.setdefault("description", "")
