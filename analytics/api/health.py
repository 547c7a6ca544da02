"""`apps/{app_uuid}/health/model` (GET, PUT), `health/model/preview` (POST), `health/backtest` (GET).

Members read; owners, admins and superusers change the model. A preview writes nothing.
"""

import uuid
from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response

from ingest.errors import ApiError

from ..health import COMPONENTS, HEALTH_DOC, model_get
from ..health_backtest import __doc__ as BACKTEST_DOC
from ..health_backtest import health_backtest, health_model_preview
from ..models import Feature, HealthModelChange
from ..selectors import application_writable
from ..services import health_model_save
from .base import AnalyticsView

MAX_FEATURES = 100


class WeightsInput(serializers.Serializer):
    recency = serializers.FloatField(min_value=0, max_value=1, required=False)
    trend = serializers.FloatField(min_value=0, max_value=1, required=False)
    breadth = serializers.FloatField(min_value=0, max_value=1, required=False)
    depth = serializers.FloatField(min_value=0, max_value=1, required=False)


class HealthModelInput(serializers.Serializer):
    """Every key is optional: what is left out keeps its current value."""

    weights = WeightsInput(required=False, help_text="Relative weights of the components, each 0-1.")
    healthy_min = serializers.IntegerField(min_value=1, max_value=100, required=False)
    watch_min = serializers.IntegerField(min_value=1, max_value=99, required=False)
    drop_watch_pct = serializers.IntegerField(min_value=1, max_value=100, required=False)
    drop_at_risk_pct = serializers.IntegerField(min_value=1, max_value=100, required=False)
    silence_days = serializers.IntegerField(min_value=1, max_value=365, required=False)
    inactive_days = serializers.IntegerField(min_value=1, max_value=365, required=False)
    regular_days = serializers.IntegerField(min_value=1, max_value=60, required=False)
    new_days = serializers.IntegerField(min_value=0, max_value=90, required=False)
    new_exit_active_days = serializers.IntegerField(min_value=1, max_value=90, required=False)
    recency_days = serializers.IntegerField(min_value=1, max_value=365, required=False)
    depth_users = serializers.IntegerField(min_value=1, max_value=100_000, required=False)
    depth_sessions_per_user = serializers.IntegerField(min_value=1, max_value=10_000, required=False)
    features = serializers.ListField(
        child=serializers.CharField(max_length=100),
        max_length=MAX_FEATURES,
        allow_null=True,
        required=False,
        help_text="Names of the features breadth counts; null = all of the app's features.",
    )

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({unknown[0]: ["Unknown member."]})
            weights = data.get("weights")
            if isinstance(weights, dict):
                extra = sorted(set(weights) - set(COMPONENTS))
                if extra:
                    raise serializers.ValidationError({f"weights.{extra[0]}": ["Unknown component."]})
        return super().to_internal_value(data)


def _first_error(errors: Any, prefix: str = "") -> tuple[str, str]:
    if isinstance(errors, dict):
        key, value = next(iter(errors.items()))
        name = key if key != "non_field_errors" else ""
        return _first_error(value, f"{prefix}.{name}" if prefix and name else prefix or name)
    if isinstance(errors, list) and errors:
        return _first_error(errors[0], prefix)
    return prefix or "body", str(errors)


def _bad(field: str, message: str) -> ApiError:
    return ApiError(
        status_code=400,
        code="validation_failed",
        message="Invalid health model.",
        details=[{"field": field, "message": message}],
    )


