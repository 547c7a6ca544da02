"""`POST .../funnel`, `GET .../funnel/dropoff` and `POST .../retention`: funnels and retention."""

from __future__ import annotations

import json
import uuid

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response

from ingest.errors import ApiError

from ..query.funnel import funnel_dropoff, funnel_run
from ..query.retention import retention_run
from ..query.sequence_schema import funnel_request_schema, retention_request_schema
from .base import AnalyticsView
from .openapi import ERRORS_READ, error_response

_ENGINE_ERRORS = {
    **ERRORS_READ,
    502: error_response(502, "engine_error", "BigQuery could not run the query."),
    503: error_response(503, "engine_unavailable", "The configured engine is unavailable."),
    504: error_response(504, "query_timeout", "The query ran longer than ANALYTICS_QUERY_TIMEOUT."),
}

FUNNEL_EXAMPLE = {
    "source": "sdk_events",
    "steps": [
        {"event": "paywall_view"},
        {"event": "purchase_started"},
        {"event": "purchase_completed", "filters": [{"field": "platform", "op": "eq", "value": "ios"}]},
    ],
    "window_seconds": 86400,
    "count_by": "users",
    "from": "2026-11-01T00:00:00Z",
    "to": "2026-12-01T00:00:00Z",
    "breakdown": "country",
}
_FUNNEL_DESCRIPTION = """
Where users (or organizations) drop out of a sequence of 2 to 10 events.

- `steps`: each `{"event", "filters"}` (the explorer's filter syntax, on that step's rows).
- `window_seconds` (60 to 7,776,000; default 86,400): the most time from step 1 to the last step reached.
- `count_by`: `users` (default) or `orgs` (`events` only). `from`/`to`: half-open, on step 1's time, at most 400 days.
- `breakdown`: one explorer field, read from step 1's row; the 25 largest groups, the rest as `other`.

**Semantics.** An entity reaches step k when it has events matching steps 1..k at times
t1 ≤ t2 ≤ … ≤ tk with tk - t1 ≤ window and t1 in the range; equal timestamps count as in order; each
entity counts once per step however many attempts it made, for the furthest step any attempt
reached (its times and breakdown value come from the earliest such attempt).
Conversions are fractions 0 to 1; `median_seconds` (of entities that reached the step, from the
previous step) is null for step 1. Past `ANALYTICS_QUERY_TIMEOUT`: 504.
"""


def _bad(field: str, message: str) -> ApiError:
    return ApiError(
        status_code=400,
        code="validation_failed",
        message="The query failed validation.",
        details=[{"field": field, "message": message}],
    )


class FunnelView(AnalyticsView):
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="analytics_funnel",
        summary="Funnel: conversion through a sequence of events",
        description=_FUNNEL_DESCRIPTION,
        tags=["Analytics"],
        request={"application/json": funnel_request_schema()},
        examples=[OpenApiExample("paywall to purchase", value=FUNNEL_EXAMPLE, request_only=True)],
        responses={
            200: OpenApiResponse(OpenApiTypes.OBJECT, description="`steps`, `breakdown`, `engine`, `took_ms`."),
            400: error_response(400, "validation_failed", "Each detail names the offending member."),
            **_ENGINE_ERRORS,
        },
    )
    def post(self, request: Request, app_uuid: uuid.UUID) -> Response:
        app = self.application(request, app_uuid)
        return Response(funnel_run(app=app, query=request.data))


class FunnelDropoffView(AnalyticsView):
    @extend_schema(
        operation_id="analytics_funnel_dropoff",
        summary="Funnel drop-off: who reached step k - 1 but not step k",
        description=(
            "`query`: the funnel (the body of `POST .../funnel`) as JSON text; `step`: 2 to the number of "
            "steps. Up to 1,000 entities (user or org ids, in byte order), each with the stream link "
            "filtered to it on the pages; `truncated` says more existed."
        ),
        tags=["Analytics"],
        parameters=[
            OpenApiParameter("query", OpenApiTypes.STR, required=True, description="The funnel query, JSON."),
            OpenApiParameter(
                "step",
                {"type": "integer", "minimum": 2, "maximum": 10},
                required=True,
                description="2 to the number of steps.",
            ),
        ],
        responses={
            200: OpenApiResponse(OpenApiTypes.OBJECT, description="`step`, `entities`, `truncated`."),
            400: error_response(400, "validation_failed", "Each detail names the offending member."),
            **_ENGINE_ERRORS,
        },
    )
    def get(self, request: Request, app_uuid: uuid.UUID) -> Response:
        app = self.application(request, app_uuid)
        text = request.query_params.get("query")
        if text is None:
            raise _bad("query", "Required: the funnel query as JSON text.")
        try:
            query = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise _bad("query", "Must be JSON text.") from exc
        step = request.query_params.get("step")
        if step is None:
            raise _bad("step", "Required.")
        return Response(funnel_dropoff(app=app, query=query, step=step))


class RetentionView(AnalyticsView):
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="analytics_retention",
        summary="Retention: cohorts by first start event, returns per period",
        description=(
            "An entity's cohort is the period (UTC `day`, `week` from Monday, `month`) of its first "
            "`start_event` in [`from`, `to`); it is retained in period n ≥ 1 when it has a "
            "`return_event` in that period. `retained[i]` is period i + 1; `complete[i]` says whether "
            "that period has ended; `average` weighs complete periods only (null when none). "
            "`*` means any event. Past `ANALYTICS_QUERY_TIMEOUT`: 504."
        ),
        tags=["Analytics"],
        request={"application/json": retention_request_schema()},
        responses={
            200: OpenApiResponse(
                OpenApiTypes.OBJECT, description="`period`, `cohorts`, `average`, `engine`, `took_ms`."
            ),
            400: error_response(400, "validation_failed", "Each detail names the offending member."),
            **_ENGINE_ERRORS,
        },
    )
    def post(self, request: Request, app_uuid: uuid.UUID) -> Response:
        app = self.application(request, app_uuid)
        return Response(retention_run(app=app, query=request.data))


def dropoff_query_hook(result: dict, generator: object, request: object, public: bool) -> dict:
    """A drf-spectacular postprocessing hook: `query` of the drop-off is the funnel itself, as JSON
    (`content: application/json`), so clients and fuzzers know its shape rather than "a string"."""
    for item in result.get("paths", {}).values():
        operation = item.get("get") or {}
        if operation.get("operationId") != "analytics_funnel_dropoff":
            continue
        for parameter in operation.get("parameters", []):
            if parameter.get("name") == "query" and parameter.get("in") == "query":
                parameter.pop("schema", None)
                parameter["content"] = {"application/json": {"schema": funnel_request_schema()}}
    return result
