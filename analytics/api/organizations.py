"""`apps/{app_uuid}/organizations`, `organizations/{customer_org_id}` and dismissing a signal."""

import uuid

from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from ..health import HEALTH_DOC
from ..models import Organization, OrgSignal
from ..revenue_health import SEGMENTS
from ..revenue_orgs import REVENUE_SORTS, organization_with_revenue, organizations_with_revenue
from ..selectors import DEFAULT_ORG_SORT, ORG_SORTS, organization_get, organizations_list
from ..services import signal_dismiss
from .base import AnalyticsView
from .params import WindowSerializer, parse, window


class OrganizationsParams(WindowSerializer):
    sort = serializers.ChoiceField(choices=[*ORG_SORTS, *REVENUE_SORTS], default=DEFAULT_ORG_SORT)
    bucket = serializers.ChoiceField(choices=Organization.Bucket.values, required=False)
    signal = serializers.ChoiceField(choices=OrgSignal.Kind.values, required=False)
    search = serializers.CharField(required=False, max_length=255, help_text="Part of a customer_org_id.")
    # issue 20 (analytics/revenue_orgs.py): Revenue × Health cell and tag filters; sort also by `mrr`/`-mrr`
    segment = serializers.ChoiceField(choices=list(SEGMENTS), required=False)
    tag = serializers.CharField(required=False, max_length=64)
    limit = serializers.IntegerField(min_value=1, max_value=500, default=50)
    cursor = serializers.CharField(required=False, help_text="`next_cursor` of the previous page.")


_SIGNAL = inline_serializer(
    "OrgSignal", {"signal": serializers.CharField(), "active_since": serializers.DateTimeField()}, many=True
)
_ORG: dict[str, serializers.Field] = {
    "customer_org_id": serializers.CharField(),
    "events": serializers.IntegerField(),
    "users": serializers.IntegerField(),
    "sessions": serializers.IntegerField(),
    "first_seen": serializers.DateTimeField(allow_null=True),  # null: only imported (issue 20)
    "last_seen": serializers.DateTimeField(allow_null=True),
    "over_limit": serializers.BooleanField(help_text="Tracked beyond the company's orgs_max (soft limit)."),
    "health": inline_serializer(
        "OrgHealth", {"score": serializers.IntegerField(allow_null=True), "bucket": serializers.CharField()}
    ),
    "signals": _SIGNAL,
    # issue 20
    "display_name": serializers.CharField(allow_null=True, help_text="From the organizations import."),
    "mrr": serializers.CharField(help_text='MRR now, a decimal string ("1234.50").'),
    "products": serializers.ListField(child=serializers.CharField()),
    "tags": serializers.ListField(child=serializers.CharField()),
    "seen_in_events": serializers.BooleanField(help_text="False for an organization only imported."),
}


class OrganizationsView(AnalyticsView):
    @extend_schema(
        tags=["analytics"],
        summary="Organizations with figures over the window, health and active signals",
        description="Every organization the app has ever seen; the window only changes the figures (zero when "
        "idle). Signals listed are active and not dismissed.\n\n" + HEALTH_DOC,
        parameters=[OrganizationsParams],
        responses={
            200: inline_serializer(
                "Organizations",
                {
                    "organizations": inline_serializer("Organization", _ORG, many=True),
                    "next_cursor": serializers.CharField(allow_null=True),
                    "orgs_tracked": serializers.IntegerField(),
                    "orgs_max": serializers.IntegerField(),
                    "over_limit": serializers.BooleanField(),
                },
            )
        },
    )
    def get(self, request: Request, app_uuid: uuid.UUID) -> Response:
        app = self.application(request, app_uuid)
        params = parse(OrganizationsParams, request)
        date_from, date_to, environment = window(params)
        return Response(
            organizations_with_revenue(  # issue 20: display name, MRR, products, tags; segment/tag/MRR sort
                base=organizations_list,
                app=app,
                date_from=date_from,
                date_to=date_to,
                environment=environment,
                sort=params["sort"],
                bucket=params.get("bucket"),
                signal=params.get("signal"),
                search=params.get("search"),
                segment=params.get("segment"),
                tag=params.get("tag"),
                limit=params["limit"],
                cursor=params.get("cursor"),
            )
        )


class OrganizationView(AnalyticsView):
    @extend_schema(
        tags=["analytics"],
        summary="One organization: figures, daily series, top pages, features used, health components",
        description=HEALTH_DOC,
        parameters=[WindowSerializer],
        responses={
            200: inline_serializer(
                "OrganizationDetail",
                {
                    **_ORG,
                    "health": inline_serializer(
                        "OrgHealthDetail",
                        {
                            "score": serializers.IntegerField(allow_null=True),
                            "bucket": serializers.CharField(),
                            "components": serializers.DictField(child=serializers.FloatField()),
                            "scanned_at": serializers.DateTimeField(allow_null=True),
                        },
                    ),
                    "series": inline_serializer(
                        "OrgPoint",
                        {
                            "date": serializers.DateField(),
                            "events": serializers.IntegerField(),
                            "users": serializers.IntegerField(),
                            "sessions": serializers.IntegerField(),
                        },
                        many=True,
                    ),
                    "top_pages": inline_serializer(
                        "OrgPage",
                        {
                            "path": serializers.CharField(),
                            "views": serializers.IntegerField(),
                            "users": serializers.IntegerField(),
                        },
                        many=True,
                    ),
                    "features_used": serializers.ListField(child=serializers.CharField()),
                },
            ),
            404: OpenApiResponse(description="Unknown app or organization"),
        },
    )
    def get(self, request: Request, app_uuid: uuid.UUID, customer_org_id: str) -> Response:
        app = self.application(request, app_uuid)
        date_from, date_to, environment = window(parse(WindowSerializer, request))
        return Response(
            organization_with_revenue(  # issue 20: subscriptions, MRR trend, notes, tags; imported-only orgs
                app=app,
                customer_org_id=customer_org_id,
                base=lambda: organization_get(
                    app=app,
                    customer_org_id=customer_org_id,
                    date_from=date_from,
                    date_to=date_to,
                    environment=environment,
                ),
            )
        )


class SignalDismissView(AnalyticsView):
    @extend_schema(
        tags=["analytics"],
        summary="Dismiss an active signal (any member)",
        description="It stays dismissed until it clears and a later scan raises it afresh.",
        request=None,
        responses={
            200: inline_serializer(
                "DismissedSignal",
                {
                    "signal": serializers.CharField(),
                    "active_since": serializers.DateTimeField(),
                    "dismissed_at": serializers.DateTimeField(),
                },
            ),
            403: OpenApiResponse(description="`application_inactive`: the application is deactivated (read-only)"),
            404: OpenApiResponse(description="No such active signal"),
        },
    )
    def post(self, request: Request, app_uuid: uuid.UUID, customer_org_id: str, signal: str) -> Response:
        app = self.application(request, app_uuid)
        dismissed = signal_dismiss(app=app, customer_org_id=customer_org_id, signal=signal)
        return Response(
            {"signal": dismissed.kind, "active_since": dismissed.active_since, "dismissed_at": dismissed.dismissed_at}
        )
