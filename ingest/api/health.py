"""GET /api/v1/ingest/health: can this service store events right now? Public, and says nothing else.

The check is the database, where every event is made durable: a `SELECT 1` on the connection
the ingest endpoints use. No authentication, no throttle, no detail in either answer, and
`Cache-Control: no-store` so no proxy answers for us.
"""

import logging

from django.db import DatabaseError, connection
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response

from .base import IngestView

logger = logging.getLogger(__name__)

_Status = inline_serializer("HealthStatus", {"status": serializers.ChoiceField(choices=["ok", "unavailable"])})


def database_reachable() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError:
        logger.warning("health check: database unreachable", exc_info=True)
        # A broken persistent connection must not keep failing the next checks: reconnect next time.
        connection.close_if_unusable_or_obsolete()
        return False
    return True


class HealthView(IngestView):
    authentication_classes: list = []
    permission_classes: list = []
    throttle_classes: list = []
    http_method_names = ["get"]

    @extend_schema(
        operation_id="sdk_health",
        summary="Is ingestion available?",
        description="Public. 200 when events can be stored, 503 when they cannot; nothing else is revealed.",
        tags=["SDK ingest"],
        auth=[],
        responses={
            200: OpenApiResponse(
                _Status,
                description="Events can be stored.",
                examples=[OpenApiExample("ok", value={"status": "ok"}, status_codes=["200"])],
            ),
            405: OpenApiResponse(description="Only GET."),
            503: OpenApiResponse(
                _Status,
                description="Events cannot be stored now (database unreachable); retry later.",
                examples=[OpenApiExample("unavailable", value={"status": "unavailable"}, status_codes=["503"])],
            ),
        },
    )
    def get(self, request) -> Response:
        ok = database_reachable()
        response = Response({"status": "ok" if ok else "unavailable"}, status=200 if ok else 503)
        response["Cache-Control"] = "no-store"
        return response
