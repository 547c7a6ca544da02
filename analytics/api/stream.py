"""`GET /api/v1/analytics/apps/{app_uuid}/stream`: the raw feed of stored events, newest first."""

from __future__ import annotations

import uuid

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.request import Request

from ingest.errors import ApiError

from ..stream import DEFAULT_LIMIT, MAX_LIMIT, stream_page_json
from .base import AnalyticsView
from .openapi import ERRORS_READ, error_response

_EXAMPLE = {
    "events": [
        {
            "event_id": "01937c2e-0c4a-7b1e-9a55-3f1c2d4e5f60",
            "event": "feature_used",
            "user_hash": "9f2c" + "0" * 60,
            "customer_org_id": "org_42",
            "path": "/settings/billing",
            "session_id": "5d0c6b7e-8f1a-4c2b-9d3e-4f5a6b7c8d9e",
            "session_inferred": False,
            "plan": "pro",
            "environment": "production",
            "occurred_at": "2026-11-25T10:00:00.123000Z",
            "received_at": "2026-11-25T10:00:00.250417Z",
            "properties": {"feature": "export"},
        }
    ],
    "next": "MjAyNi0xMS0yNVQxMDowMDowMC4yNTA0MTcrMDA6MDB8NDI",
}


# `source` and the filters that depend on it, as one exploded object (OpenAPI 3.0 has no conditional
# parameters): each branch lists what that source takes, so a request the document calls valid is one
# the view accepts.
_SOURCE_AND_ITS_FILTERS = {
    "anyOf": [
        {
            "type": "object",
            "title": "events",
            "properties": {
                "source": {"type": "string", "enum": ["events"], "default": "events"},
                "customer_org_id": {"type": "string", "description": "Only this organization."},
                "environment": {"type": "string", "description": "Only this environment."},
            },
        },
        {
            "type": "object",
            "title": "sdk_events",
            "required": ["source"],
            "properties": {
                "source": {"type": "string", "enum": ["sdk_events"]},
                # Empty is no filter (as for every parameter here); any value is a 400.
                "customer_org_id": {"type": "string", "maxLength": 0, "description": "Not a filter of sdk_events."},
                "environment": {"type": "string", "maxLength": 0, "description": "Not a filter of sdk_events."},
            },
        },
    ]
}


def _text(name: str, description: str) -> OpenApiParameter:
    return OpenApiParameter(name, OpenApiTypes.STR, OpenApiParameter.QUERY, description=description)


class StreamView(AnalyticsView):
    @extend_schema(
        operation_id="analytics_stream",
        summary="Event stream: stored events, newest first",
        description=(
            "Every stored field of each event, newest first by receive time (then id), read from "
            "PostgreSQL: an event is here as soon as its 2xx has been sent. Follow `next` (as `before`) "
            "to page back: no gaps or repeats while new events keep arriving. SDK events without "
            "analytics consent are never shown. Filters of `sdk_events`: `event` (event_name) and "
            "`user` (user_id or anon_id)."
        ),
        tags=["Analytics"],
        parameters=[
            OpenApiParameter(
                "source",
                _SOURCE_AND_ITS_FILTERS,
                OpenApiParameter.QUERY,
                style="form",
                explode=True,
                description=(
                    "`source` (`events`, the default, or `sdk_events`) and the filters only `events` has: "
                    "`customer_org_id` and `environment` (each member is its own query parameter, e.g. "
                    "`?source=events&environment=staging`). Either filter with `source=sdk_events` is a 400."
                ),
            ),
            OpenApiParameter(
                "limit",
                {"type": "integer", "minimum": 1},
                OpenApiParameter.QUERY,
                description=f"Events per page, 1 to {MAX_LIMIT} (larger values are capped).",
                default=DEFAULT_LIMIT,
            ),
            OpenApiParameter(
                "before",
                {"type": "string", "pattern": "^[A-Za-z0-9_-]*$", "maxLength": 2048},
                OpenApiParameter.QUERY,
                description=(
                    "The `next` cursor of the previous page, exactly as given (base64url; empty: the first "
                    "page); any other value is a 400."
                ),
            ),
            _text("event", "Only this event name."),
            _text("user", "Only this user: `user_hash` for `events`, `user_id` or `anon_id` for `sdk_events`."),
        ],
        responses={
            200: OpenApiResponse(
                OpenApiTypes.OBJECT,
                description="One page of events and the cursor of the next (null at the end).",
                examples=[OpenApiExample("page", value=_EXAMPLE, response_only=True, status_codes=["200"])],
            ),
            400: error_response(400, "validation_failed", "A parameter is invalid; `details` names it."),
            **ERRORS_READ,
        },
    )
    def get(self, request: Request, app_uuid: uuid.UUID) -> HttpResponse:
        app = self.application(request, app_uuid)
        params = request.query_params
        source = params.get("source", "events")
        if source not in ("events", "sdk_events"):
            raise _invalid("source", "Must be events or sdk_events.")
        try:
            limit = int(params.get("limit", DEFAULT_LIMIT))
        except ValueError:
            raise _invalid("limit", f"Must be an integer from 1 to {MAX_LIMIT}.") from None
        if limit < 1:
            raise _invalid("limit", f"Must be an integer from 1 to {MAX_LIMIT}.")
        text = {}
        for name in ("before", "event", "customer_org_id", "environment", "user"):
            value = params.get(name)
            if value is not None and ("\x00" in value or len(value) > 2048):
                raise _invalid(name, "Too long or not text.")
            text[name] = value or None
        # PostgreSQL writes each event's JSON; the page is assembled around it, not re-rendered by DRF.
        page = stream_page_json(app=app, source=source, limit=limit, **text)
        return HttpResponse(page, content_type="application/json")


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(
        status_code=400,
        code="validation_failed",
        message="The stream request failed validation.",
        details=[{"field": field, "message": message}],
    )
