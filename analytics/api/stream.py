"""`GET /api/v1/analytics/apps/{app_uuid}/stream`: the raw feed of stored events, newest first."""

from __future__ import annotations

import uuid

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from ingest.errors import ApiError

from ..stream import DEFAULT_LIMIT, MAX_LIMIT, stream_page_get
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
                "source", OpenApiTypes.STR, OpenApiParameter.QUERY, enum=["events", "sdk_events"], default="events"
            ),
            OpenApiParameter(
                "limit",
                {"type": "integer", "minimum": 1},
                OpenApiParameter.QUERY,
                description=f"Events per page, 1 to {MAX_LIMIT} (larger values are capped).",
                default=DEFAULT_LIMIT,
            ),
            _text("before", "The `next` cursor of the previous page."),
            _text("event", "Only this event name."),
            _text("customer_org_id", "Only this organization (`events` only)."),
            _text("environment", "Only this environment (`events` only)."),
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
    def get(self, request: Request, app_uuid: uuid.UUID) -> Response:
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
        page = stream_page_get(app=app, source=source, limit=limit, **text)  # type: ignore[arg-type]
        return Response(page)


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(
        status_code=400,
        code="validation_failed",
        message="The stream request failed validation.",
        details=[{"field": field, "message": message}],
    )
