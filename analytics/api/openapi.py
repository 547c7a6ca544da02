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
