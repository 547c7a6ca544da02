"""`GET /api/v1/analytics/apps/`: the applications the caller may read (the pages' app picker)."""

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from ..selectors import applications_readable
from .base import AnalyticsView


class AppsView(AnalyticsView):
    @extend_schema(
        tags=["analytics"],
        summary="Applications the caller may read",
        description="Those of the caller's company (every application for a superuser), by company then name.",
        responses={
            200: inline_serializer(
                "Apps",
                {
                    "apps": inline_serializer(
                        "App",
                        {
                            "uuid": serializers.UUIDField(),
                            "name": serializers.CharField(),
                            "company": serializers.CharField(),
                            "is_active": serializers.BooleanField(),
                        },
                        many=True,
                    )
                },
            )
        },
    )
    def get(self, request: Request) -> Response:
        apps = applications_readable(user=request.user).order_by("company__name", "name")
        return Response(
            {
                "apps": [
                    {"uuid": str(app.uuid), "name": app.name, "company": app.company.name, "is_active": app.is_active}
                    for app in apps
                ]
            }
        )
