"""`GET /api/v1/analytics/apps/`: the applications the caller may read (the pages' app picker)."""

from rest_framework.request import Request
from rest_framework.response import Response

from ..selectors import applications_readable
from .base import AnalyticsView


class AppsView(AnalyticsView):
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
