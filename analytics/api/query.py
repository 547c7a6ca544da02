"""`POST /api/v1/analytics/apps/{app_uuid}/query`: the Event explorer, as JSON or CSV."""

from __future__ import annotations

import uuid
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from saastracker.csvfile import csv_bytes

from ..query import query_run
from ..query.schema import query_request_schema
from .base import AnalyticsView
from .openapi import ERRORS_READ, error_response
from .parsers import JsonBodyParser


class CSVRenderer(BaseRenderer):
    """The result table as CSV: a header of `columns`, then one line per row (null is empty; text that a
    spreadsheet would run as a formula starts with `'`, see saastracker/csvfile.py)."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        return csv_bytes(data["columns"], data["rows"])


_REQUEST_EXAMPLE = {
    "source": "events",
    "measure": "users",
    "from": "2026-11-01T00:00:00Z",
    "to": "2026-11-08T00:00:00Z",
    "interval": "day",
    "group_by": ["event"],
    "filters": [{"field": "path", "op": "prefix", "value": "/settings"}],
    "limit": 1000,
}
_RESULT_EXAMPLE = {
    "columns": ["bucket", "event", "value"],
    "rows": [["2026-11-01T00:00:00Z", "page_view", 412], ["2026-11-01T00:00:00Z", "feature_used", 97]],
    "engine": "postgres",
    "truncated": False,
    "took_ms": 38,
}
_DESCRIPTION = """
One query language, run on PostgreSQL (`ANALYTICS_QUERY_ENGINE=postgres`, the default: raw rows still
within retention) or on the exported BigQuery tables (`bigquery`: full history), with the same answer.

- `source`: `events` or `sdk_events`. `measure`: `events` (count), `users` (distinct `user_hash`; on
  `sdk_events` distinct `user_id`, else `anon_id`), `orgs` (distinct `customer_org_id`; not on
  `sdk_events`), `sessions` (distinct `session_id`).
- `from`/`to`: ISO 8601 times with a timezone, half-open on the event time (`occurred_at`), at most 400 days.
- `interval`: null, `hour`, `day`, `week` (starting Monday) or `month`; UTC buckets. Buckets without
  events are not listed.
- `group_by`: at most 2 fields. Fields of `events`: event, customer_org_id, user_hash, path, environment,
  plan, session_id; of `sdk_events`: event_name, user_id, anon_id, platform, os, app_version,
  sdk_version, locale, country, bundle_version, session_id; and `properties.<key>` on both (scalar
  values, as text; keys are letters, digits and underscores).
- `filters`: at most 20 of `{field, op, value}`; ops `eq`, `neq` (also matches unset), `in`, `not_in`
  (also matches unset; 1 to 100 values), `prefix`, `contains` (text fields), `is_set`, `is_not_set` (no value).
- `limit`: rows, 1 to 10,000 (default 1,000); `truncated` says more rows existed.

Columns are `bucket` (when `interval` is set), the group fields, then `value`; rows are ordered by
bucket, then value descending (then the group values, nulls first). Send `Accept: text/csv` for the
same table as CSV (a text cell starting with `=`, `+`, `-`, `@`, tab or carriage return is written
with a leading `'`, so that no spreadsheet runs it as a formula). A query running longer than
`ANALYTICS_QUERY_TIMEOUT` (default 10 s) is cancelled and answered 504. Events without analytics
consent are never counted.
"""


class QueryView(AnalyticsView):
    parser_classes = [JsonBodyParser]
    renderer_classes = [JSONRenderer, CSVRenderer]

    @extend_schema(
        operation_id="analytics_query",
        summary="Event explorer: count events, users, orgs or sessions",
        description=_DESCRIPTION,
        tags=["Analytics"],
        request={"application/json": query_request_schema()},
        examples=[OpenApiExample("daily users by event", value=_REQUEST_EXAMPLE, request_only=True)],
        responses={
            (200, "application/json"): OpenApiResponse(
                OpenApiTypes.OBJECT,
                description="The result table.",
                examples=[OpenApiExample("result", value=_RESULT_EXAMPLE, response_only=True, status_codes=["200"])],
            ),
            (200, "text/csv"): OpenApiResponse(
                OpenApiTypes.STR,
                description="The same table as CSV; text cells that a spreadsheet would evaluate start with `'`.",
            ),
            400: error_response(
                400,
                "validation_failed",
                "The query failed validation; each detail names the offending member.",
                [{"field": "filters[0].op", "message": "Must be one of: eq, neq, in, ..."}],
            ),
            **ERRORS_READ,
            502: error_response(502, "engine_error", "BigQuery could not run the query."),
            503: error_response(503, "engine_unavailable", "The configured engine is unavailable."),
            504: error_response(504, "query_timeout", "The query ran longer than ANALYTICS_QUERY_TIMEOUT."),
        },
    )
    def post(self, request: Request, app_uuid: uuid.UUID) -> Response:
        app = self.application(request, app_uuid)
        result = query_run(app=app, query=request.data)
        return Response(result)

    def finalize_response(self, request: Request, response: Response, *args: Any, **kwargs: Any) -> Response:
        # Errors are always JSON in the one error shape, even when the client asked for CSV.
        if response.status_code >= 400 and getattr(request, "accepted_renderer", None) is not None:
            request.accepted_renderer = JSONRenderer()
            request.accepted_media_type = JSONRenderer.media_type
        return super().finalize_response(request, response, *args, **kwargs)