def parse_model_input(app: Any, data: Any) -> dict[str, Any]:
    """The validated changes, checked against the app's current model (a 400 naming the member)."""
    if not isinstance(data, dict):
        raise _bad("body", "A JSON object.")
    serializer = HealthModelInput(data=data)
    if not serializer.is_valid():
        raise _bad(*_first_error(serializer.errors))
    changes = dict(serializer.validated_data)
    if "weights" in changes:
        changes["weights"] = dict(changes["weights"])
    merged = {**model_get(app), **changes}
    if "weights" in changes:
        merged["weights"] = {**model_get(app)["weights"], **changes["weights"]}
    if sum(merged["weights"].values()) <= 0:
        raise _bad("weights", "At least one weight must be above 0.")
    if merged["watch_min"] >= merged["healthy_min"]:
        raise _bad("watch_min", "Must be below healthy_min.")
    if merged["drop_watch_pct"] > merged["drop_at_risk_pct"]:
        raise _bad("drop_watch_pct", "Must not be above drop_at_risk_pct.")
    if merged["silence_days"] > merged["inactive_days"]:
        raise _bad("silence_days", "Must not be above inactive_days.")
    if changes.get("features") is not None:
        known = set(Feature.objects.filter(application=app).values_list("name", flat=True))
        for i, name in enumerate(changes["features"]):
            if name not in known:
                raise _bad(f"features.{i}", f"No feature named {name!r}.")
    return changes


def _change_item(change: HealthModelChange) -> dict:
    before, after = change.before, change.after
    diff = {k: {"before": before.get(k), "after": after.get(k)} for k in after if before.get(k) != after.get(k)}
    return {
        "changed_at": change.changed_at,
        "changed_by": change.changed_by.get_username() if change.changed_by else None,
        "changes": diff,
        "before": before,
        "after": after,
    }


def _body(request: Request) -> Any:
    """The JSON body; a request without one is a 400 (an empty object `{}` is a valid "no change")."""
    if not request.body:
        raise _bad("body", "A JSON object with the members of the model to change is required.")
    return request.data


def health_model_state(app: Any) -> dict:
    changes = HealthModelChange.objects.filter(application=app).select_related("changed_by")[:50]
    return {"model": model_get(app), "changes": [_change_item(c) for c in changes]}


_MODEL = inline_serializer(
    "HealthModel",
    {
        "model": serializers.DictField(help_text="The effective model: defaults overridden by the app's tuning."),
        "changes": serializers.ListField(child=serializers.DictField(), help_text="Saved changes, newest first."),
    },
)


class HealthModelView(AnalyticsView):
    parser_classes = [JSONParser]

    @extend_schema(
        tags=["analytics"],
        summary="The app's health model and its change log",
        description=HEALTH_DOC,
        responses={200: _MODEL},
    )
    def get(self, request: Request, app_uuid: uuid.UUID) -> Response:
        return Response(health_model_state(self.application(request, app_uuid)))

    @extend_schema(
        tags=["analytics"],
        summary="Change the app's health model (owners, admins); its orgs are rescored within 60 s",
        request=HealthModelInput,
        responses={200: _MODEL, 400: OpenApiResponse(description="A member out of range, naming it"), 403: None},
    )
    def put(self, request: Request, app_uuid: uuid.UUID) -> Response:
        app = self.application(request, app_uuid)
        if not application_writable(user=request.user, app=app):
            raise PermissionDenied("Only owners and admins of the company may change the health model.")
        changes = parse_model_input(app, _body(request))
        health_model_save(app=app, config=changes, user=request.user)
        return Response(health_model_state(app))


class HealthModelPreviewView(AnalyticsView):
    parser_classes = [JSONParser]

    @extend_schema(
        tags=["analytics"],
        summary="What a model change would do: orgs changing bucket, and the backtest of both models",
        request=HealthModelInput,
        responses={200: serializers.DictField(), 400: OpenApiResponse(description="A member out of range")},
    )
    def post(self, request: Request, app_uuid: uuid.UUID) -> Response:
        app = self.application(request, app_uuid)
        if not application_writable(user=request.user, app=app):
            raise PermissionDenied("Only owners and admins of the company may change the health model.")
        return Response(health_model_preview(app=app, config=parse_model_input(app, _body(request))))


class HealthBacktestView(AnalyticsView):
    @extend_schema(
        tags=["analytics"],
        summary="The current model checked against the churn of the last 180 days",
        description=BACKTEST_DOC or "",
        responses={200: serializers.DictField()},
    )
    def get(self, request: Request, app_uuid: uuid.UUID) -> Response:
        return Response(health_backtest(app=self.application(request, app_uuid)))
