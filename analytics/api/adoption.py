"""`GET .../features/{name}/adoption`: a feature's adoption per week, and who adopted it or not."""

from __future__ import annotations

import uuid

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from ..adoption import feature_adoption_get
from .base import AnalyticsView
from .features import FeaturesParams
from .params import parse, window

_ANSWER = "`weeks`, `orgs_adopted`, `orgs_active_not_adopted`, `truncated`."


class FeatureAdoptionView(AnalyticsView):
    @extend_schema(
        operation_id="analytics_feature_adoption",
        tags=["analytics"],
        summary="Feature adoption over time",
        description=(
            "Per week (Monday, UTC; the first and last clipped to the window): `orgs` and `users` that used the "
            "feature that week, `orgs_adopted_to_date` since the window's start; then the organizations that "
            "adopted it in the window and the active ones that did not (at most 1,000 each, byte order)."
        ),
        parameters=[FeaturesParams],
        responses={
            200: OpenApiResponse(OpenApiTypes.OBJECT, description="`weeks`, `orgs_adopted`, `orgs_active_not_adopted`.")
        },
    )
    def get(self, request: Request, app_uuid: uuid.UUID, name: str) -> Response:
        app = self.application(request, app_uuid)
        params = parse(FeaturesParams, request)
        date_from, date_to, environment = window(params)
        return Response(
            feature_adoption_get(
                app=app,
                feature_name=name,
                date_from=date_from,
                date_to=date_to,
                environment=environment,
                source=params["source"],
            )
        )
