"""POST /v1/events: one signed, organization-scoped event from a customer's backend.

The order of checks is the contract: method, content type and size (IngestView), then the app
and the HMAC over the raw body (before any byte of it is parsed), then the rate limit, then the
body. The answer is rendered with orjson directly: DRF's renderer is measurable on this path.
"""

import time
from datetime import UTC, datetime
from typing import cast

import orjson
from django.conf import settings
from django.core.validators import RegexValidator
from django.http import HttpResponse
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import serializers
from rest_framework.request import Request

from apps_registry.selectors import AppCredentials

from ..authentication import HmacSignatureAuthentication
from ..schemas import v1 as schema
from ..services.v1_events import v1_event_ingest
from ..throttling import ApplicationRateThrottle
from .base import IngestView
from .sdk_openapi import NullablePropertiesField


class HmacSignatureScheme(OpenApiAuthenticationExtension):
    """Documents the HMAC scheme so the OpenAPI document names it instead of warning."""

    target_class = "ingest.authentication.HmacSignatureAuthentication"
    name = "hmacSignature"

    def get_security_definition(self, auto_schema: AutoSchema) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "x-signature",
            "description": "Lowercase hex HMAC-SHA256(api_secret, raw_body); `x-app-uuid` names the application.",
        }


_ERROR = inline_serializer(
    name="V1Error",
    fields={
        "error": serializers.CharField(),
        "message": serializers.CharField(),
        "details": serializers.ListField(
            child=inline_serializer(
                name="V1FieldError", fields={"field": serializers.CharField(), "message": serializers.CharField()}
            ),
            required=False,
        ),
    },
)


@extend_schema_field(
    {
        "anyOf": [
            {"type": "string", "minLength": 1, "maxLength": schema.CUSTOMER_ORG_ID_MAX},
            {"type": "number", "description": "Coerced to a string (at most 255 characters once written out)."},
        ]
    }
)
class _OrgIdField(serializers.CharField):
    """`customer_org_id`: a string, or a number the API writes out as one (documentation only)."""


_EVENT = inline_serializer(
    name="V1Event",
    fields={
        "event": serializers.CharField(min_length=1, max_length=schema.EVENT_MAX),
        "user_hash": serializers.CharField(
            min_length=schema.USER_HASH_LENGTH,
            max_length=schema.USER_HASH_LENGTH,
            help_text="Pseudonymous SHA-256 hex of the user.",
        ),
        "customer_org_id": _OrgIdField(help_text="A number is coerced to a string."),
        "path": serializers.CharField(
            required=False,
            allow_null=True,
            max_length=schema.PATH_MAX,
            validators=[RegexValidator("^/")],
            help_text="Starts with /.",
        ),
        "session_id": serializers.UUIDField(
            required=False, allow_null=True, help_text="Inferred from (app, org, user, 30-minute bucket) when absent."
        ),
        "plan": serializers.CharField(required=False, allow_null=True, max_length=schema.PLAN_MAX),
        "environment": serializers.CharField(required=False, allow_null=True, max_length=schema.ENVIRONMENT_MAX),
        "ts_epoch": serializers.IntegerField(
            required=False,
            allow_null=True,
            min_value=0,
            help_text="Unix seconds; at most a year (366 days) after the request arrives. Default: receive time.",
        ),
        "properties": NullablePropertiesField(required=False, allow_null=True),
    },
)

_ACCEPTED = inline_serializer(
    name="V1Accepted",
    fields={"status": serializers.CharField(default="accepted"), "event_id": serializers.UUIDField()},
)


def _error(description: str) -> OpenApiResponse:
    return OpenApiResponse(response=_ERROR, description=description)


_RESPONSES = {
    202: OpenApiResponse(response=_ACCEPTED, description="Stored durably; `event_id` is the server-assigned id."),
    400: _error("Invalid JSON, not one object, or field errors (every offending field is listed in `details`)."),
    401: _error("Missing or wrong `x-signature` (`Invalid signature`)."),
    404: _error("Unknown, inactive or unparseable `x-app-uuid` (`Unknown app_uuid`)."),
    405: _error("Only POST is allowed."),
    413: _error(f"Body larger than {settings.INGEST_V1_MAX_BODY_BYTES} bytes."),
    415: _error("Content-Type is not application/json."),
    429: _error("Rate limited for this application; retry after `Retry-After` seconds."),
    503: _error("Could not be stored; retry with exponential backoff and jitter."),
}

_PARAMETERS = [
    OpenApiParameter("x-app-uuid", OpenApiTypes.UUID, OpenApiParameter.HEADER, required=True),
    OpenApiParameter(
        "x-signature",
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        required=True,
        description="Lowercase hex HMAC-SHA256(api_secret, raw_body) over the exact bytes sent.",
    ),
    OpenApiParameter(
        "Idempotency-Key",
        {"type": "string", "minLength": 1, "maxLength": schema.IDEMPOTENCY_KEY_MAX, "pattern": "^[\\x20-\\x7E]+$"},
        OpenApiParameter.HEADER,
        required=False,
        description="A repeat with the same key within 24 h returns the original answer and stores nothing.",
    ),
]


class V1EventsView(IngestView):
    http_method_names = ["post"]  # no OPTIONS metadata: a server-to-server API answers 405 to anything else
    authentication_classes = [HmacSignatureAuthentication]
    throttle_classes = [ApplicationRateThrottle]
    max_body_bytes = settings.INGEST_V1_MAX_BODY_BYTES

    @extend_schema(
        operation_id="v1_events_create",
        summary="Send one signed event",
        request={"application/json": _EVENT},
        responses=_RESPONSES,
        parameters=_PARAMETERS,
        examples=[
            OpenApiExample(
                "page view",
                request_only=True,
                value={
                    "event": "page_view",
                    "user_hash": "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8",
                    "customer_org_id": "org_42",
                    "path": "/dashboard",
                },
            )
        ],
    )
    def post(self, request: Request) -> HttpResponse:
        received = time.time()
        key = schema.idempotency_key_check(request.META.get("HTTP_IDEMPOTENCY_KEY"))
        event = schema.v1_event_parse(request._request.body, now=received)
        result = v1_event_ingest(
            credentials=cast(AppCredentials, request.auth),  # set by HmacSignatureAuthentication
            event=event,
            received_at=datetime.fromtimestamp(received, tz=UTC),
            idempotency_key=key,
        )
        response = HttpResponse(
            orjson.dumps({"status": "accepted", "event_id": str(result.event_id)}),
            status=202,
            content_type="application/json",
        )
        if result.replayed:
            response["Idempotent-Replayed"] = "true"
        return response
