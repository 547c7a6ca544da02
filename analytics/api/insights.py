"""`GET/POST .../insights`, `PATCH/DELETE .../insights/{id}`: saved explorer, funnel and retention queries."""

from __future__ import annotations

import uuid

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.exceptions import NotFound
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response

from ..insights import insight_create, insight_delete, insight_get, insight_json, insight_pin, insights_list
from ..models import Insight
from ..query.schema import query_request_schema
from ..query.sequence_schema import funnel_request_schema, retention_request_schema
from .base import AnalyticsView
from .openapi import NOT_BLANK, error_response


def _insight_request_schema() -> dict:
    branches = []
    for kind, query in (
        ("query", query_request_schema()),
        ("funnel", funnel_request_schema()),
        ("retention", retention_request_schema()),
    ):
        branches.append({
            "type": "object",
            "title": f"A saved {kind}",
            "additionalProperties": False,
            "required": ["name", "kind", "query"],
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 100, "pattern": NOT_BLANK},
                "kind": {"type": "string", "enum": [kind]},
                "query": query,
                "pinned": {"type": "boolean", "default": False},
            },
        })  # fmt: skip
    return {"anyOf": branches}


_LIST = "`insights`: id, name, kind, query, pinned, author, created_at, url."
_FORBIDDEN = error_response(403, "forbidden", "Only its author or an owner or admin may change it.")
_PIN_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["pinned"],
    "properties": {"pinned": {"type": "boolean"}},
}
_CONFLICT = error_response(409, "conflict", "Six insights are pinned already (or the app keeps 500).")


class InsightsView(AnalyticsView):
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="analytics_insights_list",
        summary="Saved insights of the app (newest first)",
        tags=["Analytics"],
        responses={
            200: OpenApiResponse(
                OpenApiTypes.OBJECT, description="`insights`: id, name, kind, query, pinned, author, created_at, url."
            )
        },
    )
    def get(self, request: Request, app_uuid: uuid.UUID) -> Response:
        app = self.application(request, app_uuid)
        return Response({"insights": [insight_json(i) for i in insights_list(app=app)]})

    @extend_schema(
        operation_id="analytics_insights_create",
        summary="Save an explorer, funnel or retention query (any member)",
        description="The query is validated as its endpoint validates it (a 400 names `query.<member>`). "
        "At most 6 insights are pinned to the overview (409 past it).",
        tags=["Analytics"],
        request={"application/json": _insight_request_schema()},
        responses={
            201: OpenApiResponse(OpenApiTypes.OBJECT, description="The saved insight, with its `url`."),
            400: error_response(400, "validation_failed", "Each detail names the offending member."),
            409: _CONFLICT,
        },
    )
    def post(self, request: Request, app_uuid: uuid.UUID) -> Response:
        app = self.application(request, app_uuid)
        return Response(insight_json(insight_create(app=app, user=request.user, data=request.data)), status=201)


class InsightView(AnalyticsView):
    parser_classes = [JSONParser]

    def _insight(self, request: Request, app_uuid: uuid.UUID, insight_id: int) -> Insight:
        insight = insight_get(app=self.application(request, app_uuid), insight_id=insight_id)
        if insight is None:
            raise NotFound("Unknown insight.")
        return insight

    @extend_schema(
        operation_id="analytics_insight_pin",
        summary="Pin or unpin an insight (its author, an owner or an admin)",
        tags=["Analytics"],
        request={"application/json": _PIN_SCHEMA},
        responses={
            200: OpenApiResponse(OpenApiTypes.OBJECT, description="The insight."),
            403: _FORBIDDEN,
            409: _CONFLICT,
        },
    )
    def patch(self, request: Request, app_uuid: uuid.UUID, insight_id: int) -> Response:
        insight = self._insight(request, app_uuid, insight_id)
        data = request.data if isinstance(request.data, dict) else {}
        return Response(insight_json(insight_pin(user=request.user, insight=insight, pinned=data.get("pinned"))))

    @extend_schema(
        operation_id="analytics_insight_delete",
        summary="Delete an insight (its author, an owner or an admin)",
        tags=["Analytics"],
        responses={
            204: None,
            403: error_response(403, "forbidden", "Only its author or an owner or admin may delete it."),
        },
    )
    def delete(self, request: Request, app_uuid: uuid.UUID, insight_id: int) -> Response:
        insight_delete(user=request.user, insight=self._insight(request, app_uuid, insight_id))
        return Response(status=204)
