"""Probes: GET /api/v1/ingest/health (public: can events be stored?), /livez and /readyz.

- `/api/v1/ingest/health`: 200 when this process can store events now (PostgreSQL commits a write
  and real inserts are not failing, `ingest.probes.database_writable`), 503 otherwise. No detail.
- `/livez`: the process answers. Touches nothing else, so a database outage never restarts it.
- `/readyz`: can this process take events? PostgreSQL reachable and writable, migrations applied;
  503 names the failing checks. Redis is reported (`"degraded": ["redis"]`) but answered 200:
  ingest takes events without it (issue 17, item 2). What a load balancer should route on.

Both answer within `HEALTH_PROBE_TIMEOUT_SECONDS` (0.8 s) whatever the database does.

No authentication, no throttle, `Cache-Control: no-store` so no proxy answers for us. Verdicts
are cached for `HEALTH_CACHE_SECONDS` per process, so frequent polling costs almost nothing.
"""

import orjson
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_safe
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from ..probes import REQUIRED, database_writable, readiness
from .base import IngestView

_Status = inline_serializer("HealthStatus", {"status": serializers.ChoiceField(choices=["ok", "unavailable"])})


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
                description="Events cannot be stored now (database unreachable, read-only or failing); retry later.",
                examples=[OpenApiExample("unavailable", value={"status": "unavailable"}, status_codes=["503"])],
            ),
        },
    )
    def get(self, request: Request) -> Response:
        ok = database_writable()
        response = Response({"status": "ok" if ok else "unavailable"}, status=200 if ok else 503)
        response["Cache-Control"] = "no-store"
        return response


def _plain(body: bytes, status: int) -> HttpResponse:
    response = HttpResponse(body, status=status, content_type="application/json")
    response["Cache-Control"] = "no-store"
    return response


@require_safe
def livez(request: HttpRequest) -> HttpResponse:
    """The process is alive and serving: restart it only when this fails."""
    return _plain(b'{"status":"ok"}', 200)


@require_safe
def readyz(request: HttpRequest) -> HttpResponse:
    """Ready for traffic: every dependency of storing an event is there. 503 names what is not.

    A dependency ingest can do without (Redis) is `degraded`: named in the body, never a 503.
    """
    checks = readiness()
    failing = sorted(name for name, ok in checks.items() if not ok and name in REQUIRED)
    degraded = sorted(name for name, ok in checks.items() if not ok and name not in REQUIRED)
    body: dict[str, object] = {
        "status": "unavailable" if failing else "degraded" if degraded else "ok",
        "checks": {name: "ok" if ok else "failing" if name in REQUIRED else "degraded" for name, ok in checks.items()},
    }
    if failing:
        body["failing"] = failing
    if degraded:
        body["degraded"] = degraded
    return _plain(orjson.dumps(body), 503 if failing else 200)
