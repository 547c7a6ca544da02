"""`GET apps/{app_uuid}/pages` (most viewed paths) and `GET apps/{app_uuid}/pages/trend?path=`."""

import uuid

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from ..selectors import page_trend_get, pages_list
from .base import AnalyticsView
from .params import WindowSerializer, parse, window


class PagesParams(WindowSerializer):
    limit = serializers.IntegerField(min_value=1, max_value=500, default=50)


class PageTrendParams(WindowSerializer):
    path = serializers.CharField(max_length=2048, help_text="The exact path.")


class PagesView(AnalyticsView):
    @extend_schema(
        tags=["analytics"],
        summary="Most viewed paths",
        description="A view is a stored `/v1/events` event carrying that `path`. Users and orgs are exact distinct "
        "counts over the window.",
        parameters=[PagesParams],
        responses={
            200: inline_serializer(
                "Pages",
                {
                    "pages": inline_serializer(
                        "Page",
                        {
                            "path": serializers.CharField(),
                            "views": serializers.IntegerField(),
                            "users": serializers.IntegerField(),
                            "orgs": serializers.IntegerField(),
                        },
                        many=True,
                    )
                },
            )
        },
    )
    def get(self, request: Request, app_uuid: uuid.UUID) -> Response:
        app = self.application(request, app_uuid)
        params = parse(PagesParams, request)
        date_from, date_to, environment = window(params)
        return Response(
            pages_list(app=app, date_from=date_from, date_to=date_to, environment=environment, limit=params["limit"])
        )


class PageTrendView(AnalyticsView):
    @extend_schema(
        tags=["analytics"],
        summary="Views and users of one path per day",
        parameters=[PageTrendParams],
        responses={
            200: inline_serializer(
                "PageTrend",
                {
                    "path": serializers.CharField(),
                    "series": inline_serializer(
                        "PageTrendPoint",
                        {
                            "date": serializers.DateField(),
                            "views": serializers.IntegerField(),
                            "users": serializers.IntegerField(),
                        },
                        many=True,
                    ),
                },
            )
        },
    )
    def get(self, request: Request, app_uuid: uuid.UUID) -> Response:
        app = self.application(request, app_uuid)
        params = parse(PageTrendParams, request)
        date_from, date_to, environment = window(params)
        return Response(
            page_trend_get(app=app, path=params["path"], date_from=date_from, date_to=date_to, environment=environment)
        )
