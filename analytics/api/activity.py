"""`GET apps/{app_uuid}/activity` and `GET apps/{app_uuid}/active-users`: app-level activity from the rollups."""

import uuid

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from ..models import Source
from ..selectors import INTERVALS, active_users_get, activity_get
from .base import AnalyticsView
from .params import WindowSerializer, parse, window


class ActivityParams(WindowSerializer):
    interval = serializers.ChoiceField(choices=INTERVALS, default="day")
    source = serializers.ChoiceField(choices=Source.values, default=Source.EVENTS)


_COUNTS: dict[str, serializers.Field] = {
    "events": serializers.IntegerField(),
    "users": serializers.IntegerField(),
    "orgs": serializers.IntegerField(),
    "sessions": serializers.IntegerField(),
}


class ActivityView(AnalyticsView):
    @extend_schema(
        tags=["analytics"],
        summary="Events, users, orgs and sessions per day, week or month",
        description=(
            "Distinct counts are exact. A bucket's users/orgs/sessions are distinct within the bucket (clipped "
            "to the window); `totals` are distinct over the whole window, not sums. Source `sdk_events` counts "
            "SDK events with analytics consent (user = user_id, else anon_id; no orgs)."
        ),
        parameters=[ActivityParams],
        responses={
            200: inline_serializer(
                "Activity",
                {
                    "series": inline_serializer(
                        "ActivityPoint", {"date": serializers.DateField(), **_COUNTS}, many=True
                    ),
                    "totals": inline_serializer("ActivityTotals", _COUNTS),
                },
            )
        },
    )
    def get(self, request: Request, app_uuid: uuid.UUID) -> Response:
        app = self.application(request, app_uuid)
        params = parse(ActivityParams, request)
        date_from, date_to, environment = window(params)
        return Response(
            activity_get(
                app=app,
                date_from=date_from,
                date_to=date_to,
                environment=environment,
                interval=params["interval"],
                source=params["source"],
            )
        )


class ActiveUsersParams(serializers.Serializer):
    environment = serializers.CharField(required=False, allow_blank=True, max_length=32)
    # the stubs see Field.source (a str) here; on a Serializer class this declares the "source" field
    source = serializers.ChoiceField(choices=Source.values, default=Source.EVENTS)  # type: ignore[assignment]


class ActiveUsersView(AnalyticsView):
    @extend_schema(
        tags=["analytics"],
        summary="DAU, WAU and MAU as of today (UTC)",
        parameters=[ActiveUsersParams],
        responses={
            200: inline_serializer(
                "ActiveUsers",
                {
                    "dau": serializers.IntegerField(),
                    "wau": serializers.IntegerField(),
                    "mau": serializers.IntegerField(),
                },
            )
        },
    )
    def get(self, request: Request, app_uuid: uuid.UUID) -> Response:
        app = self.application(request, app_uuid)
        params = parse(ActiveUsersParams, request)
        return Response(
            active_users_get(app=app, environment=params.get("environment") or None, source=params["source"])
        )
